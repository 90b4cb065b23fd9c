"""Training jobs: persisted at once, polled with backoff, each result reported exactly once.

Reporting: the job record is marked ``reported`` *before* ``notify`` is called, with nothing awaited in
between that could interleave another delivery, so two processes or a restart never report a job twice.
If ``notify`` resumes nobody (the conversation has not reached its ``wait`` state yet, e.g. a tiny local
job finished first), the mark is taken back and delivery is retried for ``delivery_grace`` seconds.
A crash exactly between the mark and the notification loses that one message, never the result:
it stays in the record and ``model.jobs`` shows it.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from engine.states.actions import ActionError, Notifier
from engine.store import Store
from integrations.models.providers.base import TERMINAL, Job, ModelProvider, ProviderError

__all__ = ['JobManager', 'job_payload', 'job_text']

_log = logging.getLogger(__name__)
_RESULT_ATTEMPTS = 5


def job_text(job: Job) -> str:
    """A short human summary of a job, used in notifications and listings."""
    if job.status == 'succeeded':
        metrics = ', '.join(f'{k} {v:.3g}' for k, v in job.metrics.items() if k != 'trained_tokens')
        text = f'Training job {job.id} finished: model {job.model_id}'
        return text + (f' ({metrics}).' if metrics else '.')
    if job.status == 'failed':
        return f'Training job {job.id} failed: {job.error or "no reason given"}'
    if job.status == 'cancelled':
        return f'Training job {job.id} was cancelled.'
    return f'Training job {job.id} is {job.status}' + (f' ({job.progress})' if job.progress else '') + '.'


def job_payload(job: Job) -> dict[str, Any]:
    """What a ``wait`` state receives on ``job:<id>``."""
    return {
        'job': job.id,
        'status': job.status,
        'model': job.model_id or '',
        'metrics': dict(job.metrics),
        'plot': job.plot or '',
        'files': [job.plot] if job.plot else [],
        'error': job.error or '',
        'text': job_text(job),
    }


class JobManager:
    """Starts, watches, cancels and reports jobs of any provider."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        providers: Mapping[str, ModelProvider],
        folder: pathlib.Path,
        *,
        max_poll_interval: float = 300.0,
        delivery_grace: float = 600.0,
        on_success: Callable[[Job], Awaitable[None]] | None = None,
    ) -> None:
        """:param folder: where each job's files go (``<folder>/<job id>/training.png``)."""
        self.store = store
        self.notifier = notifier
        self.providers = providers
        self.folder = folder
        self.max_poll_interval = max_poll_interval
        self.delivery_grace = delivery_grace
        self.on_success = on_success
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def save(self, job: Job) -> None:
        await self.store.put_record('job', job.id, attrs.asdict(job))

    async def get(self, job_id: str) -> Job:
        record = await self.store.get_record('job', job_id.strip())
        if record is None:
            raise ActionError(f'unknown job {job_id!r}; use jobs to list them')
        return Job(**record)

    async def list(self) -> list[Job]:
        return [Job(**r) for r in await self.store.list_records('job')]

    async def submit(self, provider: ModelProvider, *, who: str, dataset: str, train: Any, valid: Any) -> Job:
        """Persist a new job, start it with ``provider`` and watch it; returns once it has started."""
        job = Job(id=uuid.uuid4().hex[:10], provider=provider.name, who=who, dataset=dataset)
        await self.save(job)
        try:
            job = await provider.start(job, train, valid)
        except ActionError as exc:
            job.status, job.error, job.finished, job.reported = 'failed', str(exc), time.time(), True
            await self.save(job)  # the caller shows the error directly, so it counts as reported
            raise
        await self.save(job)
        _log.info('job %s started on %s (remote %s) for %s', job.id, provider.name, job.remote_id, job.who)
        self._watch(job)
        return job

    async def cancel(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job.status in TERMINAL:
            raise ActionError(f'job {job.id} has already {job.status}')
        provider = self._provider(job)
        await provider.cancel(job)
        return job

    async def resume(self) -> int:
        """After a restart: watch unfinished jobs, deliver finished unreported ones. Returns how many."""
        count = 0
        for job in await self.list():
            if job.reported or job.id in self._tasks:
                continue
            self._watch(job)
            count += 1
        if count:
            _log.info('resumed %d training job(s)', count)
        return count

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def wait(self, job_id: str) -> None:
        """Wait until the job's watcher is done (tests and the benchmark)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    def _provider(self, job: Job) -> ModelProvider:
        provider = self.providers.get(job.provider)
        if provider is None:
            raise ActionError(f'job {job.id} ran on {job.provider}, which is not configured now')
        return provider

    def _watch(self, job: Job) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job), name=f'job:{job.id}')
        self._tasks[job.id] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._tasks.get(job.id) is t:
                del self._tasks[job.id]
            if not t.cancelled() and t.exception() is not None:
                _log.error('watching job %s crashed', job.id, exc_info=t.exception())

        task.add_done_callback(done)

    async def _progress(self, job: Job, text: str) -> None:
        try:
            await self.notifier.progress(job.topic, text)
        except Exception:
            _log.exception('progress update for job %s failed', job.id)

    async def _run(self, job: Job) -> None:
        try:
            provider = self._provider(job)
        except ActionError as exc:
            job.status, job.error = 'failed', str(exc)
            provider = None
        if provider is not None and job.status not in TERMINAL:
            await self._follow(job, provider)
        if provider is not None and job.status == 'succeeded' and job.plot is None and job.finished is None:
            await self._collect(job, provider)
        if job.finished is None:
            job.finished = time.time()
            await self.save(job)
        await self._deliver(job)

    async def _follow(self, job: Job, provider: ModelProvider) -> None:
        delay = provider.poll_interval
        while job.status not in TERMINAL:
            await asyncio.sleep(delay)
            try:
                update = await provider.poll(job)
            except ProviderError as exc:
                if exc.fatal:
                    job.status, job.error = 'failed', str(exc)
                    break
                delay = min(delay * 2, self.max_poll_interval)
                _log.warning('polling job %s failed, next try in %.0fs: %s', job.id, delay, exc)
                await self._progress(job, f'{job.status}: {exc} (retrying in {delay:.0f}s)')
                continue
            delay = provider.poll_interval
            changed = (update.status, update.progress) != (job.status, job.progress)
            job.status, job.progress = update.status, update.progress
            job.last_event = update.last_event or job.last_event
            if update.error:
                job.error = update.error
            if changed or update.events:
                await self.save(job)
            for text in update.events:
                await self._progress(job, f'{job.status}: {text}')
            if changed and not update.events and job.status not in TERMINAL:
                await self._progress(job, update.progress or job.status)

    async def _collect(self, job: Job, provider: ModelProvider) -> None:
        delay = provider.poll_interval
        for attempt in range(1, _RESULT_ATTEMPTS + 1):
            try:
                result = await provider.result(job, self.folder / job.id)
            except ProviderError as exc:
                _log.warning('fetching the result of job %s failed (attempt %d): %s', job.id, attempt, exc)
                if exc.fatal or attempt == _RESULT_ATTEMPTS:
                    job.error = f'trained, but the result could not be read: {exc}'
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_poll_interval)
                continue
            job.model_id = result.model_id
            job.metrics = result.metrics
            job.plot = str(result.plot) if result.plot else ''
            break
        if job.plot is None:
            job.plot = ''
        if job.model_id and self.on_success is not None:
            try:
                await self.on_success(job)
            except Exception:
                _log.exception('switching to the model of job %s failed', job.id)

    async def _deliver(self, job: Job) -> None:
        deadline = (job.finished or time.time()) + self.delivery_grace
        delay = 0.5
        payload = job_payload(job)
        while True:
            job.reported = True
            await self.save(job)
            try:
                resumed = await self.notifier.notify(job.topic, payload)
            except Exception:
                _log.exception('notifying the result of job %s failed', job.id)
                resumed = 0
            if resumed or time.time() >= deadline:
                if not resumed:
                    _log.info('job %s: nobody waits for %s; the result stays in the store', job.id, job.topic)
                else:
                    _log.info('job %s reported (%s) to %d conversation(s)', job.id, job.status, resumed)
                return
            job.reported = False
            await self.save(job)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
