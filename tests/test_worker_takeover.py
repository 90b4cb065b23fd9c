"""Training watched by ``flowbot worker`` processes on the real PostgreSQL server: a worker SIGKILLed mid-training.

A ``flowbot chat`` (the bot process) starts an OpenAI training job on the fake server and queues its
watcher; worker A polls it until the remote job runs, then is SIGKILLed. Worker B finds A's task stalled
(no heartbeat), runs it again from the job record, and the report reaches the waiting conversation
exactly once, with one remote job created.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integrations.console.chat_process import REPO
from tests.postgres import PostgresServer
from tests.test_job_kill_matrix import REPORT, ThreadedFake, begin_training, bot_dir, fake, start, wait_for

__all__ = ['bot_dir', 'fake']  # the kill matrix's fixtures, used here too

pytestmark = pytest.mark.slow


async def _fetch(dsn: str, query: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


def fetch(dsn: str, query: str) -> list[Any]:
    try:
        return asyncio.run(_fetch(dsn, query))
    except Exception:  # the table may not exist yet
        return []


def job_record(dsn: str) -> dict[str, Any] | None:
    rows = fetch(dsn, "SELECT data::text FROM records WHERE kind = 'job'")
    assert len(rows) <= 1, rows
    return json.loads(rows[0][0]) if rows else None


class Worker:
    """``flowbot worker`` in the bot folder, its output in a file."""

    def __init__(self, folder: pathlib.Path, dsn: str, name: str) -> None:
        self.log = folder.parent / f'worker-{name}.log'
        env = {
            **os.environ,
            'FLOWBOT_STORE': dsn,
            'PYTHONPATH': str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''),
        }
        env.pop('FLOWBOT_CONFIG', None)
        with self.log.open('w', encoding='utf-8') as out:
            self.proc = subprocess.Popen(
                [sys.executable, '-m', 'engine.cli', '-v', 'worker'], cwd=folder, env=env, stdout=out, stderr=out
            )
        wait_for(lambda: 'watching queued jobs' in self.output, f'worker {name} to start')

    @property
    def output(self) -> str:
        return self.log.read_text(encoding='utf-8')

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def dsn(postgres_server: PostgresServer) -> str:
    return asyncio.run(postgres_server.new_database())


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def with_workers(bot_dir: pathlib.Path, more: str = '') -> None:
    """Send the bot's long work to workers (quick heartbeats, so a killed one is taken over fast).

    :param more: lines after the workers' (more ``[models]`` keys, or further sections).
    """
    with (bot_dir / 'bot.toml').open('a', encoding='utf-8') as fh:  # [models] is the file's last section
        fh.write('workers = true\nworker_heartbeat = 0.3\nworker_stalled_after = 1.5\n' + more)


def test_a_worker_killed_mid_training_another_finishes_and_the_report_arrives_once(
    bot_dir: pathlib.Path, fake: ThreadedFake, dsn: str, workers: list[Worker], tmp_path: pathlib.Path
) -> None:
    with_workers(bot_dir)
    server = fake.server
    chat = start(bot_dir, dsn)
    try:
        workers.append(Worker(bot_dir, dsn, 'a'))
        begin_training(chat, tmp_path / 'reviews.jsonl')
        wait_for(lambda: (r := job_record(dsn)) is not None and r['status'] == 'running', 'worker A polling the job')
        [(task_id, doing_worker)] = fetch(dsn, "SELECT id, worker_id FROM procrastinate_jobs WHERE status = 'doing'")
        assert doing_worker is not None
        workers[0].proc.kill()  # SIGKILL, mid-training
        workers[0].proc.wait(10)
        server.final = 'succeeded'
        workers.append(Worker(bot_dir, dsn, 'b'))
        chat.expect(REPORT, timeout=40)
        wait_for(lambda: (r := job_record(dsn)) is not None and r['reported'], 'the report stored')
        time.sleep(2)  # a second report would come within the delivery grace
        lines = chat.finish()
    finally:
        chat.close()

    reports = [line for line in lines if 'finished: model ft:' in line]
    assert len(reports) == 1, (reports, lines, chat.stderr)
    assert server.creates == 1, list(server.jobs)
    assert server.training_files() == [], server.files
    record = job_record(dsn)
    assert record is not None and record['status'] == 'succeeded' and record['delivered'] == 'inline'
    assert f'task {task_id}' in workers[1].output and 'is retried' in workers[1].output, workers[1].output
    [(status, worker)] = fetch(dsn, f'SELECT status, worker_id FROM procrastinate_jobs WHERE id = {task_id}')
    assert status == 'succeeded' and worker != doing_worker


def test_a_job_a_worker_finished_while_the_bot_was_down_is_reported_once_after_the_restart(
    bot_dir: pathlib.Path, fake: ThreadedFake, dsn: str, workers: list[Worker], tmp_path: pathlib.Path
) -> None:
    with_workers(bot_dir)
    server = fake.server
    first = start(bot_dir, dsn)
    try:
        workers.append(Worker(bot_dir, dsn, 'a'))
        begin_training(first, tmp_path / 'reviews.jsonl')
        wait_for(lambda: (r := job_record(dsn)) is not None and r['status'] == 'running', 'the worker polling the job')
        first.kill()  # the bot dies; the worker goes on
    finally:
        first.close()
    server.final = 'succeeded'
    wait_for(lambda: (r := job_record(dsn)) is not None and r['finished'], 'the worker finishing the job', 30)
    assert not job_record(dsn)['reported']  # type: ignore[index]  # nobody was there to deliver it
    second = start(bot_dir, dsn)
    try:
        second.expect(REPORT, timeout=30)
        wait_for(lambda: (r := job_record(dsn)) is not None and r['reported'], 'the report stored')
        time.sleep(1.5)
        lines = second.finish()
    finally:
        second.close()
    reports = [line for line in [*first.lines, *lines] if 'finished: model ft:' in line]
    assert len(reports) == 1, (reports, lines, second.stderr)
    assert server.creates == 1
