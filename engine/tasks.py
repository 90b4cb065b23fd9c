"""Work that may leave the bot process: one mechanism for every kind of long task.

A plugin registers a *kind* once (:meth:`Tasks.register`): an async function of JSON arguments, the
input files and an output folder that returns a JSON dict. Its action runs it with :meth:`Tasks.run`.
Without a queue (the default, and always with SQLite) the function runs right there, in the bot process.
With a queue (``[models] workers = true`` on PostgreSQL, see :mod:`integrations.models.workers`) the bot
process records the task (a store record of kind ``task``), copies its input files to
``<data_root>/tasks/<id>/in/`` and queues it; a ``flowbot worker`` runs the function, writes the result
into the same record and announces it (``{"task": id}`` on the queue's channel); the action waiting in
the bot process wakes and returns it.

At-least-once becomes exactly-once in effect through the record:

* the task's id is derived from the action call's id, which a conversation keeps when it is restored
  after its process died; so the call, run again by whichever process now owns the conversation, finds
  the same record and waits for (or returns) its result instead of queueing new work;
* a worker that finds the record finished does nothing; one killed mid-task leaves it unfinished, and
  another runs it again from the start (a kind's function has no side effects outside its output folder
  except ones keyed by the task's id, which a second run overwrites with the same value);
* what the bot process does with a result (``apply``: save a dataset) is recorded as done in the record,
  so a call run again returns the recorded outcome instead of applying it twice. A crash in the
  milliseconds between the two applies it once more (at-least-once in that window, as job reports).

A task no worker takes is not waited for silently: after :attr:`Tasks.unclaimed` seconds the waiting
conversation's progress message says so (and how to stop waiting: ``cancel``); after :attr:`Tasks.timeout`
seconds (``[models] task_timeout``) from its creation the record is written ``abandoned`` with a message
for the user, the call fails (the flow goes on its ``on_error`` edge), and a worker that takes it later
does not run it. The deadline is in the record, so a worker also skips a task whose caller is gone (the
user typed ``cancel``) once it has passed. Only taking a task is bounded: one a worker runs goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import pathlib
import re
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

import attrs

from engine import i18n
from engine.api import Attachment
from engine.conversation import attachment, jsonable
from engine.errors import UserError, user_message
from engine.messages import interrupt_words
from engine.plugins import SetupContext
from engine.states.actions import ActionError
from engine.store import Store

__all__ = ['DONE', 'RECORD', 'Report', 'TaskFn', 'TaskQueue', 'Tasks', 'tasks_of']

_log = logging.getLogger(__name__)

RECORD = 'task'
"""The store record kind of queued tasks."""
RUN_TASK = 'flowbot.run_task'
"""The queue's task name that runs a recorded task in a worker."""
DONE = ('finished', 'abandoned')
"""The statuses of a task record that nothing changes any more."""
_ID = re.compile('[0-9a-f]{16}')

Report = Callable[[str], Awaitable[None]]
"""Shows the waiting conversation a line (:meth:`~engine.states.actions.ActionContext.report`)."""
TaskFn = Callable[[Mapping[str, Any], Sequence[Attachment], pathlib.Path | None], Awaitable[dict[str, Any]]]
"""``async def kind(args, inputs, out) -> dict``: ``out`` is where files it makes go (``None``: its own
choice, in the bot process only); raise :class:`~engine.errors.UserError` for a failure the user may read."""


class TaskQueue(Protocol):
    """What :class:`Tasks` needs of a queue (:class:`integrations.models.workers.JobQueue`)."""

    async def defer(self, job_id: str, *, task: str = ...) -> None:
        """Queue ``task`` for ``job_id`` (once while an earlier one still waits)."""


