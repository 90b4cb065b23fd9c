"""A runaway flow edit is checked in a limited child process: conversations keep being answered."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Callable, Collection, Sequence

from engine.api import ConversationKey
from engine.flows import model
from engine.flows.loader import Diagnostic
from engine.flows.worker import Check, LintWorker, lint_check
from engine.reload import FlowReloader
from engine.states.actions import ActionRegistry

from .helpers import build_harness

HI = """
[flow]
name = "hi"
version = "{version}"
[trigger]
command = "hi"
[states.greet]
kind = "end"
text = "{text}"
"""


def runaway_check(actions: ActionRegistry, permissions: Collection[str], roots: Sequence[pathlib.Path] | None) -> Check:
    """Lint that never returns on a flow containing RUNAWAY: what a pathological edit does to a checker."""
    real = lint_check(actions, permissions, roots)

    def check(flows: Sequence[model.Flow]) -> list[Diagnostic]:
        if any('RUNAWAY' in f.source for f in flows):
            while True:  # burns CPU and grows memory, like a template folded at lint time
                pass
        return real(flows)

    return check


async def test_hi_is_answered_within_a_second_while_a_runaway_edit_is_reloaded(tmp_path: pathlib.Path) -> None:
    h = await build_harness(tmp_path, {'hi': HI.format(version=1, text='Hello v1')})
    folder = tmp_path / 'flows'
    reloader = FlowReloader(h.engine, [folder], worker=LintWorker(timeout=3.0, make_check=runaway_check))
    try:
        assert (await reloader.reload()).changed is False  # starts the lint process
        (folder / 'hi.toml').write_text(HI.format(version=2, text='Hello v2 RUNAWAY'), encoding='utf-8')
        reload = asyncio.create_task(reloader.reload('edit'))
        await asyncio.sleep(0.3)
        assert not reload.done(), 'the runaway check is running'
        for n in range(3):
            other = ConversationKey('test', 'chan', f'other-{n}')
            started = time.monotonic()
            await h.command('hi', key=other)
            assert time.monotonic() - started < 1.0
            assert h.texts(other) == ['Hello v1'], 'the old version keeps serving'
        result = await reload
        assert not result.changed
        assert [d.code for d in result.rejected] == ['lint-limit']
        assert 'took longer than 3 s' in result.rejected[0].message
        await h.command('hi', key=ConversationKey('test', 'chan', 'after'))
        assert h.texts(ConversationKey('test', 'chan', 'after')) == ['Hello v1']
        (folder / 'hi.toml').write_text(HI.format(version=3, text='Hello v3'), encoding='utf-8')
        assert (await reloader.reload('fixed')).updated == ('hi',), 'a new lint process takes the next edit'
        await h.command('hi', key=ConversationKey('test', 'chan', 'fixed'))
        assert h.texts(ConversationKey('test', 'chan', 'fixed')) == ['Hello v3']
    finally:
        await reloader.stop()
        await h.stop()


async def test_a_lint_process_out_of_memory_rejects_the_edit_and_the_next_one_is_checked(
    tmp_path: pathlib.Path,
) -> None:
    h = await build_harness(tmp_path, {'hi': HI.format(version=1, text='Hello v1')})
    folder = tmp_path / 'flows'
    reloader = FlowReloader(h.engine, [folder], worker=LintWorker(memory=200 * 1024 * 1024, make_check=hungry_check))
    try:
        (folder / 'hi.toml').write_text(HI.format(version=2, text='Hello v2 HUNGRY'), encoding='utf-8')
        result = await reloader.reload('edit')
        assert not result.changed and 'MiB of memory' in result.rejected[0].message
        (folder / 'hi.toml').write_text(HI.format(version=3, text='Hello v3'), encoding='utf-8')
        assert (await reloader.reload('fixed')).updated == ('hi',)
    finally:
        await reloader.stop()
        await h.stop()


def hungry_check(actions: ActionRegistry, permissions: Collection[str], roots: Sequence[pathlib.Path] | None) -> Check:
    """Lint that allocates without bound on a flow containing HUNGRY."""
    real = lint_check(actions, permissions, roots)

    def check(flows: Sequence[model.Flow]) -> list[Diagnostic]:
        if any('HUNGRY' in f.source for f in flows):
            hoard = []
            while True:
                hoard.append(bytearray(16 * 1024 * 1024))
        return real(flows)

    return check


async def test_the_watcher_survives_a_reload_that_fails_and_applies_the_next_edit(tmp_path: pathlib.Path) -> None:
    h = await build_harness(tmp_path, {'hi': HI.format(version=1, text='Hello v1')})
    folder = tmp_path / 'flows'
    reloader = FlowReloader(h.engine, [folder], debounce_ms=50)
    real_plan = reloader.worker.plan
    calls = 0

    async def failing_once(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError('the disk went away')
        return await real_plan(*args, **kwargs)  # type: ignore[arg-type]

    reloader.worker.plan = failing_once  # type: ignore[method-assign]
    await reloader.start()
    await asyncio.sleep(0.5)  # the watcher's first look at the folder
    try:
        (folder / 'hi.toml').write_text(HI.format(version=2, text='Hello v2'), encoding='utf-8')
        await _until(lambda: calls >= 1)
        await asyncio.sleep(0.3)
        (folder / 'hi.toml').write_text(HI.format(version=3, text='Hello v3'), encoding='utf-8')
        await _until(lambda: calls >= 2 and reloader.reloads >= 2)
        key = ConversationKey('test', 'chan', 'later')
        await h.command('hi', key=key)
        assert h.texts(key) == ['Hello v3'], 'the watcher kept watching after the failed reload'
    finally:
        await reloader.stop()
        await h.stop()


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out'
        await asyncio.sleep(0.05)
