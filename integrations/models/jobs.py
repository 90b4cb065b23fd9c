"""Training jobs: durable records with their own delivery, started and watched through any restart.

A job belongs to the bot, not to the conversation that asked for it. Its record (in the store, see
:meth:`engine.store.Store.put_job`) holds who asked, where the outcome goes (adapter, channel, user,
progress message) and the remote ids of what was created. Every step is recorded *before* it is taken,
so after a crash the watcher goes on from the record: the provider looks up what may have been created
(see :meth:`ModelProvider.start`) instead of creating it again.

Delivery: the outcome goes to the conversation still waiting on ``job:<id>`` (inline, as the flow's
report); when none waits (the user started another command, or the wait timed out) it is posted to the
channel mentioning the user, after ``delivery_grace`` seconds in which the asking conversation may still
reach its ``wait``. The record is marked ``reported`` once the channel accepted it; a crash in the
milliseconds between the two sends it once more after the restart (at-least-once in that window,
exactly once everywhere else). ``model.jobs`` shows the same text.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from engine.i18n import _, format_number
from engine.states.actions import ActionError, Notifier
from engine.store import Store
from integrations.models.datasets import Example, read_jsonl, write_jsonl
from integrations.models.plots import metric_name
from integrations.models.providers.base import TERMINAL, Job, ModelProvider, ProviderError, Update, status_text

if TYPE_CHECKING:
    from integrations.models.workers import JobQueue

__all__ = ['JobManager', 'job_payload', 'job_text', 'place_of', 'status_text']

_log = logging.getLogger(__name__)
_RESULT_ATTEMPTS = 5
_POST_ATTEMPTS = 10
"""Failed posts (the adapter raised) before a result is left for ``jobs`` to show."""
_PROGRESS = 'job_progress'
"""With workers: the record holding the id of a job's progress message (see ``_keep_progress_message``)."""
_TRAIN, _VALID = 'train.jsonl', 'valid.jsonl'
"""The examples of a job, kept in ``<folder>/<job id>/``: a start after a crash reads them, and ``test``
checks test data against ``train.jsonl`` (the model's training data)."""


def job_text(job: Job) -> str:
    """A short human summary of a job, used in notifications and listings."""
    if job.status == 'succeeded':
        metrics = ', '.join(
            f'{metric_name(k)} {format_number(float(f"{v:.3g}"))}'
            for k, v in job.metrics.items()
            if k != 'trained_tokens'
        )
        text = _('Training job {id} finished: model {model_id}').format(id=job.id, model_id=job.model_id)
        text += f' ({metrics}).' if metrics else '.'
        return text + (' ' + _('Note: {error}').format(error=job.error) if job.error else '')
    if job.status == 'failed':
        return _('Training job {id} failed: {value}').format(id=job.id, value=job.error or _('no reason given'))
    if job.status == 'cancelled':
        return _('Training job {id} was cancelled.').format(id=job.id)
    text = (
        _('Training job {id} is {status}').format(id=job.id, status=status_text(job.status))
        + (f' ({job.progress})' if job.progress else '')
        + '.'
    )
    return text + (' ' + _('Last problem: {error}').format(error=job.error) if job.error else '')


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


