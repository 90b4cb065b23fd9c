"""The frameworks people pick instead of flowbot, on the engine benchmark's 5-step form.

Every peer does the same work per step as flowbot's ``ask`` state: validate the answer (stripped,
not empty, not longer than flowbot's limit), store it with the conversation, move the state, and
build and send the next prompt through a send call that returns at once (no request is built,
nothing goes out), like flowbot's :class:`~engine.doubles.NullAdapter`. Conversations are started
before the clock starts; the five answers of every conversation are timed, each round of answers
run concurrently (``asyncio.gather``) as flowbot's are. None of them persists anything.

- ``ptb``: python-telegram-bot's ``ConversationHandler``, ``Update`` objects fed to
  ``Application.process_update``, answers stored in ``context.user_data``;
- ``aiogram``: aiogram 3's FSM (``MemoryStorage``, a router with one handler per state), updates fed
  to ``Dispatcher.feed_update``, answers stored with ``state.update_data``;
- ``statemachine``: one python-statemachine ``StateMachine`` per conversation with async callbacks;
- ``transitions``: one plain ``transitions`` AsyncMachine per conversation (the pattern the engine
  replaces: compiling flows to one machine is flowbot's own design).

They come from the ``bench`` extra (``pip install -e '.[bench]'``; ``make bench`` installs it); a
peer whose package is missing is reported as such and left out of the table.
"""

from __future__ import annotations

import asyncio
import cProfile
import datetime
import gc
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from transitions.extensions.asyncio import AsyncMachine

from engine.app import tune_collector
from engine.patterns import MAX_MATCH_CHARS

__all__ = ['CLOCKS', 'PEERS', 'STEPS', 'TransitionsModel', 'clock', 'prompt', 'timed', 'validate']

STEPS = 5
"""Questions in the form; a step is one answer moving a conversation one state on."""


CLOCKS: dict[str, Callable[[], float]] = {'wall': time.perf_counter, 'cpu': time.process_time}
"""How a run is timed: wall-clock (the default), or this process's CPU time (steadier on a busy machine,
but blind to waiting, such as SQLite's writes to disk)."""
clock = CLOCKS['wall']
profiler: cProfile.Profile | None = None
"""When set (``--profile``), :func:`timed` profiles the timed part of a run with it."""


def prompt(step: int) -> str:
    """The text of question ``step`` (the one flowbot's form asks), or the closing words after the last."""
    return f'Question {step}?' if step < STEPS else 'Thanks'


def validate(text: str) -> str | None:
    """What flowbot's ``ask`` checks of a free-text answer: the stripped text, or ``None`` when it is invalid."""
    raw = text.strip()
    return raw if raw and len(raw) <= MAX_MATCH_CHARS else None


def _answer(step: int, i: int) -> str:
    return f'answer {step} of {i}'


async def timed(rounds: list[Callable[[], Awaitable[Any]]], n: int) -> float:
    """Steps per second over ``rounds`` (each the gathered answers of one step).

    What exists before the clock starts (the conversations started, every answer built in advance) is
    frozen out of the garbage collector's full passes: a bot receives its updates one at a time, so
    walking this run's 50,000 prepared answers over and over would time the benchmark, not the framework.
    Every row runs with the collector as ``flowbot run`` sets it (:func:`engine.app.tune_collector`).
    """
    thresholds = gc.get_threshold()
    tune_collector()
    try:
        if profiler is not None:
            profiler.enable()
        began = clock()
        for step in rounds:
            await step()
        return n * STEPS / (clock() - began)
    finally:
        if profiler is not None:
            profiler.disable()
        gc.unfreeze()
        gc.set_threshold(*thresholds)


# -- python-telegram-bot ------------------------------------------------------------------


