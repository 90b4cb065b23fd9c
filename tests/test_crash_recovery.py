"""Crash test: SIGKILL a real ``flowbot chat`` mid-dialog and start it again on the same SQLite store.

The dialog must go on at the step it was on, with the answers collected before the crash, and a
timeout that fell due while the bot was down must fire exactly once after the restart.
"""

from __future__ import annotations

import pathlib
import sqlite3
import time

import pytest

from tests.integrations.console.chat_process import ChatProcess, chat_folder

pytestmark = pytest.mark.slow

FORM = """
[flow]
name = "form"
description = "Three questions, the last one with a timeout"

[trigger]
command = "form"

[states.name]
kind = "ask"
prompt = "Your name?"
save_as = "name"

[states.colour]
kind = "ask"
prompt = "Favourite colour?"
save_as = "colour"

[states.age]
kind = "ask"
prompt = "Your age?"
expect = "integer"
save_as = "age"
timeout = "1s"
on_timeout = "late"

[states.summary]
kind = "end"
text = "Form: name={{ name }}, colour={{ colour }}, age={{ age }}"

[states.late]
kind = "say"
text = "No age given in time, {{ name }}."

[states.late_summary]
kind = "end"
text = "Form: name={{ name }}, colour={{ colour }}, age=unknown"
"""

LATE = 'No age given in time, Ann.'


@pytest.fixture
def bot_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    flows = tmp_path / 'flows'
    flows.mkdir()
    (flows / 'form.toml').write_text(FORM, encoding='utf-8')
    folder = tmp_path / 'bot'
    folder.mkdir()
    chat_folder(folder, flows, plugins='[]')
    return folder


def stored(store: pathlib.Path) -> list[tuple[str, float | None]]:
    """(state, deadline) of every conversation in the store, read as another process would."""
    if not store.exists():
        return []
    db = sqlite3.connect(store, timeout=5)
    try:
        return list(db.execute('SELECT state, deadline FROM conversations'))
    except sqlite3.OperationalError:  # the schema is not created yet
        return []
    finally:
        db.close()


def wait_stored(store: pathlib.Path, state: str, timeout: float = 10.0) -> float | None:
    """Wait until the conversation is durably in ``state``; return its deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = stored(store)
        if rows and rows[0][0] == state:
            return rows[0][1]
        time.sleep(0.01)
    raise AssertionError(f'the store never showed state {state!r}: {stored(store)}')


def start(bot_dir: pathlib.Path, store: pathlib.Path) -> ChatProcess:
    chat = ChatProcess(bot_dir, store)
    chat.expect(r'^flowbot console: ')
    return chat


def test_a_killed_dialog_continues_at_the_same_step_with_its_answers(
    bot_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    store = tmp_path / 'store.sqlite3'
    first = start(bot_dir, store)
    try:
        first.ask('!form', r'Your name\?$')
        first.ask('Ann', r'Favourite colour\?$')
        wait_stored(store, 'colour')
        first.kill()
    finally:
        first.close()
    assert first.proc.returncode == -9

    second = start(bot_dir, store)
    try:
        second.expect(r'^\(the form dialog is still open: answer it, or type cancel\)$')
        second.expect(r'Favourite colour\?$')  # the open question, shown again for the fresh terminal
        second.ask('blue', r'Your age\?$')
        second.ask('41', r'^bot \[c\d+\]: Form: name=Ann, colour=blue, age=41$')
        lines = second.finish()
    finally:
        second.close()
    assert not any('Your name?' in line for line in lines)
    assert sum('Favourite colour?' in line for line in lines) == 1
    assert stored(store) == []


def test_a_timeout_that_fell_due_while_killed_fires_once_after_restart(
    bot_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    store = tmp_path / 'store.sqlite3'
    first = start(bot_dir, store)
    try:
        first.ask('!form', r'Your name\?$')
        first.ask('Ann', r'Favourite colour\?$')
        first.ask('blue', r'Your age\?$')
        due = wait_stored(store, 'age')
        first.kill()
    finally:
        first.close()
    assert due is not None, 'the age question was stored without its deadline'
    assert not any(LATE in line for line in first.lines), 'the timeout fired before the kill; the machine is too slow'
    while time.time() < due + 0.2:  # let the timeout fall due while no bot runs
        time.sleep(0.05)

    second = start(bot_dir, store)
    try:
        second.expect(rf'^bot \[c\d+\]: {LATE}$')
        second.expect(r'^bot \[c\d+\]: Form: name=Ann, colour=blue, age=unknown$')
        time.sleep(0.3)  # a second firing would show up here
        lines = second.finish()
    finally:
        second.close()
    assert sum(LATE in line for line in lines) == 1, lines
    assert stored(store) == []
