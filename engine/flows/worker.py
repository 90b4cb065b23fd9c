"""Maintainer work off the event loop: flow files are loaded and linted in a child process with a
time and memory limit, so a runaway edit cannot stall conversations.

The child reads the files, parses and checks them exactly like ``flowbot lint`` and sends back the
flows to activate and the problems to report; the main process only compiles the validated
result (cheap and linear). A child that runs past its time is killed and replaced; one that hits
its memory limit answers with a plain rejection. The child is started once and reused.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pathlib
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

import attrs

from engine import i18n
from engine.flows import model
from engine.flows.compile import version_id
from engine.flows.loader import Diagnostic, flow_files, load_paths
from engine.flows.validate import validate
from engine.states.actions import ActionRegistry

__all__ = ['LintWorker', 'ReloadPlan', 'lint_check', 'plan_reload']

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds a reload's load and lint may take (the shipped flows take about 20 ms)."""
DEFAULT_MEMORY = 1024 * 1024 * 1024
"""Address space of the lint process, in bytes."""

Check = Callable[[Sequence[model.Flow]], list[Diagnostic]]


@attrs.frozen
class ReloadPlan:
    """What a reload would do: the flows to activate (``None``: keep everything as it is) and the rejections."""

    flows: tuple[model.Flow, ...] | None
    rejected: tuple[Diagnostic, ...]


def plan_reload(paths: Sequence[pathlib.Path], current: Mapping[str, model.Flow], check: Check) -> ReloadPlan:
    """Load the flow folders' content and decide what to activate.

    A broken file keeps its old version; a changed file that fails lint keeps its old version; a set
    that only fails as a whole (a removed sub-flow still in use) is rejected as a whole.

    :param current: the active flows by file path.
    :param check: lint of a whole set (``FlowLibrary.check``'s rules).
    """
    loaded, load_problems = load_paths(paths)
    new_by_path = {f.path: f for f in loaded}
    failed = {d.file for d in load_problems}
    candidate: dict[str, model.Flow] = {}
    for path in (str(f) for f in flow_files(paths)):
        if path in new_by_path:
            candidate[path] = new_by_path[path]
        elif path in failed and path in current:
            candidate[path] = current[path]  # the broken edit is rejected; the old version serves
    problems = check(list(candidate.values()))
    rejected = list(load_problems)
    if problems:
        changed_bad = {
            d.file
            for d in problems
            if d.file in candidate
            and version_id(candidate[d.file]) != (version_id(current[d.file]) if d.file in current else None)
        }
        for path in changed_bad:
            if path in current:
                candidate[path] = current[path]
            else:
                del candidate[path]
        rejected += [d for d in problems if d.file in changed_bad]
        if not changed_bad or check(list(candidate.values())):
            return ReloadPlan(None, tuple(load_problems) + tuple(problems))
    return ReloadPlan(tuple(candidate.values()), tuple(rejected))


@attrs.frozen
class _Request:
    paths: tuple[pathlib.Path, ...]
    current: dict[str, model.Flow]
    actions: dict[str, tuple[frozenset[str] | None, frozenset[str]]]
    permissions: tuple[str, ...]
    file_roots: tuple[pathlib.Path, ...] | None
    language: str = 'en'
    """The language of the lint messages (the child is a fresh process: it inherits no language)."""


def _limit_memory(limit: int) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError) as exc:  # not on this platform: the time limit still holds
        _log.warning('cannot limit the lint process memory: %s', exc)


def lint_check(
    actions: ActionRegistry, permissions: Collection[str], file_roots: Sequence[pathlib.Path] | None
) -> Check:
    """The check the child runs: ``flowbot lint``'s rules (``FlowLibrary.check``)."""

    def check(flows: Sequence[model.Flow]) -> list[Diagnostic]:
        return validate(flows, actions=actions, permissions=permissions, file_roots=file_roots)

    return check


CheckFactory = Callable[[ActionRegistry, Collection[str], Sequence[pathlib.Path] | None], Check]


