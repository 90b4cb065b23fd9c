"""Engine throughput and memory: 10,000 concurrent conversations through a 5-step form, beside its peers.

Run: ``make bench``, or ``.venv/bin/python -m benchmarks.engine [--conversations 10000] [--rounds 5]``
(the peers come from the ``bench`` extra, which ``make bench`` installs). ``--clock cpu`` times this
process's CPU time (steadier on a shared machine); ``--profile PREFIX`` also profiles each row's timed
part and prints where its time went.

Every run does the same steps on the same form, each in a fresh process of its own (so no row inherits
another's heap, collector state or warmed caches) after an untimed warm-up of 1,000 conversations of the
same row, one after the other, ``--rounds`` times over; each row is its best round (the ``rounds`` column
shows its slowest and best: on a shared VM one row's rounds can differ by 2x, so the best of several estimates
the undisturbed speed of every row alike):

- ``flowbot, in memory``: the full runtime (dispatch → validate answer → transition → prompt → persist)
  with :class:`~engine.store.MemoryStore`;
- ``flowbot, SQLite``: the same with :class:`~engine.store.SQLiteStore` (WAL, group commit) in a temp
  folder: every step is durable before it is acknowledged;
- the peers of :mod:`benchmarks.peers`, none persisting anything: python-telegram-bot's
  ``ConversationHandler`` (the reference every ratio is to), aiogram 3's FSM, python-statemachine
  and one plain ``transitions`` AsyncMachine per conversation.

A step is one user answer moving a conversation one state on. Memory per live conversation is
measured with ``tracemalloc`` over 10,000 conversations waiting at their first question.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import cProfile
import gc
import logging
import multiprocessing
import pathlib
import tempfile
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

from transitions.extensions.asyncio import AsyncMachine

from benchmarks import peers, profiling
from engine.api import Command, ConversationKey, Message, User
from engine.app import build_app
from engine.config import Config
from engine.doubles import NullAdapter
from engine.flows.loader import load_text
from engine.runtime import Engine
from engine.store import MemoryStore, SQLiteStore, Store

__all__ = ['main']

STEPS = peers.STEPS
FORM = '\n'.join(
    ['[flow]\nname = "form"\n\n[trigger]\ncommand = "form"\n']
    + [f'[states.q{i}]\nkind = "ask"\nprompt = "Question {i}?"\nsave_as = "a{i}"\n' for i in range(STEPS)]
    + ['[states.done]\nkind = "end"\ntext = "Thanks"\n']
)


def _engine(store: Store) -> Engine:
    engine = build_app(Config(), store=store, plugins=[], load_flows=False).engine
    engine.library.activate([load_text(FORM, 'form.toml')])
    engine.add_adapter(NullAdapter('bench'))
    return engine


def _events(n: int, guild: Callable[[int], str | None] | None = None) -> tuple[list[Command], list[list[Message]]]:
    """The form's start and its answers for ``n`` conversations (in the guild ``guild(i)`` gives, if any)."""
    starts: list[Command] = []
    answers: list[list[Message]] = [[] for _ in range(STEPS)]
    for i in range(n):
        key = ConversationKey('bench', f'c{i % 100}', f'u{i}')
        user = User(f'u{i}', guild=guild(i) if guild else None)
        starts.append(Command(key=key, user=user, name='form'))
        for step in range(STEPS):
            answers[step].append(Message(key=key, user=user, text=f'answer {step} of {i}'))
    return starts, answers


async def _flowbot(store: Store, n: int) -> float:
    engine = _engine(store)
    starts, answers = _events(n)
    await asyncio.gather(*(engine.dispatch(e) for e in starts))
    assert engine.live_count() == n

    def fed(batch: list[Message]) -> Callable[[], Awaitable[Any]]:
        return lambda: asyncio.gather(*(engine.dispatch(e) for e in batch))

    rate = await peers.timed([fed(b) for b in answers], n)
    assert engine.live_count() == 0, engine.live_count()
    await store.close()
    return rate


async def _memory(n: int) -> tuple[float, float]:
    """Bytes per live conversation waiting at its first question: flowbot, baseline."""
    engine = _engine(MemoryStore())
    starts, _ = _events(n)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    await asyncio.gather(*(engine.dispatch(e) for e in starts))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # Includes the MemoryStore's snapshot of each conversation: an upper bound for the engine side.
    flowbot = (after - before) / n
    del engine, starts
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    models = []
    for i in range(n):
        model = peers.TransitionsModel(f'c{i % 100}')
        AsyncMachine(
            model=model, states=[f'q{i}' for i in range(STEPS)] + ['done'], initial='q0', auto_transitions=False
        )
        models.append(model)
    gc.collect()
    baseline = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    return flowbot, baseline


GOALS = {'flowbot-memory': 1.5, 'flowbot-sqlite': 0.75}
"""The least each flowbot run must reach, as a multiple of PTB in memory (issue 17)."""


