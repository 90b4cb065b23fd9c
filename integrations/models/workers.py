"""Training pollers in ``flowbot worker`` processes, through procrastinate (a PostgreSQL task queue).

Chosen by ``[models] workers = true`` with a PostgreSQL store. The bot process still uploads and creates
the remote job (the conversation waits for "started"); then, instead of polling it itself, it defers a
``flowbot.watch_job`` task. A worker runs the job's watcher (poll, fetch the result, clean up) from its
record and, once the record says ``finished``, sends ``NOTIFY flowbot_jobs``: the bot process that owns the
job's place (its shard) delivers the outcome exactly as before (to the waiting conversation, else to the
report place) and marks the record ``reported``.

At-least-once becomes exactly-once in effect through the job record: a task run twice (a worker killed
mid-task, its task retried by another) goes on from the record, so the remote job is never created twice
and a finished job is only delivered by its owner, once. A worker that dies stops sending heartbeats;
every worker looks for such stalled tasks every ``stalled_check`` seconds and puts them back in the queue.
A bot process that was down when the NOTIFY came finds the finished, unreported job when it starts.

The same queue and workers run the task kinds of :mod:`engine.tasks` (speech, imports, model tests) as
``flowbot.run_task``; a worker announces a finished one with ``{"task": id}`` on the same channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from engine.i18n import _
from engine.store import StoreError
from engine.tasks import RUN_TASK

__all__ = ['CHANNEL', 'TASK', 'JobQueue', 'RelayNotifier', 'run_worker']

_log = logging.getLogger(__name__)

CHANNEL = 'flowbot_jobs'
"""The LISTEN/NOTIFY channel: ``{"done": id}`` when a worker finished a job, ``{"progress": id, "text": t}``,
``{"task": id}`` when it finished a task of :mod:`engine.tasks`."""
TASK = 'flowbot.watch_job'
QUEUE = 'flowbot_jobs'
_SCHEMA_LOCK = (0x666C6F77, -2)
"""Advisory lock taken while procrastinate's schema is applied (several processes may start at once)."""
_MAX_TEXT = 1_000
"""Longest progress line relayed (NOTIFY payloads are limited to 8000 bytes)."""
_ATTEMPTS = 20
"""Runs of a task that raises before it is left failed (a bot restart queues the job again)."""


def _import_procrastinate() -> Any:
    try:
        import procrastinate
    except ImportError as exc:  # the [postgres] extra is not installed
        raise StoreError(_('[models] workers = true needs procrastinate: pip install "flowbot[postgres]"')) from exc
    return procrastinate


class JobQueue:
    """The bot's and the workers' side of the queue: defer watch tasks, relay progress and completion.

    :param dsn: the PostgreSQL store's URL; the queue's tables (``procrastinate_*``) live beside the store's.
    """

    def __init__(self, dsn: str, *, heartbeat: float = 10.0, stalled_after: float = 30.0) -> None:
        procrastinate = _import_procrastinate()
        self.dsn = dsn
        self.heartbeat = heartbeat
        self.stalled_after = stalled_after
        self.app: Any = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
        self._listener: Any = None
        self._opened = False

    async def open(self) -> None:
        """Connect, and create the queue's schema when the database has none yet."""
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            async with conn.transaction():
                await conn.execute('SELECT pg_advisory_xact_lock($1, $2)', *_SCHEMA_LOCK)
                if await conn.fetchval("SELECT to_regclass('procrastinate_jobs')") is None:
                    await conn.execute(self.app.schema_manager.get_schema())
                    _log.info('job queue: procrastinate schema created')
        finally:
            await conn.close()
        await self.app.open_async()
        self._opened = True

    async def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
        if self._opened:
            self._opened = False
            await self.app.close_async()

    async def defer(self, job_id: str, *, task: str = TASK) -> None:
        """Queue ``task`` (the watcher of a training job, or :data:`engine.tasks.RUN_TASK`) for ``job_id``,
        once: a task for it still waiting in the queue is enough."""
        procrastinate = _import_procrastinate()
        try:
            await self.app.configure_task(task, queue=QUEUE, queueing_lock=job_id).defer_async(job_id=job_id)
        except procrastinate.exceptions.AlreadyEnqueued:
            _log.debug('%s %s is already queued', task, job_id)
            return
        _log.info('%s %s queued for a worker', task, job_id)

    async def listen(self, handler: Callable[[Mapping[str, Any]], Coroutine[Any, Any, None]]) -> None:
        """Call ``handler`` with every message a worker sends (on a connection of its own)."""
        import asyncpg

        def received(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                message = json.loads(payload)
            except ValueError:
                _log.error('job queue: unreadable message %r', payload[:200])
                return
            task = asyncio.get_running_loop().create_task(handler(message))
            task.add_done_callback(_log_failure)

        self._listener = await asyncpg.connect(self.dsn)
        await self._listener.add_listener(CHANNEL, received)

    async def send(self, message: Mapping[str, Any]) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute('SELECT pg_notify($1, $2)', CHANNEL, json.dumps(dict(message)))
        finally:
            await conn.close()

    async def retry_stalled(self) -> int:
        """Put tasks of workers that stopped sending heartbeats back in the queue. Returns how many."""
        stalled = await self.app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=self.stalled_after)
        for job in stalled:
            _log.warning('job queue: task %s (%s) of a dead worker is retried', job.id, job.task_kwargs)
            await self.app.job_manager.retry_job(job)
        return len(stalled)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error('job queue: handling a message failed', exc_info=task.exception())