async def ptb(n: int) -> float:
    """python-telegram-bot's ``ConversationHandler`` in memory (no persistence)."""
    from telegram import Chat, Message, MessageEntity, Update, User
    from telegram.ext import (
        Application,
        CommandHandler,
        ContextTypes,
        ConversationHandler,
        ExtBot,
        MessageHandler,
        filters,
    )
    from telegram.request import BaseRequest

    class NoServer(BaseRequest):
        """Answers ``getMe`` (all that ``initialize`` asks); the bench sends nothing else through it."""

        @property
        def read_timeout(self) -> float | None:
            return None

        async def initialize(self) -> None:
            pass

        async def shutdown(self) -> None:
            pass

        async def do_request(self, url: str, method: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
            if not url.endswith('/getMe'):
                raise AssertionError(f'the benchmark bot made a request: {url}')
            me = {'id': 1, 'is_bot': True, 'first_name': 'bench', 'username': 'bench_bot'}
            return 200, json.dumps({'ok': True, 'result': me}).encode()

    class SilentBot(ExtBot[None]):
        """Sends nothing: ``send_message`` returns at once."""

        async def send_message(self, chat_id: Any, text: str, *args: Any, **kwargs: Any) -> Any:
            return None

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.effective_chat is not None
        await context.bot.send_message(update.effective_chat.id, prompt(0))
        return 0

    def step(i: int) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, int]]:
        async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
            assert update.message is not None and update.message.text is not None
            assert update.effective_chat is not None and context.user_data is not None
            value = validate(update.message.text)
            if value is None:
                await context.bot.send_message(update.effective_chat.id, 'Sorry, the answer is empty.')
                return i
            context.user_data[f'a{i}'] = value
            await context.bot.send_message(update.effective_chat.id, prompt(i + 1))
            return i + 1 if i + 1 < STEPS else ConversationHandler.END

        return answer

    text = filters.TEXT & ~filters.COMMAND
    form = ConversationHandler(
        entry_points=[CommandHandler('form', start)],
        states={i: [MessageHandler(text, step(i))] for i in range(STEPS)},
        fallbacks=[],
    )
    bot = SilentBot('1:bench', request=NoServer(), get_updates_request=NoServer())
    app = Application.builder().bot(bot).updater(None).build()
    app.add_handler(form)
    await app.initialize()
    now = datetime.datetime.now(datetime.UTC)
    ids = iter(range(1, 10**9))

    def update(i: int, text: str, command: bool = False) -> Update:
        entities = [MessageEntity(MessageEntity.BOT_COMMAND, 0, len(text))] if command else None
        chat = Chat(-(i % 100) - 1, Chat.GROUP)
        user = User(i + 1, f'u{i}', is_bot=False)
        message = Message(next(ids), now, chat, from_user=user, text=text, entities=entities)
        message.set_bot(bot)  # as Update.de_json does for a poller's updates
        result = Update(next(ids), message=message)
        result.set_bot(bot)
        return result

    await asyncio.gather(*(app.process_update(update(i, '/form', command=True)) for i in range(n)))
    batches = [[update(i, _answer(s, i)) for i in range(n)] for s in range(STEPS)]

    def fed(batch: list[Update]) -> Callable[[], Awaitable[Any]]:
        return lambda: asyncio.gather(*(app.process_update(u) for u in batch))

    rate = await timed([fed(b) for b in batches], n)
    assert not form._conversations, len(form._conversations)  # every conversation ended
    assert all(len(app.user_data[i + 1]) == STEPS for i in range(n))
    await app.shutdown()
    return rate


# -- aiogram 3 ------------------------------------------------------------------------------


async def aiogram(n: int) -> float:
    """aiogram 3's FSM with ``MemoryStorage``."""
    from aiogram import Bot, Dispatcher, Router
    from aiogram.filters import Command, StateFilter
    from aiogram.fsm.context import FSMContext
    from aiogram.fsm.state import State, StatesGroup
    from aiogram.fsm.storage.memory import MemoryStorage
    from aiogram.types import Message, Update

    class SilentBot(Bot):
        async def send_message(self, chat_id: Any, text: str, *args: Any, **kwargs: Any) -> Any:
            return None

    form = type('Form', (StatesGroup,), {f'q{i}': State() for i in range(STEPS)})
    questions: list[State] = [getattr(form, f'q{i}') for i in range(STEPS)]
    router = Router()
    ended = [0]

    @router.message(Command('form'))
    async def start(message: Message, state: FSMContext, bot: Bot) -> None:
        await state.set_state(questions[0])
        await bot.send_message(message.chat.id, prompt(0))

    def step(i: int) -> None:
        @router.message(StateFilter(questions[i]))  # a bare State filter is sync: aiogram runs it in a thread
        async def answer(message: Message, state: FSMContext, bot: Bot) -> None:
            value = validate(message.text or '')
            if value is None:
                await bot.send_message(message.chat.id, 'Sorry, the answer is empty.')
                return
            await state.update_data({f'a{i}': value})
            await bot.send_message(message.chat.id, prompt(i + 1))
            if i + 1 < STEPS:
                await state.set_state(questions[i + 1])
            else:
                await state.clear()
                ended[0] += 1

    for i in range(STEPS):
        step(i)
    dispatcher = Dispatcher(storage=MemoryStorage())
    dispatcher.include_router(router)
    bot = SilentBot('123456:' + 'A' * 35)
    now = datetime.datetime.now(datetime.UTC)
    ids = iter(range(1, 10**9))

    def update(i: int, text: str) -> Update:
        raw = {
            'update_id': next(ids),
            'message': {
                'message_id': next(ids),
                'date': now,
                'chat': {'id': -(i % 100) - 1, 'type': 'group'},
                'from': {'id': i + 1, 'is_bot': False, 'first_name': f'u{i}'},
                'text': text,
                **({'entities': [{'type': 'bot_command', 'offset': 0, 'length': len(text)}]} if text[0] == '/' else {}),
            },
        }
        return Update.model_validate(raw, context={'bot': bot})  # mounted on the bot, as a poller's are

    await asyncio.gather(*(dispatcher.feed_update(bot, update(i, '/form')) for i in range(n)))
    batches = [[update(i, _answer(s, i)) for i in range(n)] for s in range(STEPS)]

    def fed(batch: list[Update]) -> Callable[[], Awaitable[Any]]:
        return lambda: asyncio.gather(*(dispatcher.feed_update(bot, u) for u in batch))

    rate = await timed([fed(b) for b in batches], n)
    assert ended[0] == n, ended[0]
    await bot.session.close()
    return rate