async def _flowbot_sqlite(n: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        return await _flowbot(SQLiteStore(str(pathlib.Path(folder) / 'bench.sqlite3')), n)


async def _flowbot_memory(n: int) -> float:
    return await _flowbot(MemoryStore(), n)


RUNS: dict[str, tuple[str, Callable[[int], Awaitable[float]]]] = {
    **peers.PEERS,
    'flowbot-memory': ('flowbot, in memory', _flowbot_memory),
    'flowbot-sqlite': ('flowbot, SQLite (durable every step)', _flowbot_sqlite),
}
"""Every row of the table: its label and its run (conversations -> steps/s)."""


WARM_UP = 1_000
"""Conversations each row's process runs, untimed, before its timed run."""


def _row(name: str, n: int, clock: str, profile: str | None) -> float | str:
    """One round of one row, run in a fresh process: its rate, or why it cannot run.

    :param profile: where to save this round's profile of the timed part, if profiling.
    """
    logging.basicConfig(level=logging.WARNING)
    peers.clock = peers.CLOCKS[clock]
    peers.profiler = None

    async def timed() -> float:
        run = RUNS[name][1]
        await run(WARM_UP)  # what a long-running bot has done long before: first calls, caches, heap arenas
        peers.profiler = cProfile.Profile() if profile else None  # the timed run's calls only, as reported per step
        return await run(n)

    try:
        rate = asyncio.run(timed())
    except ImportError as exc:
        return f'not installed ({exc.name}): pip install -e .[bench]'
    if peers.profiler is not None and profile:
        peers.profiler.dump_stats(profile)
    return rate


def _memory_row(n: int) -> tuple[float, float]:
    return asyncio.run(_memory(n))


def _run(n: int, rounds: int, only: list[str], clock: str, profile: str | None = None) -> None:
    names = only or list(RUNS)
    rates: dict[str, list[float]] = {name: [] for name in names}
    missing: dict[str, str] = {}
    profiles: dict[str, list[str]] = {name: [] for name in names}
    # One fresh process per task: a row's round never shares an interpreter with anything else.
    spawn = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn, max_tasks_per_child=1) as pool:
        for round_ in range(rounds):
            for name in names:
                if name in missing:
                    continue
                path = f'{profile}-{name}-{round_}.prof' if profile else None
                result = pool.submit(_row, name, n, clock, path).result()
                if isinstance(result, str):
                    missing[name] = result
                    continue
                rates[name].append(result)
                if path:
                    profiles[name].append(path)
        memory = None if only else pool.submit(_memory_row, n).result()
    for name, paths in profiles.items():
        if paths:
            profiling.report(paths, f'{profile}-{name}.prof', RUNS[name][0], n * STEPS * len(paths), 'step')
            for path in paths:
                pathlib.Path(path).unlink()
    best = {name: max(found) for name, found in rates.items() if found}
    reference = best.get('ptb')
    clock_name = 'CPU time' if clock == 'cpu' else 'wall-clock'
    print(
        f'{n:,} concurrent conversations x {STEPS} steps, best of {rounds} round(s), a fresh process each, {clock_name}'
    )
    if profile:
        print('(profiled: every rate below is slowed down by the profiler, unevenly)')
    print(f'{"run":<44}{"steps/s":>10}{"vs PTB":>10}{"rounds":>20}')
    for name in names:
        label = RUNS[name][0]
        if name in missing:
            print(f'{label:<44}{missing[name]}')
            continue
        ratio = f'{best[name] / reference:>9.2f}x' if reference else f'{"-":>10}'
        goal = GOALS.get(name)
        met = (
            ''
            if goal is None or not reference
            else f'   goal >= {goal}x: ' + ('met' if best[name] >= goal * reference else 'NOT met')
        )
        spread = f'{min(rates[name]):,.0f}-{best[name]:,.0f}'
        print(f'{label:<44}{best[name]:>10,.0f}{ratio}{spread:>20}{met}')
    if memory is not None:
        per_conv, per_baseline = memory
        print(
            f'memory per live conversation: flowbot {per_conv / 1024:.2f} KiB, '
            f'transitions AsyncMachine per conv. {per_baseline / 1024:.2f} KiB'
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--conversations', type=int, default=10_000)
    parser.add_argument('--rounds', type=int, default=5, help='runs of every row; the best is shown')
    parser.add_argument('--clock', choices=list(peers.CLOCKS), default='wall', help="cpu: this process's CPU time")
    parser.add_argument('--only', action='append', choices=list(RUNS), default=[], help='these rows only')
    parser.add_argument(
        '--profile', metavar='PREFIX', help='profile the timed part of every row (cProfile, slower): PREFIX-<row>.prof'
    )
    args = parser.parse_args()
    _run(args.conversations, args.rounds, args.only, args.clock, args.profile)


if __name__ == '__main__':
    main()
