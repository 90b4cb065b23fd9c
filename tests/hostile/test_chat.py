"""Hostile chat: commands and answers through the engine get plain replies; no template runs user
text, no file outside the data root is sent, and other conversations keep being served."""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import AsyncIterator

import pytest

from engine.api import ConversationKey, User
from engine.doubles import RecordingAdapter

from ..engine.helpers import Harness, build_harness
from .conftest import OUTSIDE, SECRET, assert_safe, bounded

REPO = pathlib.Path(__file__).resolve().parents[2]
ADMIN = User('boss', 'Boss')

ECHO = """
[flow]
name = "echo"
[trigger]
command = "echo"
[states.ask]
kind = "ask"
prompt = "Say something"
save_as = "said"
[states.done]
kind = "end"
text = "You said: {{ said }}"
"""

FORM = """
[flow]
name = "form"
[trigger]
command = "form"
[states.code]
kind = "ask"
prompt = "Code?"
pattern = "(a+)+$"
attempts = 9
save_as = "code"
[states.done]
kind = "end"
text = "Code {{ code | length }}"
"""


@pytest.fixture
async def chat(tmp_path: pathlib.Path) -> AsyncIterator[Harness]:
    folder = tmp_path / 'flows'
    folder.mkdir()
    for name in ('getfile', 'archive', 'hi', 'feedback'):
        shutil.copy(REPO / 'flows' / f'{name}.toml', folder / f'{name}.toml')
    (folder / 'echo.toml').write_text(ECHO, encoding='utf-8')
    (folder / 'form.toml').write_text(FORM, encoding='utf-8')
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'loot.txt').write_text(OUTSIDE, encoding='utf-8')
    data = tmp_path / 'data'
    (data / 'box').mkdir(parents=True)
    (data / 'box' / 'loot.txt').symlink_to(outside / 'loot.txt')
    (data / 'box' / 'ok.txt').write_text('fine', encoding='utf-8')
    h = await build_harness(tmp_path, folder=folder, plugins=('integrations.builtin', 'integrations.models'))
    h.user = ADMIN
    yield h
    await h.stop()


def _safe_replies(h: Harness, key: ConversationKey | None = None) -> list[str]:
    texts = h.texts(key)
    for text in filter(str.strip, texts):
        assert_safe(text)
    for sent in h.adapter.sent:
        if sent.path is not None:
            assert OUTSIDE not in pathlib.Path(sent.path).read_text(errors='replace')
            assert SECRET not in pathlib.Path(sent.path).read_text(errors='replace')
    return texts


COMMANDS = [
    ('getfile', '../../outside/loot.txt'),
    ('getfile', '/etc/passwd'),
    ('getfile', '/proc/self/environ'),
    ('getfile', 'box/loot.txt'),
    ('getfile', 'a' * 300),
    ('getfile', '"unterminated'),
    ('getfile', '\x00'),
    ('getfile', '{{ 9**(9**9) }}'),
    ('getfile', '{% for i in range(10**9) %}{% endfor %}'),
    ('archive', '/'),
    ('archive', '..'),
    ('archive', 'box'),
    ('archive', '.'),
    ('archive', 'x/' * 3000),
    ('feedback', '{{ 7*7 }}'),
    ('feedback', 'x' * 100_000),
    ('hi', '\u202e' * 1000),
    ('nosuchcommand', 'x'),
]


@pytest.mark.parametrize(('command', 'args'), COMMANDS, ids=[f'{c}-{a[:20]!r}' for c, a in COMMANDS])
async def test_a_hostile_command_gets_a_plain_reply(chat: Harness, command: str, args: str) -> None:
    with bounded(seconds=10, megabytes=None):
        await chat.command(command, args, user=ADMIN)
    replies = _safe_replies(chat)
    assert replies, 'every command is answered'
    assert not chat.live(), 'and it does not hang open'
    assert '49' not in ' '.join(replies) or command != 'feedback'


ANSWERS = [
    '{{ 7*7 }}',
    '{{ 9**(9**9) }}',
    '{% for i in range(10**9) %}{% endfor %}',
    '{{ cycler.__init__.__globals__.os.environ }}',
    'x' * 100_000,
    '\x00' * 100,
    '😀' * 5_000,
    '\u202egnp.exe',
    '',
    ' ' * 50,
]


@pytest.mark.parametrize('answer', ANSWERS, ids=[a[:20].encode('unicode_escape').decode() or 'empty' for a in ANSWERS])
async def test_a_hostile_answer_is_data_never_a_template(chat: Harness, answer: str) -> None:
    await chat.command('echo', user=ADMIN)
    with bounded(seconds=10, megabytes=None):
        await chat.say(answer, user=ADMIN)
    replies = _safe_replies(chat)
    last = replies[-1]
    assert '49' not in last.replace(answer, ''), 'no template ran'
    if len(answer) <= 4_000 and answer.strip() and '\x00' not in answer:
        assert last == f'You said: {answer}', 'the answer is echoed as typed, not rendered'


@pytest.mark.parametrize('answer', ['a' * 30 + 'b', 'a' * 3_999 + '!', 'a' * 50_000, 'a' * 4_000])
async def test_a_backtracking_pattern_answers_in_linear_time(chat: Harness, answer: str) -> None:
    await chat.command('form', user=ADMIN)
    with bounded(seconds=1, megabytes=None):
        await chat.say(answer, user=ADMIN)
    _safe_replies(chat)


async def test_other_conversations_are_served_while_one_sends_a_flood(chat: Harness) -> None:
    await chat.command('echo', user=ADMIN)
    await chat.say('x' * 1_000_000, user=ADMIN)
    other = ConversationKey('test', 'chan', 'other')
    await chat.command('hi', key=other, user=User('other'))
    assert chat.texts(other), 'the other user got an answer'
    assert isinstance(chat.adapter, RecordingAdapter)
