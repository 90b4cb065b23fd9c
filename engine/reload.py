"""Hot reload of flow files: maintainers edit TOML and the running bot picks it up, safely.

A change is checked exactly like ``flowbot lint`` (load plus ``FlowLibrary.check`` over the whole
new set). Valid new versions serve conversations that start afterwards; conversations already
running keep the compiled version they started on (the store keeps every activated source, so
this also holds across a restart). An invalid file is rejected with its lint messages, which are
logged and posted to ``bot.maintainers_channel``; its previous version keeps serving. A change
that only breaks *other* flows (removing a sub-flow still in use, a clashing command) is rejected
as a whole. Triggers: ``watchfiles`` on the flow folders, SIGHUP, and ``flowbot reload``, which
finds the process through a pid file under the data root.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from engine.api import ConversationKey
from engine.config import Config
from engine.errors import FlowbotError
from engine.files import file_identity
from engine.flows import model
from engine.flows.compile import version_id
from engine.flows.loader import Diagnostic
from engine.flows.worker import LintWorker
from engine.i18n import _, ngettext
from engine.shipped import flow_folders

if TYPE_CHECKING:
    from engine.runtime import Engine

__all__ = ['FlowReloader', 'ReloadResult', 'ReloadSignalError', 'pid_file', 'signal_reload']

_log = logging.getLogger(__name__)

PID_FILE = 'flowbot.pid'
MAX_POSTED_LINES = 25
"""Lint messages posted to the maintainers channel per rejection (the log has all of them)."""


class ReloadSignalError(FlowbotError):
    """``flowbot reload`` cannot reach a running bot; the message says why."""


@attrs.frozen(kw_only=True)
class ReloadResult:
    """What one reload did."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    rejected: tuple[Diagnostic, ...] = ()
    """Lint messages of the edits that were not applied."""

    @property
    def changed(self) -> bool:
        """Some flow was added, updated or removed (a rejected edit alone changes nothing)."""
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        """One line for the log and the maintainers' channel: what changed, how many problems were rejected."""
        parts = [
            what.format(names=', '.join(names))
            for what, names in (
                (_('added {names}'), self.added),
                (_('updated {names}'), self.updated),
                (_('removed {names}'), self.removed),
            )
            if names
        ]
        if self.rejected:
            problems = ngettext('{count} problem', '{count} problems', len(self.rejected)).format(
                count=len(self.rejected)
            )
            files = len({d.file for d in self.rejected})
            parts.append(
                ngettext('rejected {problems} in {count} file', 'rejected {problems} in {count} files', files).format(
                    problems=problems, count=files
                )
            )
        return '; '.join(parts) or _('no change')


def pid_file(config: Config) -> pathlib.Path:
    """Where the running bot writes its pid, so ``flowbot reload`` finds the process to signal.

    :param config: the bot's configuration; the file is in its data root.
    """
    return config.resolve(config.bot.data_root) / PID_FILE


def _start_time(pid: int) -> str | None:
    """The process start time (Linux ``/proc``), so a recycled pid is never signalled by mistake."""
    try:
        stat = pathlib.Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    return stat.rsplit(')', 1)[-1].split()[19]