class Tasks:
    """The kinds plugins registered, run here or queued for a worker.

    :param root: the data root; task folders go to ``<root>/tasks/<id>/`` (bot processes and workers
        share it, as they share the files of training jobs).
    """

    def __init__(
        self,
        store: Store,
        root: pathlib.Path,
        *,
        recheck: float = 5.0,
        keep: float = 86400.0,
        unclaimed: float = 60.0,
        timeout: float = 600.0,
    ) -> None:
        self.store = store
        self.folder = root / 'tasks'
        self.recheck = recheck
        """Seconds between looks at a waited-for record (a missed announcement still wakes the call)."""
        self.keep = keep
        """Seconds a finished task's folder is kept (a call run again after a restart may need its files)."""
        self.unclaimed = unclaimed
        """Seconds a task may wait for a worker before the user is told that none has taken it (and the log)."""
        self.timeout = timeout
        """Seconds from its creation a task may wait for a worker to take it; then it is abandoned."""
        self.queue: TaskQueue | None = None
        self.offloaded: Collection[str] = ()
        """The kinds sent to workers when there is a queue."""
        self._kinds: dict[str, TaskFn] = {}
        self._returns: dict[str, tuple[Collection[str], Collection[str]]] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._pruned_at = time.monotonic()  # the bot and the worker prune at start

    def register(self, kind: str, fn: TaskFn, *, returns: Collection[str] = (), files: Collection[str] = ()) -> None:
        """Add a task kind.

        :param returns: the keys its result must have (a worker's answer lacking one is refused, not indexed).
        :param files: the keys of ``returns`` that are paths of files it made: a worker's must lie in the
            task's folder, so a damaged record cannot make the bot process read or send any other file.
        """
        if kind in self._kinds:
            raise ValueError(f'task kind {kind!r} is registered twice')
        self._kinds[kind] = fn
        self._returns[kind] = (tuple(returns), tuple(files))

    @property
    def kinds(self) -> list[str]:
        """The registered kinds, sorted (a worker says which it runs)."""
        return sorted(self._kinds)

    def remote(self, kind: str) -> bool:
        """Whether ``kind`` runs in a worker."""
        return self.queue is not None and kind in self.offloaded

    async def run(
        self,
        kind: str,
        args: Mapping[str, Any],
        *,
        call: str = '',
        inputs: Sequence[Attachment] = (),
        out: pathlib.Path | None = None,
        apply: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
        report: Report | None = None,
    ) -> dict[str, Any]:
        """Run ``kind`` here or in a worker and return its result (after ``apply``, when given).

        :param call: the action call's id: a call run again after a restart finds its task.
        :param inputs: downloaded files the task reads (copied for a worker).
        :param out: where files go when it runs here.
        :param apply: what the bot process does with the result, once (its return value is recorded).
        :param report: shows the waiting conversation a line (its progress message): that no worker has
            taken the task yet.
        """
        fn = self._kinds[kind]
        if not self.remote(kind):
            result = await fn(args, inputs, out)
            return await apply(result) if apply is not None else result
        task_id = hashlib.sha256(f'{kind}\0{call}'.encode()).hexdigest()[:16] if call else uuid.uuid4().hex[:16]
        record = await self.store.get_record(RECORD, task_id)
        if record is None:
            record = await self._submit(task_id, kind, args, inputs)
        if record.get('status') not in DONE:
            assert self.queue is not None
            waiting = self._waiter(task_id)
            try:
                if record.get('status') == 'queued':  # once running, a worker has it (or takes it over)
                    await self.queue.defer(task_id, task=RUN_TASK)
                record = await self._wait(task_id, waiting, report)
            finally:
                self._waiters[task_id].discard(waiting)
                if not self._waiters[task_id]:
                    del self._waiters[task_id]
        if record.get('error') is not None:
            raise ActionError(str(record['error']))
        result = self._result(task_id, kind, record)
        if apply is None:
            return result
        if 'applied' in record:  # a call run again after its process died: applied already
            if not isinstance(record['applied'], dict):
                _log.error('task %s (%s): its record is damaged: applied is %r', task_id, kind, record['applied'])
                raise ActionError(_damaged())
            return dict(record['applied'])
        record['applied'] = await apply(result)
        await self.store.put_record(RECORD, task_id, record)
        return dict(record['applied'])

    async def _submit(
        self, task_id: str, kind: str, args: Mapping[str, Any], inputs: Sequence[Attachment]
    ) -> dict[str, Any]:
        """Copy the inputs where workers read them, then record the task (the record means they are there)."""
        if time.monotonic() - self._pruned_at > 3600:
            self._pruned_at = time.monotonic()
            await self.prune()
        folder = self.folder / task_id
        copied: list[dict[str, Any]] = []
        for i, given in enumerate(inputs):
            if given.path is None:
                raise ActionError(i18n._('{name} was not downloaded; send it again').format(name=given.name))
            target = folder / 'in' / str(i)
            try:
                await asyncio.to_thread(_copy, given.path, target)
            except OSError as exc:  # the download is gone (its work folder was cleaned) or the disk is full
                _log.error('task %s (%s): cannot copy %s for the workers: %s', task_id, kind, given.path, exc)
                raise ActionError(i18n._('{name} was not downloaded; send it again').format(name=given.name)) from exc
            copied.append(jsonable(attrs.evolve(given, path=target)))
        record = {
            'id': task_id,
            'kind': kind,
            'args': jsonable(dict(args)),
            'inputs': copied,
            'locale': i18n.current(),
            'status': 'queued',
            'attempts': 0,
            'created': time.time(),
            'deadline': time.time() + self.timeout,
            'finished': None,
            'result': None,
            'error': None,
        }
        await self.store.put_record(RECORD, task_id, record)
        _log.info('task %s (%s) queued for a worker', task_id, kind)
        return record

    def _waiter(self, task_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        return event

    async def _wait(self, task_id: str, event: asyncio.Event, report: Report | None) -> dict[str, Any]:
        """Wait until the task is done; tell the user when no worker takes it, abandon it at its deadline."""
        warned = taken = False
        while True:
            record = await self.store.get_record(RECORD, task_id)
            if record is None:
                raise ActionError(i18n._('the queued work was lost; please try again'))
            status = record.get('status')
            if status in DONE:
                return record
            if status not in ('queued', 'running'):  # nothing would ever change it: do not wait forever
                _log.error('task %s (%s): its record is damaged: status %.100r', task_id, record.get('kind'), status)
                raise ActionError(_damaged())
            created, deadline = self._times(record)
            if status == 'queued' and time.time() >= deadline:
                return await self._abandon(task_id, record)
            if status == 'queued' and not warned and time.time() - created >= self.unclaimed:
                warned = True
                _log.warning(
                    'task %s (%s) is still queued after %.0f s: is a flowbot worker running?',
                    task_id,
                    record.get('kind'),
                    time.time() - created,
                )
                await _show(report, _unclaimed_text(time.time() - created, deadline - created))
            elif status == 'running' and warned and not taken:  # the waiting line would stay otherwise
                taken = True
                await _show(report, i18n._('A worker has taken this task; working on it…'))
            pause = min(self.recheck, max(0.0, deadline - time.time())) if status == 'queued' else self.recheck
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), pause)
            event.clear()

    def _times(self, record: Mapping[str, Any]) -> tuple[float, float]:
        """When the task was created and when it is abandoned if no worker has taken it (records written
        before deadlines, or damaged ones, count from now)."""
        created = _number(record.get('created'), time.time())
        return created, _number(record.get('deadline'), created + self.timeout)

    async def _abandon(self, task_id: str, record: dict[str, Any]) -> dict[str, Any]:
        """Write the task ``abandoned``: no worker took it in time. A worker taking it later skips it."""
        created, deadline = self._times(record)
        error = i18n._('no worker took this task in {seconds} s, so it was dropped; please try again later').format(
            seconds=round(deadline - created)
        )
        record.update(status='abandoned', error=error, finished=time.time())
        await self.store.put_record(RECORD, task_id, record)
        _log.error(
            'task %s (%s): no worker took it in %.0f s; abandoned (start a flowbot worker)',
            task_id,
            record.get('kind'),
            deadline - created,
        )
        return record

    def _result(self, task_id: str, kind: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """The result of a finished task, checked: a dict with the keys its kind returns, and its files
        in the task's folder when a worker made them."""
        result = record.get('result')
        returns, files = self._returns.get(kind, ((), ()))
        missing = [key for key in returns if not isinstance(result, dict) or key not in result]
        if not isinstance(result, dict) or missing:
            _log.error(
                'task %s (%s): the worker answered %s without %s (a worker of another flowbot version?)',
                task_id,
                kind,
                type(result).__name__,
                missing,
            )
            raise ActionError(_damaged())
        if self.remote(kind):
            for key in files:
                if not _within(pathlib.Path(str(result[key])), self.folder / task_id):
                    _log.error(
                        'task %s (%s): its %s %r is outside its folder; refused', task_id, kind, key, result[key]
                    )
                    raise ActionError(_damaged())
        return dict(result)

    def on_message(self, message: Mapping[str, Any]) -> None:
        """A worker announced a finished task: wake the calls waiting for it in this process."""
        for event in self._waiters.get(str(message.get('task', '')), ()):
            event.set()

    async def execute(self, task_id: str) -> bool:
        """A worker's side: run a recorded task unless it is finished. Returns whether it is finished now.

        The record is the commit point: it is written finished with the result (or the error a user may
        read) in one write, so a run killed before that leaves it to the next run.
        """
        if not _ID.fullmatch(task_id):
            _log.error('task %r: not a task id; nothing to run', task_id[:100])
            return False
        record = await self.store.get_record(RECORD, task_id)
        if record is None:
            _log.error('task %s: no record; nothing to run', task_id)
            return False
        status = record.get('status')
        if status in DONE:
            if status == 'abandoned':
                _log.warning(
                    'task %s (%s) was abandoned (no worker took it in time): not run', task_id, record.get('kind')
                )
            return True
        with i18n.use(str(record.get('locale') or 'en')):
            if status == 'queued' and time.time() >= self._times(record)[1]:
                await self._abandon(task_id, record)  # its caller gave up (or was told it is dropped)
                return True
        kind = str(record.get('kind'))
        attempts = record.get('attempts')
        record['status'], record['attempts'] = 'running', (attempts if isinstance(attempts, int) else 0) + 1
        await self.store.put_record(RECORD, task_id, record)
        folder = self.folder / task_id
        out = folder / 'out'
        result: dict[str, Any] | None = None
        error: str | None = None
        with i18n.use(str(record.get('locale') or 'en')):
            fn = self._kinds.get(kind)
            args, inputs = record.get('args', {}), record.get('inputs', [])
            if fn is None:
                _log.error('task %s: this worker has no task kind %r (its plugin is not in bot.plugins)', task_id, kind)
                error = i18n._('this work cannot be done now: no worker knows how ({kind})').format(kind=kind)
            elif not (
                isinstance(args, dict)
                and isinstance(inputs, list)
                and all(isinstance(a, dict) and isinstance(a.get('path'), str) for a in inputs)
                and all(_within(pathlib.Path(a['path']), folder / 'in') for a in inputs)
            ):
                _log.error(
                    'task %s (%s): its record is damaged (args %.200r, inputs %.200r)', task_id, kind, args, inputs
                )
                error = _damaged()
            else:
                await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
                try:
                    result = jsonable(await fn(args, [attachment(a) for a in inputs], out))
                except UserError as exc:
                    error = user_message(exc)
                except Exception as exc:  # a bug: the user gets the internal-error text, the log the traceback
                    _log.exception('task %s (%s) failed', task_id, kind)
                    error = user_message(exc)
        record.update(status='finished', result=result, error=error, finished=time.time())
        await self.store.put_record(RECORD, task_id, record)
        _log.info('task %s (%s) finished%s', task_id, kind, f' with an error: {error}' if error else '')
        return True

    async def prune(self) -> int:
        """Delete the folders of tasks older than :attr:`keep`. Returns how many."""
        return await asyncio.to_thread(_prune, self.folder, time.time() - self.keep)


def tasks_of(ctx: SetupContext) -> Tasks:
    """The app's one :class:`Tasks`, shared as ``ctx.services['tasks']`` (made by whichever plugin asks first)."""
    tasks = ctx.services.get('tasks')
    if not isinstance(tasks, Tasks):
        tasks = Tasks(ctx.store, ctx.config.resolve(ctx.config.bot.data_root).resolve())
        ctx.services['tasks'] = tasks
    return tasks


def _damaged() -> str:
    return i18n._('the queued work was damaged; please try again')


def _unclaimed_text(waited: float, limit: float) -> str:
    return i18n._(
        'Waiting for a worker to take this task (none has for {seconds} s). It is dropped if none does within'
        ' {limit} s; type {cancel} to stop waiting now.'
    ).format(seconds=round(waited), limit=round(limit), cancel=interrupt_words(i18n.current())['cancel'])


async def _show(report: Report | None, text: str) -> None:
    """Show ``text`` to the waiting user; a failing adapter is logged, the wait goes on."""
    if report is None:
        return
    try:
        await report(text)
    except Exception:
        _log.exception("cannot show a task's waiting notice")


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _within(path: pathlib.Path, folder: pathlib.Path) -> bool:
    """Whether ``path`` (symlinks resolved) lies in ``folder``."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL in the path
        return False


def _copy(source: pathlib.Path, target: pathlib.Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _prune(folder: pathlib.Path, before: float) -> int:
    count = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        try:
            if path.is_dir() and not path.is_symlink() and path.stat().st_mtime < before:
                shutil.rmtree(path)
                count += 1
        except OSError as exc:
            _log.warning('cannot delete the old task folder %s: %s', path, exc)
    return count
