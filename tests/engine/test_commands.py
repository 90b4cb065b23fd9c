"""Prefix-command arguments: typed values, and usage messages for everything that does not fit."""

from __future__ import annotations

import pytest

from engine.api import Attachment
from engine.commands import MAX_ARGUMENT_CHARS, UsageError, parse_arguments, split_command, usage
from engine.flows.model import OptionSpec, Trigger

TRIGGER = Trigger(
    command='train',
    options=[
        OptionSpec(name='count', type='integer'),
        OptionSpec(name='rate', type='number', default=0.5),
        OptionSpec(name='mode', type='string', choices=['fast', 'slow'], default='fast'),
        OptionSpec(name='loud', type='boolean', default=False),
    ],
)
USAGE = 'Usage: !train <count:integer> [rate:number] [mode:string=fast|slow] [loud:boolean]'


def test_usage_line_marks_required_and_optional_options() -> None:
    assert 'Usage: ' + usage('train', TRIGGER, prefix='!') == USAGE


def test_positional_and_named_arguments_are_typed() -> None:
    assert parse_arguments('train', TRIGGER, '3 0.1 slow yes', prefix='!') == {
        'count': 3,
        'rate': 0.1,
        'mode': 'slow',
        'loud': True,
    }
    assert parse_arguments('train', TRIGGER, 'loud=no count=7', prefix='!') == {
        'count': 7,
        'rate': 0.5,
        'mode': 'fast',
        'loud': False,
    }