def signal_reload(config: Config) -> int:
    """Send SIGHUP to the bot whose pid file is under the data root; return its pid."""
    path = pid_file(config)
    try:
        info = json.loads(path.read_text(encoding='utf-8'))
        pid = info['pid']
        # -1 and 0 signal groups, 1 is init; a pid is a C int (kill() raised OverflowError beyond it)
        if not isinstance(pid, int) or isinstance(pid, bool) or not 1 < pid < 1 << 31:
            raise ValueError(f'pid {pid!r}')
    except FileNotFoundError:
        raise ReloadSignalError(
            _('no running flowbot found: {path} does not exist (is it running, with bot.reload = true?)').format(
                path=path
            )
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReloadSignalError(_('{path} is not a flowbot pid file: {error}').format(path=path, error=exc)) from exc
    started = info.get('started')
    if started is not None and _start_time(pid) not in (None, started):
        raise ReloadSignalError(
            _('{path} is stale: process {pid} is not the flowbot that wrote it').format(path=path, pid=pid)
        )
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ReloadSignalError(
            _('{path} is stale: no process {pid} (flowbot is not running)').format(path=path, pid=pid)
        ) from None
    except PermissionError:
        raise ReloadSignalError(
            _('not allowed to signal process {pid} (run as the bot user)').format(pid=pid)
        ) from None
    return pid


class FlowReloader:
    """Keeps the engine's active flows in step with the flow folders."""

    def __init__(
        self,
        engine: Engine,
        paths: Sequence[pathlib.Path],
        *,
        maintainers_channel: str | None = None,
        pid_path: pathlib.Path | None = None,
        debounce_ms: int = 400,
        force_polling: bool | None = None,
        worker: LintWorker | None = None,
    ) -> None:
        """
        :param paths: flow folders (or files), as configured in ``bot.flows``.
        :param maintainers_channel: ``adapter:channel`` that receives rejected edits.
        :param pid_path: where to write the pid file ``flowbot reload`` reads; ``None``: none.
        :param debounce_ms: longest time a burst of file events (an editor's save) is grouped into one reload.
        :param force_polling: poll instead of inotify (network filesystems; tests).
        :param worker: the process that loads and lints edits (time and memory limited).
        """
        self.worker = worker or LintWorker()
        self.engine = engine
        self.paths = list(paths)
        self.maintainers_channel = maintainers_channel
        self.pid_path = pid_path
        self.debounce_ms = debounce_ms
        self.force_polling = force_polling
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.handles_sighup = False
        """Whether SIGHUP is routed to :meth:`reload` (only on the main thread's loop, not on Windows)."""
        self._last_rejection: tuple[Diagnostic, ...] = ()
        self.reloads = 0
        """Completed reloads (tests wait on it)."""

    @classmethod
    def from_config(cls, engine: Engine, config: Config) -> FlowReloader:
        """A reloader of the folders the bot serves, reporting to ``[bot] maintainers_channel``.

        :param engine: the engine whose flow library it updates.
        :param config: the bot's configuration.
        """
        return cls(
            engine,
            flow_folders(config),
            maintainers_channel=config.bot.maintainers_channel,
            pid_path=pid_file(config),
        )

    # -- the reload itself ----------------------------------------------------------------------

    async def reload(self, reason: str = 'requested') -> ReloadResult:
        """Load, check and activate the flow folders' current content; never raises for bad flows."""
        async with self._lock:
            try:
                result = await self._reload()
            finally:
                self.reloads += 1
        if result.changed:
            _log.info('flows reloaded (%s): %s', reason, result.summary())
        if result.rejected:
            await self._report(result)
        else:
            self._last_rejection = ()
        return result

    async def _reload(self) -> ReloadResult:
        library = self.engine.library
        current = {c.flow.path: c.flow for c in library.active()}
        plan = await self.worker.plan(self.paths, current, library.actions, library.permissions, library.file_roots)
        if isinstance(plan, str):  # the check itself failed: nothing changes
            return ReloadResult(rejected=(Diagnostic(', '.join(map(str, self.paths)), None, plan, 'lint-limit'),))
        if plan.flows is None:
            return ReloadResult(rejected=plan.rejected)
        return await self._activate(current, list(plan.flows), list(plan.rejected))

    async def _activate(
        self, current: dict[str, model.Flow], flows: list[model.Flow], rejected: list[Diagnostic]
    ) -> ReloadResult:
        before = {f.name: version_id(f) for f in current.values()}
        after = {f.name: version_id(f) for f in flows}
        result = ReloadResult(
            added=tuple(sorted(after.keys() - before.keys())),
            updated=tuple(sorted(n for n in after.keys() & before.keys() if after[n] != before[n])),
            removed=tuple(sorted(before.keys() - after.keys())),
            rejected=tuple(rejected),
        )
        if not result.changed:
            return result
        library = self.engine.library
        for flow in flows:
            if before.get(flow.name) != after[flow.name]:
                await self.engine.store.put_flow_version(flow.name, after[flow.name], flow.source)
        library.activate(flows)
        for callback in list(self.engine.on_flows_changed):
            try:
                await callback()
            except Exception:
                _log.exception('a flows-changed callback (%r) failed after reloading flows', callback)
        return result

    async def _report(self, result: ReloadResult) -> None:
        lines = [str(d) for d in result.rejected]
        _log.error(
            'rejected flow edit(s); the previous versions keep serving:\n%s',
            '\n'.join(f'  {line}' for line in lines),
        )
        if result.rejected == self._last_rejection:
            return
        self._last_rejection = result.rejected
        if not self.maintainers_channel:
            return
        adapter_name, _sep, channel = self.maintainers_channel.partition(':')
        adapter = self.engine.adapters.get(adapter_name)
        if adapter is None or not channel:
            _log.error('bot.maintainers_channel %r names no connected adapter:channel', self.maintainers_channel)
            return
        shown = lines[:MAX_POSTED_LINES]
        hidden = len(lines) - len(shown)
        more = '\n' + _('… and {count} more (see the log)').format(count=hidden) if hidden > 0 else ''
        text = _('Flow edit rejected; the previous version keeps serving.') + '\n' + '\n'.join(shown) + more
        if result.changed:
            text += '\n' + _('Applied: {summary}').format(summary=result.summary())
        try:
            await adapter.send_text(ConversationKey(adapter_name, channel, 'maintainers'), text)
        except Exception:
            _log.exception('posting the rejected flow edit to %s failed', self.maintainers_channel)

    # -- triggers -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Watch the folders, take SIGHUP, and write the pid file ``flowbot reload`` uses."""
        self._stop.clear()
        self._watcher = asyncio.create_task(self._watch(), name='flowbot-flow-watcher')
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            self.handles_sighup = True
        except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
            _log.warning('SIGHUP reload is not available here (%s); file watching still works', exc)
        if self.pid_path is not None:
            try:
                self.pid_path.parent.mkdir(parents=True, exist_ok=True)
                info = {'pid': os.getpid(), 'started': _start_time(os.getpid())}
                self.pid_path.write_text(json.dumps(info), encoding='utf-8')
            except OSError as exc:
                _log.error('cannot write the pid file %s (flowbot reload will not find us): %s', self.pid_path, exc)

    async def stop(self) -> None:
        """Stop watching and give SIGHUP back, so a stopped app leaves no watcher or handler behind."""
        self._stop.set()
        if self.handles_sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self.handles_sighup = False
        if self._watcher is not None:
            try:
                await asyncio.wait_for(self._watcher, timeout=5.0)
            except (TimeoutError, asyncio.CancelledError):
                self._watcher.cancel()
            self._watcher = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.worker.close)
        if self.pid_path is not None:
            try:
                if json.loads(self.pid_path.read_text(encoding='utf-8')).get('pid') == os.getpid():
                    self.pid_path.unlink()
            except (OSError, ValueError, AttributeError):
                pass  # someone else's or already gone: nothing of ours to clean up

    def _on_sighup(self) -> None:
        _log.info('SIGHUP: reloading flows')
        self._spawn(self.reload('SIGHUP'))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                _log.error('flow reload failed', exc_info=t.exception())

        task.add_done_callback(done)

    def _wanted(self, _: Any, path: str) -> bool:
        """Flow files directly in a watched folder (not ``tests/``), or a watched file."""
        file = pathlib.Path(path)
        return file.suffix == '.toml' and bool({file, file.parent} & set(self.paths))

    async def _watch(self) -> None:
        """Reload on every change in the watched folders and files, until :meth:`stop`.

        inotify follows a path's inode, not its name: a watched file saved the way editors save (a new
        file renamed over it), or a folder deleted, moved away or copied anew, would go unwatched from
        then on. So the watch is started again, with a reload, whenever a watched path stops being
        the file or folder it was (or a missing one appears).
        """
        from watchfiles import awatch

        warned: set[pathlib.Path] = set()
        while not self._stop.is_set():
            seen = {p: file_identity(p) for p in self.paths}
            existing = [p for p, identity in seen.items() if identity is not None]
            for missing in set(self.paths) - set(existing) - warned:
                _log.warning('flow folder %s does not exist; it is watched once it does', missing)
                warned.add(missing)
            halt = asyncio.Event()
            checker = asyncio.create_task(self._until_replaced(seen, halt))
            try:
                if existing:
                    async for changes in awatch(
                        *existing,
                        watch_filter=self._wanted,
                        debounce=self.debounce_ms,
                        stop_event=halt,
                        force_polling=self.force_polling,
                        poll_delay_ms=100,
                    ):
                        names = ', '.join(sorted({pathlib.Path(p).name for _, p in changes}))
                        try:
                            await self.reload(f'changed: {names}')
                        except Exception:  # the watcher outlives any one reload
                            _log.exception('reloading flows after a change to %s failed; still watching', names)
                await halt.wait()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception('watching %s failed; watching again in 1 s', existing)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)
                continue
            finally:
                checker.cancel()
            if not self._stop.is_set():
                _log.info('a watched flow path was replaced; watching it anew')
                try:
                    await self.reload('flow path replaced')
                except Exception:
                    _log.exception('reloading flows after a flow path was replaced failed; still watching')

    async def _until_replaced(self, seen: dict[pathlib.Path, tuple[int, int] | None], halt: asyncio.Event) -> None:
        """Set ``halt`` on :meth:`stop`, or once a path of ``seen`` is no longer the file or folder it was."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)
            if self._stop.is_set() or any(file_identity(p) != identity for p, identity in seen.items()):
                halt.set()
                return