def _serve(conn: Connection, memory: int, make_check: CheckFactory) -> None:
    """The child: answer lint requests until the pipe closes."""
    _limit_memory(memory)
    while True:
        try:
            request: _Request = conn.recv()
        except (EOFError, OSError):
            return
        with i18n.use(request.language):
            answer = _answer(request, memory, make_check)
        try:
            conn.send(answer)
        except (MemoryError, OSError, ValueError) as exc:
            conn.send(
                (
                    'error',
                    i18n._('the lint result could not be sent back: {error}').format(error=exc.__class__.__name__),
                )
            )


def _answer(request: _Request, memory: int, make_check: CheckFactory) -> tuple[str, Any]:
    """The child's answer to one request: the plan, or why checking failed (in the request's language)."""
    try:
        actions = ActionRegistry.from_signatures(request.actions)
        check = make_check(actions, request.permissions, request.file_roots)
        return 'ok', plan_reload(request.paths, request.current, check)
    except MemoryError:
        mib = memory // (1024 * 1024)
        return 'error', i18n._('checking the flows needed more than {size} MiB of memory').format(size=mib)
    except RecursionError:
        return 'error', i18n._('a flow file is nested too deeply to check')
    except Exception as exc:  # reported to the maintainer; the child keeps serving
        error = f'{exc.__class__.__name__}: {exc}'
        return 'error', i18n._('checking the flows failed: {error}').format(error=error)[:500]


class LintWorker:
    """One lint child process, started on first use, killed and replaced when it runs too long."""

    def __init__(
        self, *, timeout: float = DEFAULT_TIMEOUT, memory: int = DEFAULT_MEMORY, make_check: CheckFactory = lint_check
    ) -> None:
        """
        :param timeout: seconds one reload's load and lint may take.
        :param memory: the child's address-space limit in bytes.
        :param make_check: a module-level function building the check (tests give one that runs away).
        """
        self.timeout = timeout
        self.memory = memory
        self.make_check = make_check
        self._process: Any = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def _start(self) -> Connection:
        context = multiprocessing.get_context('spawn')  # no fork of a process running threads and a loop
        parent, child = context.Pipe()
        process = context.Process(
            target=_serve, args=(child, self.memory, self.make_check), name='flowbot-lint', daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        return parent

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def _call(self, request: _Request) -> tuple[str, Any]:
        with self._lock:
            conn = self._conn if self._process is not None and self._process.is_alive() else None
            if conn is None:
                self._kill()
                conn = self._start()
            try:
                conn.send(request)
                if not conn.poll(self.timeout):
                    _log.error('flow lint ran longer than %.0f s; its process is killed', self.timeout)
                    self._kill()
                    return 'error', i18n._('checking the flows took longer than {seconds} s and was stopped').format(
                        seconds=f'{self.timeout:g}'
                    )
                answer: tuple[str, Any] = conn.recv()
                return answer
            except (EOFError, OSError) as exc:
                _log.error('the flow lint process died: %r', exc)
                self._kill()
                return 'error', i18n._('checking the flows stopped the lint process (out of memory?)')

    async def plan(
        self,
        paths: Sequence[pathlib.Path],
        current: Mapping[str, model.Flow],
        actions: ActionRegistry,
        permissions: Collection[str],
        file_roots: Sequence[pathlib.Path] | None,
    ) -> ReloadPlan | str:
        """The reload plan, or the reason checking failed (time, memory, a crash), as text."""
        request = _Request(
            tuple(paths),
            dict(current),
            actions.signatures(),
            tuple(permissions),
            tuple(file_roots) if file_roots is not None else None,
            i18n.current(),
        )
        status, value = await asyncio.to_thread(self._call, request)
        return value if status == 'ok' else str(value)

    def close(self) -> None:
        """End the child process (killed after a second if it does not stop), so no lint process outlives the bot."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            if self._process is not None:
                self._process.join(1)
                if self._process.is_alive():
                    self._process.kill()
                    self._process.join(1)
            self._process = self._conn = None