# -- python-statemachine ---------------------------------------------------------------------


async def statemachine(n: int) -> float:
    """One python-statemachine ``StateMachine`` per conversation, async callbacks."""
    from statemachine import State, StateMachine

    sent: Callable[[str, str], Awaitable[None]] = _send
    states = {f'q{i}': State(initial=i == 0) for i in range(STEPS)} | {'done': State(final=True)}
    names = list(states)
    answer = None
    for i in range(STEPS):
        edge = states[names[i]].to(states[names[i + 1]], cond='valid', before='store')
        answer = edge if answer is None else answer | edge

    async def valid(self: Any, text: str) -> bool:
        if validate(text) is not None:
            return True
        await sent(self.chat, 'Sorry, the answer is empty.')
        return False

    async def store(self: Any, source: Any, text: str) -> None:
        self.data[source.id] = validate(text)

    async def on_enter_state(self: Any, target: Any) -> None:
        await sent(self.chat, prompt(names.index(target.id)))

    body: dict[str, Any] = {**states, 'answer': answer, 'valid': valid, 'store': store}
    body['on_enter_state'] = on_enter_state
    form = type('Form', (StateMachine,), body)

    async def begin(i: int) -> Any:
        machine = form()
        machine.chat, machine.data = f'c{i % 100}', {}
        await machine.activate_initial_state()  # sends the first question
        return machine

    machines = await asyncio.gather(*(begin(i) for i in range(n)))

    def fed(s: int) -> Callable[[], Awaitable[Any]]:
        return lambda: asyncio.gather(*(m.send('answer', text=_answer(s, i)) for i, m in enumerate(machines)))

    rate = await timed([fed(s) for s in range(STEPS)], n)
    assert all(m.done.is_active and len(m.data) == STEPS for m in machines)
    return rate


async def _send(channel: str, text: str) -> None:
    """The peers' send without a framework of its own: returns at once."""


# -- transitions, one machine per conversation ------------------------------------------------


class TransitionsModel:
    def __init__(self, chat: str) -> None:
        self.chat = chat
        self.data: dict[str, Any] = {}
        self.answer: Callable[..., Awaitable[bool]]

    def valid(self, event: Any) -> bool:
        return validate(event.kwargs['text']) is not None

    def store(self, event: Any) -> None:
        self.data[event.transition.source] = validate(event.kwargs['text'])

    async def prompt(self, event: Any) -> None:
        await _send(self.chat, prompt(int(event.state.name[1:]) if event.state.name != 'done' else STEPS))


async def transitions(n: int) -> float:
    """One plain ``transitions`` AsyncMachine per conversation (the pattern flowbot's engine replaces)."""
    states = [f'q{i}' for i in range(STEPS)] + ['done']
    edges = [
        {'trigger': 'answer', 'source': f'q{i}', 'dest': states[i + 1], 'conditions': 'valid', 'before': 'store'}
        for i in range(STEPS)
    ]

    async def begin(i: int) -> TransitionsModel:
        model = TransitionsModel(f'c{i % 100}')
        AsyncMachine(
            model=model,
            states=[{'name': s, 'on_enter': 'prompt'} for s in states],
            transitions=edges,
            initial='q0',
            auto_transitions=False,
            send_event=True,
        )
        await _send(model.chat, prompt(0))
        return model

    models = await asyncio.gather(*(begin(i) for i in range(n)))

    def fed(s: int) -> Callable[[], Awaitable[Any]]:
        return lambda: asyncio.gather(*(m.answer(text=_answer(s, i)) for i, m in enumerate(models)))

    rate = await timed([fed(s) for s in range(STEPS)], n)
    assert all(m.state == 'done' and len(m.data) == STEPS for m in models)  # type: ignore[attr-defined]
    return rate


PEERS: dict[str, tuple[str, Callable[[int], Awaitable[float]]]] = {
    'ptb': ("python-telegram-bot's ConversationHandler", ptb),
    'aiogram': ('aiogram 3 FSM (MemoryStorage)', aiogram),
    'statemachine': ('python-statemachine, one per conv.', statemachine),
    'transitions': ('transitions AsyncMachine per conv.', transitions),
}
"""Every peer: its row's label and its run (conversations -> steps/s); none persists anything."""
