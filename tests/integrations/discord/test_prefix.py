"""Which messages are prefix commands, and argument checks before any download."""

from __future__ import annotations

import attrs
import pytest

from engine.api import Attachment
from engine.flows.model import OptionSpec, Trigger
from integrations.discord.commands import CommandSpec
from integrations.discord.prefix import UsageError, check_arguments, find_command, typed_options

TRIGGER = Trigger(
    command='upload',
    options=[OptionSpec(name='file', type='attachment'), OptionSpec(name='note', type='string', required=False)],
)
SPECS = {
    'upload': CommandSpec('upload', 'upload', 'upload', TRIGGER),
    'up': CommandSpec('up', 'upload', 'upload', TRIGGER),
}


@attrs.frozen
class Remote:
    filename: str = 'a.txt'
    size: int = 3
    url: str = 'http://127.0.0.1/a.txt'
    media_type: str | None = 'text/plain'
    duration: float | None = None


def test_known_commands_aliases_interrupts_and_unknown_words_are_commands() -> None:
    found = find_command('!up hello world', '!', SPECS)
    assert found is not None and (found.name, found.command, found.args) == ('up', 'upload', 'hello world')
    cancel = find_command('!cancel', '!', SPECS)
    assert cancel is not None and cancel.command == 'cancel' and cancel.spec is None
    unknown = find_command('!nope', '!', SPECS)
    assert unknown is not None and unknown.spec is None


@pytest.mark.parametrize('text', ['hello', '! upload', '!!!', '', 'upload !x'])
def test_other_messages_are_free_text(text: str) -> None:
    assert find_command(text, '!', SPECS) is None


def test_missing_attachment_is_a_usage_error_before_download() -> None:
    command = find_command('!upload "a note"', '!', SPECS)
    assert command is not None
    with pytest.raises(UsageError, match='Missing file'):
        check_arguments(command, [], '!')
    check_arguments(command, [Remote()], '!')


def test_unbalanced_quotes_are_reported_with_usage() -> None:
    command = find_command('!upload note="oops', '!', SPECS)
    assert command is not None
    with pytest.raises(UsageError, match='Usage: !upload'):
        check_arguments(command, [Remote()], '!')


def test_typed_options_take_the_downloaded_file() -> None:
    command = find_command('!upload a long note', '!', SPECS)
    assert command is not None
    local = Attachment(name='a.txt', content_type='text/plain', size=3)
    assert typed_options(command, [local], '!') == {'file': local, 'note': 'a long note'}


def test_checked_options_without_files_are_the_typed_options() -> None:
    trigger = Trigger(
        command='say', options=[OptionSpec(name='n', type='integer'), OptionSpec(name='text', type='string')]
    )
    spec = CommandSpec('say', 'say', 'say', trigger)
    command = find_command('!say 3 hello there', '!', {'say': spec})
    assert command is not None
    assert check_arguments(command, [], '!') == typed_options(command, [], '!') == {'n': 3, 'text': 'hello there'}
    unknown = find_command('!nope 1', '!', SPECS)
    assert unknown is not None and check_arguments(unknown, [], '!') == {}