def test_wrong_integer_names_the_option_and_shows_usage() -> None:
    with pytest.raises(UsageError) as caught:
        parse_arguments('train', TRIGGER, 'three', prefix='!')
    assert str(caught.value) == f'count must be a whole number, not "three".\n{USAGE}'


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('1 fast', 'rate must be a number, not "fast"'),
        ('1 nan', 'rate must be a number, not "nan"'),
        ('1 -1e999', 'rate must be a number, not "-1e999"'),
        ('1 0.1 medium', 'mode must be one of fast, slow, not "medium"'),
        ('1 0.1 slow maybe', 'loud must be yes or no, not "maybe"'),
        ('1 count=2', 'count is given twice'),
    ],
)
def test_wrong_option_types_and_values_are_explained(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_arguments('train', TRIGGER, text, prefix='!')
    assert str(caught.value) == f'{message}.\n{USAGE}'


def test_too_few_arguments_name_the_missing_option() -> None:
    with pytest.raises(UsageError) as caught:
        parse_arguments('train', TRIGGER, '', prefix='!')
    assert str(caught.value) == f'Missing count.\n{USAGE}'


def test_too_many_arguments_name_the_unexpected_word() -> None:
    with pytest.raises(UsageError) as caught:
        parse_arguments('train', TRIGGER, '1 0.1 slow no extra', prefix='!')
    assert str(caught.value) == f'too many arguments (unexpected "extra").\n{USAGE}'


def test_a_bare_command_gets_every_default_and_blank_text_counts_as_none() -> None:
    optional = Trigger(
        options=[OptionSpec(name='rate', type='number', default=0.5), OptionSpec(name='n', required=False)]
    )
    for text in ('', '   ', ' \n\t '):
        assert parse_arguments('go', optional, text, prefix='!') == {'rate': 0.5, 'n': None}
        with pytest.raises(UsageError) as caught:
            parse_arguments('train', TRIGGER, text, prefix='!')
        assert str(caught.value) == f'Missing count.\n{USAGE}'
    assert parse_arguments('hi', Trigger(command='hi'), '', prefix='!') == {}
    with pytest.raises(UsageError, match=r'^Arguments are too long'):  # blank, but still over the limit
        parse_arguments('go', optional, ' ' * (MAX_ARGUMENT_CHARS + 1), prefix='!')


def test_a_command_without_options_refuses_arguments() -> None:
    with pytest.raises(UsageError, match=r'too many arguments \(unexpected "there"\)\.\nUsage: !hi$'):
        parse_arguments('hi', Trigger(command='hi'), 'there', prefix='!')


def test_the_last_text_option_takes_the_rest_of_the_line() -> None:
    trigger = Trigger(options=[OptionSpec(name='id'), OptionSpec(name='text', required=False)])
    assert parse_arguments('correct', trigger, 'c3 it should say hello', prefix='!') == {
        'id': 'c3',
        'text': 'it should say hello',
    }
    assert parse_arguments('correct', trigger, '"c3" "quoted text"', prefix='!') == {'id': 'c3', 'text': 'quoted text'}


def test_free_text_keeps_apostrophes_quotes_and_line_breaks() -> None:
    trigger = Trigger(options=[OptionSpec(name='id'), OptionSpec(name='text', required=False)])
    assert parse_arguments('correct', trigger, "c3 I don't like it", prefix='!')['text'] == "I don't like it"
    assert parse_arguments('correct', trigger, 'c3 say "hello"  twice', prefix='!')['text'] == 'say "hello"  twice'
    assert (
        parse_arguments('correct', trigger, 'c3 first line\nsecond line', prefix='!')['text']
        == 'first line\nsecond line'
    )
    assert parse_arguments('correct', trigger, 'c3 text="it\'s named"', prefix='!')['text'] == "it's named"


def test_unbalanced_quotes_and_oversize_arguments_are_refused() -> None:
    trigger = Trigger(options=[OptionSpec(name='text'), OptionSpec(name='count', type='integer')])
    with pytest.raises(
        UsageError,
        match=r'^Cannot read the arguments: No closing quotation\.\nUsage: !say <text:string> <count:integer>$',
    ):
        parse_arguments('say', trigger, '"open 3', prefix='!')
    with pytest.raises(UsageError, match=rf'^Arguments are too long \({MAX_ARGUMENT_CHARS + 1} characters'):
        parse_arguments('say', trigger, 'x' * (MAX_ARGUMENT_CHARS + 1), prefix='!')


def test_mentions_become_ids_and_attachments_fill_attachment_options() -> None:
    trigger = Trigger(
        options=[
            OptionSpec(name='who', type='user'),
            OptionSpec(name='file', type='attachment'),
            OptionSpec(name='where', type='channel'),
        ]
    )
    photo = Attachment(name='a.png', content_type='image/png')
    assert parse_arguments('x', trigger, '<@!123> <#456>', [photo], prefix='!') == {
        'who': '123',
        'file': photo,
        'where': '456',
    }
    with pytest.raises(UsageError, match=r'who must be a user mention or id, not "bob"'):
        parse_arguments('x', trigger, 'bob 456', [photo], prefix='!')
    with pytest.raises(UsageError, match=r'^Missing file\.'):
        parse_arguments('x', trigger, '123 456', prefix='!')


def test_split_command_needs_a_prefix_and_a_name() -> None:
    assert split_command('!Train 3 fast', ('!', '/')) == ('train', '3 fast')
    assert split_command('/hi', ('!', '/')) == ('hi', '')
    assert split_command('! hi', ('!',)) is None
    assert split_command('hello', ('!',)) is None


def test_a_command_name_ends_at_a_line_break() -> None:
    assert split_command('!feedback\nthe bot is slow', ('!',)) == ('feedback', 'the bot is slow')
    assert split_command('!feedback\tslow', ('!',)) == ('feedback', 'slow')


@pytest.mark.parametrize(
    ('text', 'expected'), [('yes', True), (' Да ', True), ('д', True), ('off', False), ('нет', False), ('maybe', None)]
)
def test_yes_and_no_are_read_the_same_everywhere(text: str, expected: bool | None) -> None:
    from engine.commands import parse_bool

    assert parse_bool(text) is expected


def test_backslashes_are_kept_as_typed() -> None:
    paths = Trigger(
        command='select',
        options=[OptionSpec(name='path', type='string'), OptionSpec(name='label', type='string', required=False)],
    )
    assert parse_arguments('select', paths, r'..\..\x', prefix='!')['path'] == r'..\..\x'
    assert parse_arguments('select', paths, r'path="C:\my data" label=a\b', prefix='!') == {
        'path': r'C:\my data',
        'label': r'a\b',
    }


def test_a_bare_command_gets_its_defaults_and_a_missing_required_option_is_still_named() -> None:
    optional = Trigger(command='hi', options=[OptionSpec(name='mode', type='string', default='fast')])
    assert parse_arguments('hi', optional, '', prefix='!') == {'mode': 'fast'}
    assert parse_arguments('hi', optional, '   ', prefix='!') == {'mode': 'fast'}
    assert parse_arguments('hi', Trigger(command='hi'), '', prefix='!') == {}
    with pytest.raises(UsageError, match='Missing count'):
        parse_arguments('train', TRIGGER, '', prefix='!')