def place_of(who: str, **extra: Any) -> dict[str, Any]:
    """The report place of a conversation key written as ``adapter:channel:user``."""
    adapter, _, rest = who.partition(':')
    channel, _, user = rest.rpartition(':')
    return {'adapter': adapter, 'channel': channel, 'thread': None, 'user': user, 'progress': None, **extra}


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
        delivery_grace: float = 10.0,
        on_success: Callable[[Job], Awaitable[None]] | None = None,
        queue: JobQueue | None = None,
    ) -> None:
        """:param folder: where each job's files go (``<folder>/<job id>/training.png``, its examples).
        :param queue: hand watching to ``flowbot worker`` processes (see :mod:`integrations.models.workers`);
            ``None`` watches in this process.
        """
        self.store = store
        self.notifier = notifier
        self.providers = providers
        self.folder = folder
        self.max_poll_interval = max_poll_interval
        self.delivery_grace = delivery_grace
        self.on_success = on_success
        self.queue = queue
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def save(self, job: Job) -> None:
        await self.store.put_job(attrs.asdict(job))

    async def get(self, job_id: str) -> Job:
        record = await self.store.get_job(job_id.strip())
        if record is None:
            raise ActionError(_('unknown job {job_id!r}; use jobs to list them').format(job_id=job_id))
        return _job(record)

    async def list(self) -> list[Job]:
        return _readable_jobs(await self.store.list_jobs())

    async def by_call(self, call: str) -> Job | None:
        """The job a call started (to adopt it when the call runs again after a restart)."""
        if not call:
            return None
        return next((j for j in await self.list() if j.call == call), None)

    def examples_of(self, job: Job) -> pathlib.Path:
        """The JSONL of the examples ``job`` trained on."""
        return self.folder / job.id / _TRAIN

    async def submit(
        self,
        provider: ModelProvider,
        *,
        who: str,
        place: Mapping[str, Any],
        call: str,
        dataset: str,
        train: Sequence[Example],
        valid: Sequence[Example],
        holdout: str | None = None,
    ) -> Job:
        """Persist a new job, start it with ``provider`` and watch it; returns once it has started.

        A start that failed for good raises (the caller shows the error, which counts as the report);
        one that failed for a while (server unreachable) leaves the job ``starting`` and the watcher
        tries again, looking up what may have been created first.
        """
        job = Job(
            id=uuid.uuid4().hex[:10],
            provider=provider.name,
            who=who,
            place=dict(place),
            call=call,
            dataset=dataset,
            holdout=holdout,
            examples=len(train),
            validation_examples=len(valid),
        )
        folder = self.folder / job.id
        await asyncio.to_thread(write_jsonl, folder / _TRAIN, train)
        await asyncio.to_thread(write_jsonl, folder / _VALID, valid)
        await self.save(job)
        try:
            await self._start(job, provider, train, valid)
        except ProviderError as exc:
            if not exc.fatal:
                job.error = str(exc)
                await self.save(job)
                _log.warning('job %s could not start yet, retrying in the background: %s', job.id, exc)
                await self._hand_over(job)
                return job
            await self._fail_start(job, provider, str(exc))
            raise
        except ActionError as exc:
            await self._fail_start(job, provider, str(exc))
            raise
        _log.info('job %s started on %s (remote %s) for %s', job.id, provider.name, job.remote_id, job.who)
        await self._hand_over(job)
        return job

    async def _fail_start(self, job: Job, provider: ModelProvider, error: str) -> None:
        job.status, job.error, job.finished = 'failed', error, time.time()
        job.reported, job.delivered = True, 'shown'  # the caller shows the error directly
        await self.save(job)
        await self._cleanup(job, provider)

    async def _start(
        self, job: Job, provider: ModelProvider, train: Sequence[Example], valid: Sequence[Example]
    ) -> None:
        async def save() -> None:
            await self.save(job)

        await provider.start(job, train, valid, save)
        job.error = None
        await self.save(job)

    async def cancel(self, job_id: str) -> Job:
        """Record the wish to cancel (so a restart still cancels), then ask the provider once."""
        job = await self.get(job_id)
        if job.status in TERMINAL:
            raise ActionError(_('job {id} has already {status}').format(id=job.id, status=status_text(job.status)))
        provider = self._provider(job)
        job.extra['cancel'] = time.time()
        await self.save(job)
        if job.status == 'starting' and job.remote_id is None:
            return job  # the watcher stops the start, or cancels what it finds was created
        try:
            await provider.cancel(job)
        except ProviderError as exc:
            if exc.fatal:
                raise
            _log.warning('cancelling job %s failed for now; the watcher retries: %s', job.id, exc)
            return job
        job.extra['cancel_sent'] = time.time()
        await self.save(job)
        return job

    async def resume(self) -> int:
        """After a restart: watch unfinished jobs, deliver finished unreported ones. Returns how many."""
        count = 0
        for job in _readable_jobs(await self.store.list_jobs(open_only=True)):
            if job.reported or job.id in self._tasks:
                continue
            if not self.notifier.owns(job.place or place_of(job.who)):
                continue  # another bot process runs that guild's shard and watches it: one watcher per job
            await self._hand_over(job)
            count += 1
        if count:
            _log.info('resumed %d training job(s)', count)
        return count

    async def _hand_over(self, job: Job) -> None:
        """Watch ``job`` here, or queue it for a worker; a finished job is always delivered here, and a
        job training in this process (the local provider) is watched here."""
        provider = self.providers.get(job.provider)
        if self.queue is not None and job.finished is None and not (provider is not None and provider.in_process):
            await self.queue.defer(job.id)
        else:
            self._watch(job)

    async def work(self, job_id: str) -> None:
        """A worker's task: run the job's watcher from its record up to ``finished`` (not the delivery).

        Run again after a worker died, it goes on from the record (nothing is created twice); run for
        a finished job, it does nothing.
        """
        job = await self.get(job_id)
        if job.finished is None:
            await self._finish(job)

    async def on_message(self, message: Mapping[str, Any]) -> None:
        """A worker's message (see :class:`~integrations.models.workers.JobQueue`): show its progress
        in the waiting conversation, or deliver a job it finished when this process owns the job's place."""
        job_id = str(message.get('done') or message.get('progress') or '')
        record = await self.store.get_job(job_id) if job_id else None
        if record is None:
            _log.warning('job queue: message about an unknown job %r', job_id)
            return
        job = _job(record)
        if not self.notifier.owns(job.place or place_of(job.who)):
            return  # the process running that guild's shard shows and delivers it
        if 'progress' in message:  # the waiting conversation's message, else the job's own
            await self._progress(job, str(message.get('text', '')))
        elif not job.reported and job.finished is not None and job.id not in self._tasks:
            self._watch(job)  # finished: only the delivery is left

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
            raise ActionError(
                _('job {id} ran on {provider}, which is not configured now').format(id=job.id, provider=job.provider)
            )
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
        """Show progress where the job reports: the waiting conversation's message, else the job's own
        (the last message a waiting conversation showed it in, edited in place)."""
        try:
            shown = await self.notifier.progress(job.topic, text)
            known = await self._progress_message(job)
            if shown and known != shown[0]:
                await self._keep_progress_message(job, shown[0])
            elif not shown and known:
                await self.notifier.post(job.place, text, edit=known)
        except Exception:
            _log.exception('progress update for job %s failed', job.id)

    async def _progress_message(self, job: Job) -> str | None:
        if self.queue is not None:  # see _keep_progress_message
            record = await self.store.get_record(_PROGRESS, job.id)
            if record is not None:
                return str(record['message'])
        message = job.place.get('progress')
        return str(message) if message else None

    async def _keep_progress_message(self, job: Job, message: str) -> None:
        """Remember the job's progress message. With workers, in a record of its own: the job's record is
        the worker's to write while it runs, and a bot process writing it too could undo the worker's step."""
        if self.queue is not None:
            await self.store.put_record(_PROGRESS, job.id, {'message': message})
        else:
            job.place['progress'] = message
            await self.save(job)

    async def _run(self, job: Job) -> None:
        await self._finish(job)
        await self._deliver(job)

    async def _finish(self, job: Job) -> None:
        """Start, follow and collect the job until its record is ``finished`` and cleaned up."""
        try:
            provider: ModelProvider | None = self._provider(job)
        except ActionError as exc:
            job.status, job.error = 'failed', str(exc)
            provider = None
        if provider is not None and job.status == 'starting':
            await self._keep_starting(job, provider)
        if provider is not None and job.status not in TERMINAL:
            await self._follow(job, provider)
        if provider is not None and job.status == 'succeeded' and job.plot is None and job.finished is None:
            await self._collect(job, provider)
        if job.finished is None:
            job.finished = time.time()
            await self.save(job)
        if provider is not None:
            await self._cleanup(job, provider)

    async def _keep_starting(self, job: Job, provider: ModelProvider) -> None:
        """Finish a start a crash or an outage interrupted, from the examples the job kept."""
        folder = self.folder / job.id
        try:
            train = await asyncio.to_thread(read_jsonl, folder / _TRAIN)
            valid = await asyncio.to_thread(read_jsonl, folder / _VALID) if (folder / _VALID).is_file() else []
        except (OSError, ValueError, KeyError) as exc:
            _log.error('job %s: its examples in %s cannot be read: %s', job.id, folder, exc)
            job.status, job.error = 'failed', _('the job was interrupted and its examples are lost; run train again')
            return
        delay = provider.poll_interval
        while job.status == 'starting':
            if job.extra.get('cancel') and not job.extra.get('create_sent'):
                job.status, job.error = 'cancelled', None
                return
            try:
                await self._start(job, provider, train, valid)
            except ProviderError as exc:
                job.error = str(exc)
                await self.save(job)
                if exc.fatal:
                    job.status = 'failed'
                    return
                _log.warning('job %s still cannot start (next try in %.0fs): %s', job.id, delay, exc)
                await self._progress(job, _('waiting for {provider}: {error}').format(provider=job.provider, error=exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_poll_interval)
            except ActionError as exc:
                job.status, job.error = 'failed', str(exc)
                return
        _log.info('job %s started on %s (remote %s) after an interruption', job.id, provider.name, job.remote_id)

    async def _follow(self, job: Job, provider: ModelProvider) -> None:
        delay = provider.poll_interval
        while job.status not in TERMINAL:
            if job.extra.get('cancel') and not job.extra.get('cancel_sent'):
                try:
                    await provider.cancel(job)
                    job.extra['cancel_sent'] = time.time()
                    await self.save(job)
                except ProviderError as exc:
                    _log.warning('cancelling job %s failed, retrying: %s', job.id, exc)
            await asyncio.sleep(delay)
            try:
                update = await provider.poll(job)
            except ProviderError as exc:
                if exc.fatal:
                    job.status, job.error = 'failed', str(exc)
                    break
                delay = min(delay * 2, self.max_poll_interval)
                _log.warning('polling job %s failed, next try in %.0fs: %s', job.id, delay, exc)
                await self._progress(
                    job,
                    _('{status}: {error} (retrying in {seconds} s)').format(
                        status=status_text(job.status), error=exc, seconds=round(delay)
                    ),
                )
                continue
            delay = provider.poll_interval
            changed = (update.status, update.progress) != (job.status, job.progress)
            job.status, job.progress = update.status, update.progress
            job.last_event = update.last_event or job.last_event
            if update.error:
                job.error = update.error
            if changed or update.events:
                await self.save(job)
                await self._show(job, update)

    async def _show(self, job: Job, update: Update) -> None:
        """Progress lines of one poll. An event is prefixed with the status only while the job still has
        it (events read with a final status may come from before it); the last line is the poll's own
        status with its newest event, so a status is never paired with an event of another poll."""
        final = update.progress or status_text(update.status)
        events = list(update.events)
        if update.status not in TERMINAL:
            lines = [f'{status_text(update.status)}: {text}' for text in events]
        else:  # the newest event is in the final line already
            lines = events[:-1] if events and final.endswith(events[-1]) else events
        if not lines or lines[-1] != final:
            lines.append(final)
        for line in lines:
            await self._progress(job, line)

    async def _collect(self, job: Job, provider: ModelProvider) -> None:
        delay = provider.poll_interval
        for attempt in range(1, _RESULT_ATTEMPTS + 1):
            try:
                result = await provider.result(job, self.folder / job.id)
            except ProviderError as exc:
                _log.warning('fetching the result of job %s failed (attempt %d): %s', job.id, attempt, exc)
                if exc.fatal or attempt == _RESULT_ATTEMPTS:
                    job.error = _('trained, but the result could not be read: {error}').format(error=exc)
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

    async def _cleanup(self, job: Job, provider: ModelProvider) -> None:
        if job.extra.get('cleaned'):
            return
        try:
            await provider.cleanup(job)
        except ProviderError as exc:  # left for the next restart; the job's record names the files
            _log.warning('job %s: cleaning up after it failed: %s', job.id, exc)
            return
        job.extra['cleaned'] = time.time()
        await self.save(job)

    async def _deliver(self, job: Job) -> None:
        """Hand the outcome to the waiting conversation, else post it to the place; retry until one works."""
        deadline = (job.finished or time.time()) + self.delivery_grace
        delay = 0.2
        payload = job_payload(job)
        failures = 0
        while True:
            try:
                resumed = await self.notifier.notify(job.topic, payload)
            except Exception:
                _log.exception('notifying the result of job %s failed', job.id)
                resumed = 0
            how = 'inline' if resumed else ''
            if not how and time.time() >= deadline:
                try:
                    posted = await self.notifier.post(
                        job.place or place_of(job.who), payload['text'], files=payload['files']
                    )
                except Exception:
                    _log.exception('posting the result of job %s to %s failed', job.id, job.place)
                    posted = None
                    failures += 1
                how = 'posted' if posted is not None else ''
                if failures >= _POST_ATTEMPTS:  # the channel refuses it (gone, no permission): jobs shows it
                    _log.error('job %s: giving up posting its result to %s; it stays in jobs', job.id, job.place)
                    how = 'undeliverable'
            if how:
                job.reported, job.delivered = True, how
                await self.save(job)
                _log.info('job %s reported (%s) %s', job.id, job.status, how)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def _job(record: Mapping[str, Any]) -> Job:
    """A job from its record; fields a newer version added get their defaults, unknown ones are dropped."""
    names = {a.name for a in attrs.fields(Job)}
    return Job(**{k: v for k, v in record.items() if k in names})


def _readable_jobs(records: Iterable[Mapping[str, Any]]) -> list[Job]:
    """The jobs of ``records``; one that cannot be a job (required fields missing, a damaged row) is logged
    and left out, so it neither stops the start of the bot nor hides the other jobs from ``jobs``."""
    jobs = []
    for record in records:
        try:
            jobs.append(_job(record))
        except (TypeError, ValueError) as exc:
            _log.error('job record %r cannot be read, skipped: %s', record.get('id'), exc)
    return jobs
