"""Engine throughput and memory: 10,000 concurrent conversations through a 5-step form.

Run: ``.venv/bin/python -m benchmarks.engine [--conversations 10000]``

Three runs in one process, same steps each:

- ``flowbot, in memory``: the full runtime (dispatch → validate answer → transition → prompt → persist)
  with :class:`~engine.store.MemoryStore`;
- ``flowbot, SQLite``: the same with :class:`~engine.store.SQLiteStore` (WAL, group commit) in a temp folder;
- ``baseline``: one plain ``transitions`` AsyncMachine per conversation (the pattern the engine
  replaces), saving each answer in a callback, without persistence.

A step is one user answer moving a conversation one state on. Memory per live conversation is
measured with ``tracemalloc`` over 10,000 conversations waiting at their first question.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import pathlib
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from transitions.extensions.asyncio import AsyncMachine

from engine.api import Command, ConversationKey, Message, User
from engine.config import Config
from engine.flows.library import FlowLibrary
from engine.flows.loader import load_text
from engine.runtime import Engine
from engine.states.actions import ActionRegistry
from engine.store import MemoryStore, SQLiteStore, Store
from engine.testing import NullAdapter

__all__ = ['main']

STEPS = 5
FORM = '\n'.join(
    ['[flow]\nname = "form"\n\n[trigger]\ncommand = "form"\n']
    + [f'[states.q{i}]\nkind = "ask"\nprompt = "Question {i}?"\nsave_as = "a{i}"\n' for i in range(STEPS)]
    + ['[states.done]\nkind = "end"\ntext = "Thanks"\n']
)


def _engine(store: Store) -> Engine:
    library = FlowLibrary(ActionRegistry(), ['admins'])
    library.activate([load_text(FORM, 'form.toml')])
    engine = Engine(config=Config(), store=store, actions=library.actions, library=library)
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
    began = time.perf_counter()
    for batch in answers:
        await asyncio.gather(*(engine.dispatch(e) for e in batch))
    elapsed = time.perf_counter() - began
    assert engine.live_count() == 0, engine.live_count()
    await store.close()
    return n * STEPS / elapsed


class _FormModel:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.answer: Callable[..., Any]

    async def save(self, event: Any) -> None:
        self.data[event.transition.source] = event.kwargs.get('text')

    async def prompt(self, event: Any) -> None:
        await NULL.send_text(KEY, f'Question {event.state.name}?')


NULL = NullAdapter('bench')
KEY = ConversationKey('bench', 'c', 'u')


async def _baseline(n: int) -> float:
    states = [f'q{i}' for i in range(STEPS)] + ['done']
    transitions = [
        {'trigger': 'answer', 'source': f'q{i}', 'dest': states[i + 1], 'before': 'save'} for i in range(STEPS)
    ]
    models: list[_FormModel] = []

    async def start() -> None:
        model = _FormModel()
        AsyncMachine(
            model=model,
            states=[{'name': s, 'on_enter': 'prompt'} for s in states],
            transitions=transitions,
            initial='q0',
            auto_transitions=False,
            send_event=True,
        )
        await NULL.send_text(KEY, 'Question q0?')
        models.append(model)

    began = time.perf_counter()
    await asyncio.gather(*(start() for _ in range(n)))
    for step in range(STEPS):
        await asyncio.gather(*(m.answer(text=f'answer {step}') for m in models))
    elapsed = time.perf_counter() - began
    assert all(m.state == 'done' for m in models)  # type: ignore[attr-defined]
    return n * STEPS / elapsed


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
    for _ in range(n):
        model = _FormModel()
        AsyncMachine(
            model=model, states=[f'q{i}' for i in range(STEPS)] + ['done'], initial='q0', auto_transitions=False
        )
        models.append(model)
    gc.collect()
    baseline = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    return flowbot, baseline


async def _run(n: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    baseline = await _baseline(n)
    memory_rate = await _flowbot(MemoryStore(), n)
    with tempfile.TemporaryDirectory() as folder:
        sqlite_rate = await _flowbot(SQLiteStore(str(pathlib.Path(folder) / 'bench.sqlite3')), n)
    per_conv, per_baseline = await _memory(n)
    print(f'{n} concurrent conversations x {STEPS} steps, one core')
    print(f'{"run":<34}{"steps/s":>12}{"vs baseline":>14}')
    print(f'{"baseline: AsyncMachine per conv.":<34}{baseline:>12,.0f}{1.0:>13.1f}x')
    print(f'{"flowbot, in memory":<34}{memory_rate:>12,.0f}{memory_rate / baseline:>13.1f}x')
    print(f'{"flowbot, SQLite (persisted)":<34}{sqlite_rate:>12,.0f}{sqlite_rate / baseline:>13.1f}x')
    print(f'memory per live conversation: flowbot {per_conv / 1024:.2f} KiB, baseline {per_baseline / 1024:.2f} KiB')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--conversations', type=int, default=10_000)
    asyncio.run(_run(parser.parse_args().conversations))


if __name__ == '__main__':
    main()
