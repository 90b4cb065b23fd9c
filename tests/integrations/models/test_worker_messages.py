"""The bot process's side of ``[models] workers = true``: what it does with a worker's messages.

A finished job is delivered only by the process owning its place, once, however many times the worker's
``done`` arrives (a retried task sends it again); progress goes to the waiting conversation only.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from engine.config import ConfigError, load_config
from engine.store import MemoryStore
from integrations.models.config import ModelsConfig
from integrations.models.jobs import JobManager, place_of
from integrations.models.providers.base import Job
from integrations.models.providers.local import LocalProvider
from integrations.models.service import ModelsService

__all__: list[str] = []


class Recorder:
    """A notifier that records; nobody waits, so a finished job is posted to its place."""

    def __init__(self, *, owns: bool = True) -> None:
        self.owned = owns
        self.posts: list[str] = []
        self.progressed: list[str] = []

    async def notify(self, topic: str, payload: Mapping[str, Any] | None = None) -> int:
        return 0

    async def progress(self, topic: str, text: str) -> list[str]:
        self.progressed.append(text)
        return []

    async def post(self, place: Mapping[str, Any], text: str, **_: Any) -> str | None:
        self.posts.append(text)
        return 'm1'

    def owns(self, place: Mapping[str, Any]) -> bool:
        return self.owned


async def _finished(store: MemoryStore) -> Job:
    job = Job(id='j1', provider='local', who='console:c1:u1', dataset='reviews', place=place_of('console:c1:u1'))
    job.status, job.finished, job.model_id, job.plot = 'succeeded', time.time(), 'm', ''
    job.extra['cleaned'] = time.time()  # the worker cleaned up
    await store.put_job(attrs.asdict(job))
    return job


def _manager(store: MemoryStore, notifier: Recorder, tmp_path: pathlib.Path) -> JobManager:
    return JobManager(store, notifier, {'local': LocalProvider(tmp_path)}, tmp_path, delivery_grace=0)


async def test_a_finished_job_announced_twice_by_workers_is_delivered_once(tmp_path: pathlib.Path) -> None:
    store, notifier = MemoryStore(), Recorder()
    job = await _finished(store)
    jobs = _manager(store, notifier, tmp_path)
    await asyncio.gather(jobs.on_message({'done': job.id}), jobs.on_message({'done': job.id}))
    await jobs.wait(job.id)
    await jobs.on_message({'done': job.id})  # after it was reported
    await jobs.wait(job.id)
    assert notifier.posts == ['Training job j1 finished: model m.']
    record = await store.get_job(job.id)
    assert record is not None and record['reported'] and record['delivered'] == 'posted'


async def test_only_the_process_owning_the_jobs_place_delivers_or_shows_progress(tmp_path: pathlib.Path) -> None:
    store, notifier = MemoryStore(), Recorder(owns=False)
    job = await _finished(store)
    jobs = _manager(store, notifier, tmp_path)
    await jobs.on_message({'done': job.id})
    await jobs.on_message({'progress': job.id, 'text': 'running: step 3'})
    await jobs.wait(job.id)
    assert notifier.posts == [] and notifier.progressed == []
    record = await store.get_job(job.id)
    assert record is not None and not record['reported']


async def test_progress_of_a_worker_reaches_the_waiting_conversation(tmp_path: pathlib.Path) -> None:
    store, notifier = MemoryStore(), Recorder()
    job = await _finished(store)
    await _manager(store, notifier, tmp_path).on_message({'progress': job.id, 'text': 'running: step 3'})
    assert notifier.progressed == ['running: step 3'] and notifier.posts == []


async def test_a_message_about_an_unknown_job_is_logged_and_ignored(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Recorder()
    await _manager(MemoryStore(), notifier, tmp_path).on_message({'done': 'nope'})
    assert notifier.posts == [] and 'unknown job' in caplog.text


def test_workers_need_a_postgresql_store(tmp_path: pathlib.Path) -> None:
    (tmp_path / 'bot.toml').write_text('[bot]\nflows = []\n', encoding='utf-8')
    config = load_config(tmp_path / 'bot.toml')
    with pytest.raises(ConfigError, match='needs a PostgreSQL store'):
        ModelsService(config, ModelsConfig(workers=True), MemoryStore(), Recorder())


class Queue:
    def __init__(self) -> None:
        self.deferred: list[str] = []

    async def defer(self, job_id: str, *, task: str = '') -> None:
        self.deferred.append(job_id)


async def test_with_workers_a_remote_job_is_queued_and_a_local_one_stays_in_the_bot(tmp_path: pathlib.Path) -> None:
    store, queue = MemoryStore(), Queue()
    jobs = _manager(store, Recorder(), tmp_path)
    jobs.queue = queue  # type: ignore[assignment]
    jobs.providers = {**jobs.providers, 'openai': LocalProvider(tmp_path / 'o')}
    jobs.providers['openai'].in_process = False
    remote = Job(id='r1', provider='openai', who='console:c1:u1', dataset='d', status='running')
    local = Job(id='l1', provider='local', who='console:c1:u1', dataset='d', status='running')
    for job in (remote, local):
        await store.put_job(attrs.asdict(job))
    assert await jobs.resume() == 2
    assert queue.deferred == ['r1'] and 'l1' in jobs._tasks and 'r1' not in jobs._tasks
    await jobs.stop()


class Conversation(Recorder):
    """A notifier whose conversation waits on the job (progress shown in message ``m9``) until it moves on."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = True
        self.edits: list[tuple[str, str | None]] = []

    async def progress(self, topic: str, text: str) -> list[str]:
        self.progressed.append(text)
        return ['m9'] if self.waiting else []

    async def post(self, place: Mapping[str, Any], text: str, **extra: Any) -> str | None:
        self.edits.append((text, extra.get('edit')))
        return 'm9'


