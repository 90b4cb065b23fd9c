"""``flowbot chat`` as a user meets it: a real process, lines in on stdin, the bot's lines on stdout."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.engine.helpers import write_flows
from tests.integrations.console.chat_process import REPO, ChatProcess, chat_folder

pytestmark = pytest.mark.slow


@pytest.fixture
def bot_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    folder = tmp_path / 'bot'
    folder.mkdir()
    chat_folder(folder)
    return folder


def test_shipped_flows_answer_greetings_feedback_and_corrections(bot_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    store = tmp_path / 'store.sqlite3'
    chat = ChatProcess(bot_dir, store)
    try:
        chat.expect(r'^flowbot console: ')
        hello = chat.ask('!hi', r'^bot \[c\d+\]: Hi, ')
        assert 'I am flowbot. Type !instruction to see what I can do.' in hello
        greeting_id = hello.split('[', 1)[1].split(']', 1)[0]
        chat.ask('!feedback', r'What would you like to tell the maintainers\?$')
        chat.ask('great bot', r'Thank you, your feedback is saved\.$')
        chat.ask(
            f'!correct {greeting_id} Hello! How can I help?',
            rf'Thanks: the correction of message {greeting_id} is saved\.$',
        )
        chat.ask('!hii', r'Unknown command "hii" \(did you mean "hi"\?\)\. Try !instruction for the list\.$')
        chat.ask('!correct', r'^bot \[c\d+\]: Missing message_id\.$')
        chat.expect(r'^Usage: !correct <message_id:string> \[text:string\]$')
        chat.ask(':attach /no/such.ogg', r'^! No such file: /no/such.ogg\. Usage: :attach PATH \[text\]$')
        listing = chat.ask('!instruction', r'!feedback')
        assert listing
        lines = chat.finish()
    finally:
        chat.close()
    assert not any('Traceback' in line for line in lines)
    assert chat.stderr == ''

    feedback = _export(bot_dir, store, 'feedback')
    assert [(r['text'], r['conversation'].split(':')[0]) for r in feedback] == [('great bot', 'console')]
    (correction,) = _export(bot_dir, store, 'corrections')
    assert correction['message_id'] == greeting_id
    assert correction['original'].startswith('Hi, ')
    assert correction['correction'] == 'Hello! How can I help?'


def test_choices_are_pressed_by_number_and_a_dialog_can_be_cancelled(tmp_path: pathlib.Path) -> None:
    pick = (
        '[flow]\nname = "pick"\n[trigger]\ncommand = "pick"\n'
        '[states.q]\nkind = "ask"\nprompt = "Colour?"\nexpect = "choice"\n'
        'choices = ["red", { value = "blue", label = "Blue" }]\nsave_as = "c"\n'
        '[states.n]\nkind = "ask"\nprompt = "How many?"\nexpect = "integer"\nmin = 1\nsave_as = "n"\n'
        '[states.done]\nkind = "end"\ntext = "{{ n }} x {{ c }}"\n'
    )
    flows = write_flows(tmp_path / 'flows', {'pick': pick})
    folder = tmp_path / 'bot'
    folder.mkdir()
    chat_folder(folder, flows, plugins='[]')
    chat = ChatProcess(folder, tmp_path / 'store.sqlite3')
    try:
        chat.ask('!pick', r'Colour\?$')
        chat.expect(r'^    \[1\] red  \[2\] Blue$')
        chat.ask('2', r'How many\?$')
        chat.ask('zero', r'Sorry, please answer with a whole number\. \(2 attempts left\)$')
        chat.ask('3', r'^bot \[c\d+\]: 3 x blue$')
        chat.ask('!pick', r'Colour\?$')
        chat.ask('cancel', r'Cancelled\.$')
        chat.ask('!cancel', r'There is nothing to cancel\.$')
        chat.finish()
    finally:
        chat.close()


def _export(cwd: pathlib.Path, store: pathlib.Path, kind: str) -> list[dict[str, str]]:
    env = {**os.environ, 'FLOWBOT_STORE': str(store), 'PYTHONPATH': str(REPO)}
    done = subprocess.run(
        [sys.executable, '-m', 'engine.cli', 'export', kind],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]