class RelayNotifier:
    """A worker's notifier: progress goes to the bot processes by NOTIFY; the outcome is theirs to deliver."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    async def notify(self, topic: str, payload: Mapping[str, Any] | None = None) -> int:
        return 0

    async def progress(self, topic: str, text: str) -> list[str]:
        await self.queue.send({'progress': topic.removeprefix('job:'), 'text': text[:_MAX_TEXT]})
        return []

    async def post(self, place: Mapping[str, Any], text: str, **_: Any) -> str | None:
        return None  # the owning bot process posts

    def owns(self, place: Mapping[str, Any]) -> bool:
        return False


async def run_worker(config: Any, *, concurrency: int = 4, stalled_check: float = 5.0) -> int:
    """``flowbot worker``: run queued job watchers until SIGINT/SIGTERM.

    :param config: the bot's :class:`~engine.config.Config` (same ``bot.toml``: store, ``[models]``).
    :param stalled_check: seconds between looks for tasks of dead workers.
    """
    import signal

    from engine.app import build_app
    from engine.states.actions import ActionError

    procrastinate = _import_procrastinate()
    app = build_app(config)
    service = app.plugins.services.get('models')
    queue = getattr(getattr(service, 'jobs', None), 'queue', None)
    if service is None or queue is None:
        raise StoreError(
            _('flowbot worker needs the models plugin with [models] workers = true and a PostgreSQL store')
        )
    await app.engine.store.open()
    await queue.open()
    jobs = service.jobs
    jobs.notifier = RelayNotifier(queue)
    tasks = service.tasks
    await tasks.prune()

    async def watch_job(job_id: str) -> None:
        try:
            await jobs.work(job_id)
        except ActionError as exc:  # the record is gone: nothing to watch, nothing to retry
            _log.error('job %s: not watched: %s', job_id, exc)
            return
        await queue.send({'done': job_id})

    async def run_task(job_id: str) -> None:
        if await tasks.execute(job_id):
            await queue.send({'task': job_id})

    # A task that raised (the database was unreachable a moment) runs again later, from the record.
    retry = procrastinate.RetryStrategy(max_attempts=_ATTEMPTS, wait=queue.stalled_after)
    queue.app.task(name=TASK, queue=QUEUE, pass_context=False, retry=retry)(watch_job)
    queue.app.task(name=RUN_TASK, queue=QUEUE, pass_context=False, retry=retry)(run_task)

    async def check_stalled() -> None:
        while True:
            await asyncio.sleep(stalled_check)
            try:
                await queue.retry_stalled()
            except Exception:
                _log.exception('job queue: looking for stalled tasks failed')

    checker = asyncio.ensure_future(check_stalled())
    worker = asyncio.ensure_future(
        queue.app.run_worker_async(
            queues=[QUEUE],
            concurrency=concurrency,
            update_heartbeat_interval=queue.heartbeat,
            stalled_worker_timeout=queue.stalled_after,
            install_signal_handlers=False,
            wait=True,
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.cancel)
    kinds = ', '.join(k for k in tasks.kinds if tasks.remote(k)) or _('none')
    print(
        _('flowbot worker: watching queued jobs and running tasks ({kinds}; concurrency {count})').format(
            kinds=kinds, count=concurrency
        ),
        flush=True,
    )
    try:
        await worker
    except asyncio.CancelledError:
        _log.info('worker stopping on a signal')
    finally:
        checker.cancel()
        await service.stop()
        await queue.close()
        await app.engine.store.close()
    return 0
