"""Kill-point matrix: a real ``flowbot chat`` SIGKILLed at each step of an OpenAI training job, then restarted.

The fake OpenAI server runs in a thread of the test process on 127.0.0.1 and outlives the bot; it can
park a request before or after it acts, so the bot can be killed with a request in flight. In every
row, after the restart: exactly one remote job was created (one bill), the report reached the user
exactly once, and no uploaded training file is left on the server.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integrations.console.chat_process import ChatProcess, chat_folder
from tests.integrations.models.fake_openai import KEY, FakeOpenAI

pytestmark = pytest.mark.slow

REPORT = r'Training job \w+ finished: model ft:'


class ThreadedFake:
    """The fake OpenAI server on its own event loop thread, so it keeps serving while the test blocks."""

    def __init__(self) -> None:
        self.server = FakeOpenAI(lifecycle=['validating_files', 'running'], final='running')
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def stop(self) -> None:
        for hold in self.server.holds:
            hold.released = True
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def fake() -> Iterator[ThreadedFake]:
    threaded = ThreadedFake()
    yield threaded
    threaded.stop()


@pytest.fixture
def bot_dir(tmp_path: pathlib.Path, fake: ThreadedFake) -> pathlib.Path:
    folder = tmp_path / 'bot'
    folder.mkdir()
    chat_folder(folder)
    with (folder / 'bot.toml').open('a', encoding='utf-8') as fh:
        fh.write(
            f'\n[models]\nprovider = "openai"\napi_key = "{KEY}"\nbase_url = "{fake.server.url}"\n'
            'poll_interval = 0.1\nmax_poll_interval = 0.5\ntimeout = 5\nmax_retries = 1\ndelivery_grace = 1\n'
        )
    lines = [
        json.dumps({'text': f'{word} review {i}', 'label': label})
        for i in range(12)
        for word, label in (('good', 'positive'), ('bad', 'negative'))
    ]
    (tmp_path / 'reviews.jsonl').write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return folder


def job_record(store: pathlib.Path) -> dict[str, Any] | None:
    """The one job record, read as another process would."""
    if not store.exists():
        return None
    db = sqlite3.connect(store, timeout=5)
    try:
        rows = db.execute("SELECT data FROM records WHERE kind = 'job'").fetchall()
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()
    assert len(rows) <= 1, rows
    return json.loads(rows[0][0]) if rows else None


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f'timed out waiting for {what}')


def start(bot_dir: pathlib.Path, store: pathlib.Path) -> ChatProcess:
    chat = ChatProcess(bot_dir, store)
    chat.expect(r'^flowbot console: ')
    return chat


def begin_training(chat: ChatProcess, data: pathlib.Path) -> None:
    chat.ask(f':attach {data} !train validation_split=0.25', r'Start training\?')
    chat.send('1')


def _held(fake: ThreadedFake, method: str, path: str, *, after: bool) -> Callable[[pathlib.Path], None]:
    hold = fake.server.hold(method, path, after=after)
    return lambda store: wait_for(lambda: hold.arrived, f'{method} {path} to reach the server')


def _stored(
    check: Callable[[dict[str, Any]], bool], what: str
) -> Callable[[ThreadedFake], Callable[[pathlib.Path], None]]:
    def arm(fake: ThreadedFake) -> Callable[[pathlib.Path], None]:
        return lambda store: wait_for(lambda: (r := job_record(store)) is not None and check(r), what)

    return arm


ROWS: dict[str, Callable[[ThreadedFake], Callable[[pathlib.Path], None]]] = {
    'before upload': lambda fake: _held(fake, 'POST', '/v1/files', after=False),
    'upload done, answer lost': lambda fake: _held(fake, 'POST', '/v1/files', after=True),
    'after upload': lambda fake: _held(fake, 'POST', '/v1/fine_tuning/jobs', after=False),
    'create sent, no answer': lambda fake: _held(fake, 'POST', '/v1/fine_tuning/jobs', after=True),
    'create answered': _stored(lambda r: r['remote_id'] is not None, 'the remote job id stored'),
    'running': _stored(lambda r: r['status'] == 'running', 'the job running'),
    'remote finished before the report': _stored(lambda r: r['status'] == 'running', 'the job running'),
    'after the report': _stored(lambda r: r['reported'], 'the report stored as delivered'),
}


@pytest.mark.parametrize('row', list(ROWS))
def test_killed_at_any_step_one_remote_job_one_report_no_orphaned_file(
    row: str, bot_dir: pathlib.Path, fake: ThreadedFake, tmp_path: pathlib.Path
) -> None:
    store = tmp_path / 'store.sqlite3'
    server = fake.server
    if row == 'after the report':
        server.final = 'succeeded'
    reached = ROWS[row](fake)
    first = start(bot_dir, store)
    try:
        begin_training(first, tmp_path / 'reviews.jsonl')
        if row == 'after the report':
            first.expect(REPORT, timeout=30)
        reached(store)
        first.kill()
    finally:
        first.close()
    for hold in server.holds:  # a parked request is let go; one whose client died does nothing
        hold.released = True
    server.final = 'succeeded'  # the remote job may now finish (while the bot is down, for some rows)

    second = start(bot_dir, store)
    try:
        if row == 'after the report':
            time.sleep(1.5)  # a second report would come within the delivery grace
        else:
            second.expect(REPORT, timeout=30)
        wait_for(lambda: (r := job_record(store)) is not None and r['reported'], 'the report stored')
        time.sleep(0.3)
        lines = second.finish()
    finally:
        second.close()

    reports = [line for line in [*first.lines, *lines] if 'finished: model ft:' in line]
    assert len(reports) == 1, (row, reports, first.lines, lines, second.stderr)
    assert server.creates == 1, (row, list(server.jobs))
    assert len(server.jobs) == 1
    assert server.training_files() == [], (row, server.files)
    record = job_record(store)
    assert record is not None and record['status'] == 'succeeded' and record['delivered'] == 'inline'