async def test_a_workers_progress_edits_the_jobs_progress_message_once_nobody_waits(tmp_path: pathlib.Path) -> None:
    store, notifier = MemoryStore(), Conversation()
    running = Job(id='r1', provider='openai', who='console:c1:u1', dataset='d', status='running')
    await store.put_job(attrs.asdict(running))
    jobs = _manager(store, notifier, tmp_path)
    jobs.queue = Queue()  # type: ignore[assignment]
    await jobs.on_message({'progress': 'r1', 'text': 'running: step 1'})
    notifier.waiting = False  # the user typed another command
    await jobs.on_message({'progress': 'r1', 'text': 'running: step 2'})
    assert notifier.progressed == ['running: step 1', 'running: step 2']
    assert notifier.edits == [('running: step 2', 'm9')]  # edited in place, not a new message
    assert await store.get_job('r1') == attrs.asdict(running)  # the worker's record is left to the worker


async def test_with_workers_an_upload_over_the_limit_is_refused_before_it_is_copied_or_queued(
    tmp_path: pathlib.Path,
) -> None:
    from engine.api import Attachment
    from engine.states.actions import ActionError
    from engine.tasks import RECORD
    from integrations.models.config import Limits

    (tmp_path / 'bot.toml').write_text('[bot]\nflows = []\n', encoding='utf-8')
    store, queue = MemoryStore(), Queue()
    service = ModelsService(
        load_config(tmp_path / 'bot.toml'), ModelsConfig(limits=Limits(max_upload_bytes=1000)), store, Recorder()
    )
    service.tasks.queue, service.tasks.offloaded = queue, {'dataset.import', 'model.test'}
    big = tmp_path / 'big.jsonl'
    big.write_bytes(b'{"text": "x", "label": "a"}\n' * 100)
    upload = Attachment('big.jsonl', 'application/json', big.stat().st_size, big)
    with pytest.raises(ActionError, match=r'big.jsonl is too large \(2800 bytes, limit 1000\)'):
        await service.upload([upload], None, add=False, call='c1')
    with pytest.raises(ActionError, match='too large'):
        await service.test(None, [upload], call='c2')
    assert queue.deferred == [] and await store.list_records(RECORD) == []
    assert not (service.tasks.folder).exists()
