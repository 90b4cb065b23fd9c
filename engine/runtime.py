"""The runtime: conversations keyed by (adapter, channel, user), run on compiled flows.

One conversation handles one event at a time, in arrival order; different conversations run
concurrently. :class:`Engine` keeps that queueing and the conversations' lifecycle (start, restore,
finish); what a state *does* lives in :mod:`engine.states` (handlers, steps, kinds), the interrupts
in :mod:`engine.interrupts`, the engine's own texts in :mod:`engine.messages`, who may start what
in :mod:`engine.permissions` and work folders in :mod:`engine.workdirs`. Actions run as tasks whose
completion comes back as an event, so a slow model never blocks.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import pathlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from engine import i18n, messages
from engine.api import Adapter, Attachment, ChoicePress, Command, ConversationKey, Event, Message, User
from engine.commands import parse_arguments
from engine.config import Config, redact
from engine.conversation import Conversation, Internal, jsonable, store_key
from engine.errors import user_message
from engine.files import FileGate, sendable_roots
from engine.flows import model
from engine.flows.compile import CompiledFlow
from engine.flows.library import FlowLibrary
from engine.flows.loader import did_you_mean
from engine.interrupts import as_command, interrupt, interrupt_named, outside_dialog, stopped_message, typed_interrupt
from engine.messages import DEFAULT_PREFIX, interrupt_words
from engine.permissions import refusal
from engine.states import kinds, steps
from engine.states.actions import Action, ActionRegistry
from engine.states.handlers import handler_for, question
from engine.states.scope import StateScope
from engine.store import ShardLostError, Shards, Store, StoredConversation
from engine.workdirs import WorkFolders

__all__ = ['Conversation', 'Engine', 'Internal']

_log = logging.getLogger(__name__)


class Engine:
    """Runs conversations for every adapter; the engine's one public entry point is :meth:`dispatch`."""

    def __init__(self, *, config: Config, store: Store, actions: ActionRegistry, library: FlowLibrary) -> None:
        self.config = config
        self.store = store
        self.actions = actions
        self.library = library
        self.adapters: dict[str, Adapter] = {}
        self.on_flows_changed: list[Callable[[], Awaitable[None]]] = []
        self._live: dict[ConversationKey, Conversation] = {}
        self._waiting: dict[str, set[ConversationKey]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._summary: tuple[tuple[int, str], list[dict[str, Any]]] | None = None
        self._held: dict[str, list[Callable[[], object]]] = {}
        """Restored work (timers, re-runs, endings) waiting for its adapter to be added."""
        self.workdirs = WorkFolders(config.resolve(config.bot.data_root) / 'tmp')
        """The conversations' work folders."""
        self.workroot = self.workdirs.root
        self.files = FileGate.from_config(config, extra_roots=sendable_roots(config)[1:])
        """What ``say``/``end`` ``files`` pass before an adapter sends them."""
        self.shards: Shards | None = None
        """The shards this process runs (set by :meth:`start`); ``None``: all of them."""
        self.progress_interval = config.bot.progress_interval
        i18n.set_default(config.bot.language)
        """Seconds between two edits of one progress message."""

    # -- public API -----------------------------------------------------------------------

    def add_adapter(self, adapter: Adapter) -> None:
        """Serve conversations keyed by ``adapter.name``; restored work held for it runs now."""
        self.adapters[adapter.name] = adapter
        for work in self._held.pop(adapter.name, []):
            work()

    def flows(self) -> list[model.Flow]:
        """The flows served now (their active versions)."""
        return [c.flow for c in self.library.active()]

    def action(self, name: str) -> Action | None:
        """The registered action ``name``, for ``call`` states."""
        return self.actions.get(name)

    def flow(self, name: str) -> CompiledFlow | None:
        """The served version of flow ``name``, for ``flow`` states."""
        return self.library.get(name)

    def conversation(self, key: ConversationKey) -> Conversation | None:
        """The live conversation on ``key``, if any."""
        return self._live.get(key)

    def live_count(self) -> int:
        """How many conversations are live (open or at rest) in this process."""
        return len(self._live)

    async def dispatch(self, event: Event | Internal, key: ConversationKey | None = None) -> None:
        """Handle one event; returns when it (and anything queued before it) has been processed.

        One coroutine runs the event and then the conversation's queue (the hot path of every step).
        """
        if isinstance(event, Internal):
            locale = None
        else:
            key, locale = event.key, event.locale
        assert key is not None
        conv = self._live.get(key)
        default = self.config.bot.language
        language = i18n.switch(locale or (conv.locale if conv else None), default)
        try:
            if conv is None:
                if isinstance(event, Internal):
                    return
                conv = await self._start(event)
                if conv is None:
                    return
            if conv.busy:
                waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                if conv.queue is None:
                    conv.queue = collections.deque()
                conv.queue.append((event, waiting))
                await waiting
                return
            conv.busy = True
            fut: asyncio.Future[None] | None = None
            try:
                while True:
                    try:
                        work = self._work(conv, event)
                        if work is not None:
                            await work
                    except ShardLostError:
                        self._lost(conv)
                    except Exception as exc:
                        await self._failed(conv, event, exc)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                    if not conv.queue:
                        return
                    if self._live.get(key) is not conv:
                        # It ended under an earlier event: the rest start afresh, in order, after
                        # whatever the ending handed on (a new command, deferred messages).
                        rest, conv.queue = list(conv.queue), None
                        self._spawn(self._redispatch(rest), key)
                        return
                    event, fut = conv.queue.popleft()
                    # A queued event is answered in its own language (reset with the first token: the first
                    # switch's, or this one's when the first changed nothing).
                    switched = i18n.switch(
                        (None if isinstance(event, Internal) else event.locale) or conv.locale, default
                    )
                    language = language or switched
            finally:
                if fut is not None and not fut.done():  # cancelled mid-step: the event's waiter is let go
                    fut.set_result(None)
                if conv.queue:  # cancelled mid-step: the queue goes on in a task of its own (busy till then)
                    self._spawn(self._resume(conv), key)
                else:
                    conv.busy = False
        finally:
            i18n.restore(language)

    async def _resume(self, conv: Conversation) -> None:
        """Go on with the queue of a conversation whose dispatch was cancelled mid-step: in order, the
        conversation kept busy until now so nothing arriving meanwhile overtakes it."""
        conv.busy = False
        rest, conv.queue = list(conv.queue or ()), None
        if self._live.get(conv.key) is not conv:
            await self._redispatch(rest)
            return
        event, fut = rest.pop(0)
        if rest:
            conv.queue = collections.deque(rest)
        try:
            await self.dispatch(event, conv.key)
        finally:
            if not fut.done():
                fut.set_result(None)

    async def _dispatch_then(self, event: Event, deferred: list[Event]) -> None:
        """Run the command that ended a conversation, then the messages that conversation deferred:
        at once if the command is over, else when it ends (they are not stopped by it)."""
        await self.dispatch(event)
        conv = self._live.get(event.key)
        if conv is not None and deferred:
            conv.deferred[:0] = deferred
            await self.save(conv)
            return
        for message in deferred:
            await self.dispatch(message)

    async def _redispatch(self, events: list[tuple[Event | Internal, asyncio.Future[None]]]) -> None:
        for event, fut in events:
            try:
                if not isinstance(event, Internal):  # internal events belonged to the ended conversation
                    await self.dispatch(event)
            finally:
                if not fut.done():
                    fut.set_result(None)

    async def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no action, timeout or notification is being processed; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while self._tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.wait(list(self._tasks), timeout=left)
        return True

    async def notify(self, topic: str, payload: Mapping[str, Any] | None = None) -> int:
        """Resume conversations waiting on ``topic``; returns how many there were.

        A restored conversation whose adapter has not connected yet (or belongs to another process
        on the same store) is left waiting and not counted, so the notifier delivers again later
        instead of resuming it into a channel that cannot hear it.
        """
        keys = [key for key in self._waiting.get(topic, ()) if key.adapter in self.adapters]
        for key in keys:
            conv = self._live.get(key)
            if conv is not None:
                await self.dispatch(Internal(kind='notify', epoch=conv.epoch, payload=dict(payload or {})), key)
        return len(keys)

    async def progress(self, topic: str, text: str) -> list[str]:
        """Show ``text`` in the progress message of every conversation waiting on ``topic``; their ids."""
        shown = []
        for key in list(self._waiting.get(topic, ())):
            conv = self._live.get(key)
            if conv is not None and key.adapter in self.adapters:
                await self.show_progress(conv, text)
                if conv.scope.progress_id:
                    shown.append(str(conv.scope.progress_id))
        return shown

    async def post(
        self, place: Mapping[str, Any], text: str, *, files: Sequence[str] = (), edit: str | None = None
    ) -> str | None:
        """Send ``text`` to a place outside any conversation (a job's report), mentioning its user.

        :param place: ``adapter``, ``channel`` and ``user`` (as in a :class:`ConversationKey`).
        :param edit: a message id to edit instead of sending (a job's progress message).
        :returns: the message id, or ``None`` when the adapter is not connected (try again later).
            Adapter failures propagate, so the caller can retry.
        """
        adapter = self.adapters.get(str(place.get('adapter')))
        if adapter is None:
            return None
        key = ConversationKey(str(place['adapter']), str(place['channel']), str(place['user']))
        if edit is not None:
            await adapter.edit_text(key, edit, text)
            return edit
        mention = adapter.mention(key.user)
        body = f'{mention} {text}' if mention else text
        paths = [pathlib.Path(f) for f in files if f and pathlib.Path(f).is_file()]
        if not paths:
            return await adapter.send_text(key, body)
        message_id = await adapter.send_file(key, paths[0], text=body)
        for path in paths[1:]:
            await adapter.send_file(key, path)
        return message_id

    def owns(self, place: Mapping[str, Any]) -> bool:
        """Whether long work reporting to ``place`` is this process's to watch (its guild is on our shards)."""
        return self.shards is None or self.shards.owns(place.get('guild'))

    async def start(self, shards: Shards | None = None) -> None:
        """Restore unfinished conversations (of ``shards`` only, when given) and re-arm their timeouts."""
        self.shards = shards
        stored_sources = await self.store.flow_versions()
        restored = 0
        for row in await self.store.load_all(shards):
            if isinstance(row, Exception):
                _log.error('store: skipping a conversation that cannot be restored: %s', row)
                continue
            try:
                if await self._restore(row, stored_sources):
                    restored += 1
            except Exception:
                _log.exception('store: conversation %s cannot be restored; skipped', row.key.replace('\x1f', ':'))
        if restored:
            _log.info('restored %d conversation(s)', restored)

    async def stop(self) -> None:
        """Disarm every conversation's state and cancel background work (conversations stay stored)."""
        for conv in self._live.values():
            conv.scope.disarm()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- starting, restoring, finishing ---------------------------------------------------

    def _prefix(self, key: ConversationKey) -> str:
        """How commands are written on ``key``'s adapter (the default when it is not connected)."""
        adapter = self.adapters.get(key.adapter)
        return adapter.prefix if adapter is not None else DEFAULT_PREFIX

    def _text(self, message: str, key: ConversationKey, locale: str | None, **values: Any) -> str:
        """The engine message ``message`` for the user of ``key`` (their language, their adapter's prefix)."""
        return messages.render(message, locale, self.config.bot.language, prefix=self._prefix(key), **values)

    async def _reply(self, key: ConversationKey, text: str, *, notice: bool = False) -> None:
        """Send ``text``; a ``notice`` is meant only for the user (refusals, stale buttons): private where possible."""
        adapter = self.adapters.get(key.adapter)
        if adapter is None:
            _log.error('no adapter %r to reply to %s: %s', key.adapter, key, text)
            return
        try:
            await (adapter.send_notice if notice else adapter.send_text)(key, text)
        except Exception:
            _log.exception('adapter %s failed to send a reply to %s', key.adapter, key)

    async def _start(self, event: Event) -> Conversation | None:
        locale = event.locale
        if isinstance(event, Command):
            compiled = None if event.name in model.INTERRUPTS else self.library.command(event.name)
            if compiled is None:
                name = interrupt_named(event.name, i18n.current()) or event.name  # help, or !помощь
                if name == 'help' and self.library.command(self.config.bot.help_command):
                    compiled = self.library.command(self.config.bot.help_command)
                elif name in model.INTERRUPTS:
                    await self._reply(event.key, self._text(outside_dialog(name), event.key, locale), notice=True)
                    return None
            if compiled is None:
                hint = did_you_mean(event.name, self.library.command_names())
                text = self._text('unknown_command', event.key, locale, name=event.name, hint=hint)
                await self._reply(event.key, text)
                return None
        elif isinstance(event, Message):
            typed = typed_interrupt(event, self._prefix(event.key))  # in the event's language
            if typed == 'help' and self.library.command(self.config.bot.help_command):
                return await self._start(as_command(event, self.config.bot.help_command))
            if typed is not None:  # not a question for the chat model
                await self._reply(event.key, self._text(outside_dialog(typed), event.key, locale), notice=True)
                return None
            found = self.library.for_message(event.text, event.attachments)
            if found is None:
                return None
            compiled = found
        else:
            await self._reply(event.key, self._text('stale_choice', event.key, locale), notice=True)
            return None
        if not await self._allowed(compiled, event):
            return None
        conv = Conversation(event.key, compiled, event.user, {})
        conv.locale = locale or None
        self._live[event.key] = conv
        return conv

    async def _allowed(self, compiled: CompiledFlow, event: Event) -> bool:
        text = self._refusal(compiled, event.key, event.user, event.is_dm, event.locale)
        if text is None:
            return True
        await self._reply(event.key, text, notice=True)
        return False

    def _refusal(
        self, compiled: CompiledFlow, key: ConversationKey, user: User, is_dm: bool, locale: str | None
    ) -> str | None:
        adapter = self.adapters.get(key.adapter)
        grants_all = adapter is not None and adapter.grants_all_permissions
        found = refusal(compiled.flow, user, is_dm=is_dm, config=self.config, grants_all=grants_all)
        return None if found is None else self._text(found[0], key, locale, **found[1])

    def may_start(
        self, command: str, key: ConversationKey, user: User, *, is_dm: bool, locale: str | None = None
    ) -> str | None:
        """Why ``user`` may not start ``command`` here (the text to show them), or ``None`` if they may.

        Adapters ask before they download a command's attachments, so a refused command costs nothing;
        the engine checks again when the command arrives. Unknown commands are not refused here.
        """
        compiled = self.library.command(command)
        return None if compiled is None else self._refusal(compiled, key, user, is_dm, locale)

    def options(
        self,
        name: str,
        text: str,
        key: ConversationKey,
        attachments: Sequence[Attachment] = (),
        locale: str | None = None,
    ) -> dict[str, Any]:
        """The typed options of command ``name`` from the text typed after it, for :attr:`Command.options`.

        Adapters whose channel gives commands as text (a prefix command, a console line) call this, so
        every adapter types arguments with one parser against the flow's declared options. Unknown
        commands and the interrupts take no arguments (``{}``); the engine answers them when they arrive.

        :param key: the conversation the command is for (its adapter's prefix is in the usage line).
        :param attachments: the files that came with the command, for ``attachment`` options in order.
        :param locale: the user's locale, for the language of a usage error.
        :raises UsageError: the text does not fit the options; its message has the usage line, for the user.
        """
        if name in model.INTERRUPTS:
            return {}
        compiled = self.library.command(name)
        if compiled is None:
            return {}
        with i18n.use(locale, self.config.bot.language):
            return parse_arguments(name, compiled.flow.trigger, text, attachments, prefix=self._prefix(key))

    async def _restore(self, row: StoredConversation, sources: Mapping[tuple[str, str], str]) -> bool:
        adapter, channel, user = row.key.split('\x1f')
        key = ConversationKey(adapter, channel, user)
        # Only flows still served may continue (on the version they started on); a removed one ends.
        root = row.stack[0]['flow'] if row.stack else row.flow
        removed = self.library.get(root) is None
        compiled = None if removed else await self.compiled_version(row.flow, row.version, sources)
        if compiled is None or row.state not in compiled.machine.states:
            self._when_connected(key, lambda: self._spawn(self._removed(key, row), key))
            return False
        conv = Conversation.restore(key, compiled, row)
        self._live[key] = conv
        if conv.scope.topic is not None:
            self._waiting.setdefault(conv.scope.topic, set()).add(key)
        if conv.scope.deadline is not None:
            deadline = conv.scope.deadline
            self._when_connected(key, lambda: self._arm_timer(conv, max(0.0, deadline - time.time())))
        if conv.spec is not None and handler_for(conv.spec).reruns_on_restore:
            rerun = Internal(kind='rerun', epoch=conv.epoch)
            self._when_connected(key, lambda: self._spawn(self.dispatch(rerun, key), key))
        return True

    async def compiled_version(
        self, name: str, version: str, sources: Mapping[tuple[str, str], str] | None = None
    ) -> CompiledFlow | None:
        """A flow version a conversation started on: compiled already, or rebuilt from the store."""
        compiled = self.library.get(name, version)
        if compiled is None:
            source = (await self.store.flow_versions() if sources is None else sources).get((name, version))
            compiled = self.library.restore(name, version, source) if source is not None else None
        return compiled

    def _when_connected(self, key: ConversationKey, work: Callable[[], object]) -> None:
        """Run restored work once the conversation's adapter is there (now, or when it is added).

        A due timeout must not fire into a channel that has not connected yet, and a console run
        on the same store must leave the Discord conversations alone.
        """
        if key.adapter in self.adapters:
            work()
        else:
            self._held.setdefault(key.adapter, []).append(work)

    async def _removed(self, key: ConversationKey, row: StoredConversation) -> None:
        _log.warning('conversation %s was on flow %s %s, which no longer exists; ending it', key, row.flow, row.version)
        await self._reply(key, self._text('flow_removed', key, None, flow=row.flow))
        await self.store.delete(row.key)

    async def finish(self, conv: Conversation) -> None:
        """End a conversation: forget it, stop its timer and task, clean its folder."""
        self.leave_state(conv)
        self._live.pop(conv.key, None)
        if conv.stored:
            await self.store.delete(store_key(conv.key))
        adapter = self.adapters.get(conv.key.adapter)
        if adapter is not None:
            try:
                await adapter.close_conversation(conv.key)
            except Exception:
                _log.exception('adapter %s failed to close conversation %s', conv.key.adapter, conv.key)
        self.workdirs.remove(conv.key)
        for event in conv.deferred:
            self._spawn(self.dispatch(event), conv.key)

    # -- processing -----------------------------------------------------------------------

    def _lost(self, conv: Conversation) -> None:
        """Another process owns this conversation now and continues it: say nothing, keep nothing."""
        _log.error('conversation %s belongs to another bot process now; dropped here', conv.key)
        self.leave_state(conv)
        if self._live.get(conv.key) is conv:
            del self._live[conv.key]

    async def _failed(self, conv: Conversation, event: Event | Internal, exc: Exception) -> None:
        """An event failed: log it, tell the user, end the conversation."""
        _log.exception(  # the event carries what the user typed: a key pasted there stays out of the log
            'conversation %s failed in %s/%s on %s', conv.key, conv.compiled.name, conv.state, redact(str(event))
        )
        message = user_message(exc)
        await self._reply(conv.key, self.text('error', conv, error=message))
        if self._live.get(conv.key) is conv:
            await self.finish(conv)

    def _work(self, conv: Conversation, event: Event | Internal) -> Awaitable[object] | None:
        """What ``event`` asks of ``conv``: the coroutine :meth:`dispatch` awaits, ``None`` when nothing.

        It decides and hands the work on rather than awaiting it in a coroutine of its own: one coroutine
        fewer on every step.
        """
        if isinstance(event, Internal):
            return steps.on_internal(self, conv, event) if event.epoch == conv.epoch else None
        if event.locale:
            conv.locale = event.locale
        conv.user = event.user
        if conv.event is None and conv.state == conv.compiled.flow.initial and not conv.started:
            return self._begin(conv, event)
        command = event.name if isinstance(event, Command) else typed_interrupt(event, self._prefix(conv.key))
        if command in model.INTERRUPTS and not self._offered(conv, event):
            return interrupt(self, conv, command)
        if isinstance(event, Command):
            return self._stop_for(conv, event)
        if (ask := conv.compiled.questions.get(conv.state)) is not None:  # question(conv.spec), one look-up
            conv.event = event
            return kinds.answer(self, conv, ask, event)
        if isinstance(event, ChoicePress):
            return self._reply(conv.key, self.text('stale_choice', conv), notice=True)
        return self._defer(conv, event)

    @staticmethod
    def _offered(conv: Conversation, event: Event) -> bool:
        """Whether a typed interrupt word is a choice of the open question ("Cancel the job?" answered ``cancel``):
        then it is that answer, and the interrupt is typed with its mark (``!cancel``)."""
        if not isinstance(event, Message):
            return False
        ask = conv.compiled.questions.get(conv.state)
        return ask is not None and kinds.offered_choice(ask, event.text) is not None

    async def _stop_for(self, conv: Conversation, event: Command) -> None:
        """A command inside a conversation: it stops the conversation and starts, or is unknown or refused to this
        user (and stops nothing)."""
        compiled = self.library.command(event.name)
        if compiled is None and (named := interrupt_named(event.name, i18n.current())) is not None:
            await interrupt(self, conv, named)  # !отмена
            return
        if compiled is None:
            words = interrupt_words(i18n.current()).values()  # !отмен: did you mean отмена?
            hint = did_you_mean(event.name, [*self.library.command_names(), *model.INTERRUPTS, *words])
            text = self.text('unknown_command', conv, name=event.name, hint=hint)
            await self._reply(conv.key, text + ('\n' + self.text('interrupts', conv) if question(conv.spec) else ''))
            return
        refused = self._refusal(compiled, conv.key, event.user, event.is_dm, event.locale)
        if refused is not None:  # a command the user may not run stops nothing
            await self._reply(conv.key, refused, notice=True)
            return
        await self._reply(conv.key, self.text(stopped_message(conv, 'stopped'), conv, flow=conv.compiled.name))
        deferred, conv.deferred = conv.deferred, []
        await self.finish(conv)
        self._spawn(self._dispatch_then(event, deferred), conv.key)

    async def _defer(self, conv: Conversation, event: Event) -> None:
        """A message while the flow is busy (no question open): kept for when the flow ends."""
        conv.deferred.append(event)
        await self.save(conv)  # a deferred message survives a restart too
        await self._reply(conv.key, self.text('busy', conv, flow=conv.compiled.name))

    async def _begin(self, conv: Conversation, event: Event) -> None:
        conv.event = event
        conv.started = True
        options: dict[str, Any] = {}
        if isinstance(event, Command):
            options = {k: jsonable(v) for k, v in {**_defaults(conv.compiled.flow.trigger), **event.options}.items()}
        elif isinstance(event, Message):
            conv.data['input'] = event.text
        conv.data['options'] = options
        conv.data['attachments'] = [jsonable(a) for a in getattr(event, 'attachments', ())]
        await steps.enter(self, conv)

    # -- helpers the state kinds use -------------------------------------------------------

    def prefix(self, conv: Conversation) -> str:
        """How commands are written on the conversation's adapter (templates' ``bot.prefix``)."""
        return self._prefix(conv.key)

    def move(self, conv: Conversation, trigger: str) -> Coroutine[Any, Any, None]:
        """Leave the current state by ``trigger`` and do the work of the states it leads to
        (:func:`engine.states.steps.move`); the handlers reach it through the port.

        Hands on :func:`~engine.states.steps.move`'s coroutine rather than awaiting it in one of its own (as
        :meth:`save` and :meth:`reply` do): one coroutine fewer on every step."""
        return steps.move(self, conv, trigger)

    def adapter(self, conv: Conversation) -> Adapter:
        """The adapter the conversation is on; an error if it is not connected."""
        adapter = self.adapters.get(conv.key.adapter)
        if adapter is None:
            raise RuntimeError(f'no adapter named {conv.key.adapter!r}')
        return adapter

    def workdir(self, conv: Conversation) -> pathlib.Path:
        """The conversation's work folder (see :class:`~engine.workdirs.WorkFolders`)."""
        return self.workdirs.path(conv.key)

    def save(self, conv: Conversation) -> Awaitable[None]:
        """Persist the conversation as it is now (it may be restored after a restart): the snapshot is taken
        at the call, the store's awaitable handed on to be awaited."""
        conv.stored = True
        return self.store.save(conv.snapshot())

    def leave_state(self, conv: Conversation) -> None:
        """Disarm what the current state started (timer, task, topic, progress) before any transition."""
        scope = conv.scope
        if scope.renew():
            return
        conv.scope = StateScope()
        scope.disarm()
        if scope.topic is not None:
            waiting = self._waiting.get(scope.topic)
            if waiting is not None:
                waiting.discard(conv.key)
                if not waiting:
                    del self._waiting[scope.topic]
        adapter = self.adapters.get(conv.key.adapter)
        if scope.progress_id is not None and adapter is not None:
            adapter.progress_done(conv.key, scope.progress_id)

    def arm(self, conv: Conversation, seconds: float | None) -> None:
        """Start the state's timeout (called on entering a state that has one)."""
        if seconds is None:
            return
        conv.scope.deadline = time.time() + seconds
        self._arm_timer(conv, seconds)

    def _arm_timer(self, conv: Conversation, delay: float) -> None:
        epoch = conv.epoch
        key = conv.key

        def fire() -> None:
            self._spawn(self.dispatch(Internal(kind='timeout', epoch=epoch), key), key)

        conv.scope.timer = asyncio.get_running_loop().call_later(delay, fire)

    def wait_for(self, conv: Conversation, topic: str) -> None:
        """Resume the conversation when ``topic`` is notified (until its state is left)."""
        conv.scope.topic = topic
        self._waiting.setdefault(topic, set()).add(conv.key)

    def _spawn(self, coro: Awaitable[Any], key: ConversationKey) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                _log.error('background work for %s failed', key, exc_info=t.exception())

        task.add_done_callback(done)
        return task

    def start_action(self, conv: Conversation, work: Callable[[], Awaitable[Any]]) -> None:
        """Run an action as a task; its result comes back as a ``done``/``error`` event."""
        epoch = conv.epoch
        key = conv.key

        async def run() -> None:
            try:
                result = await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self.dispatch(Internal(kind='error', epoch=epoch, payload=exc), key)
                return
            await self.dispatch(Internal(kind='done', epoch=epoch, payload=result), key)

        conv.scope.task = self._spawn(run(), key)

    async def show_progress(self, conv: Conversation, text: str) -> None:
        """Show the step's progress message once, then edit it in place at most once per interval; an
        update inside the interval is held and the newest one shown when the interval ends, so the message
        never stays on a stale text. When the state is left the adapter is told (``progress_done``), so the
        step's result can replace it."""
        adapter = self.adapter(conv)
        now = time.monotonic()
        scope = conv.scope
        message_id = scope.progress_id
        wait = scope.progress_at + self.progress_interval - now
        if scope.progress_sending or (message_id is not None and wait > 0):
            scope.progress_pending = text
            if scope.progress_flush is None:
                epoch = scope.epoch
                scope.progress_flush = asyncio.get_running_loop().call_later(
                    max(wait, self.progress_interval if scope.progress_sending else 0.0),
                    lambda: self._spawn(self._flush_progress(conv, epoch), conv.key),
                )
            return
        try:
            if message_id is None:
                scope.progress_sending = True
                try:
                    scope.progress_id = await adapter.progress(conv.key, text)
                finally:
                    scope.progress_sending = False
            else:
                scope.progress_id = await adapter.progress(conv.key, text, message_id)  # it may start anew
            scope.progress_at = now
        except Exception:
            _log.exception('progress update for %s failed', conv.key)

    async def _flush_progress(self, conv: Conversation, epoch: int) -> None:
        """Show the update the rate limit held back, if the state that asked for it is still current."""
        scope = conv.scope
        if scope.epoch != epoch:
            return
        scope.progress_flush = None
        text, scope.progress_pending = scope.progress_pending, None
        if text is not None:
            await self.show_progress(conv, text)

    def text(self, message: str, conv: Conversation, **values: Any) -> str:
        """An engine message (:data:`engine.messages.MESSAGES`) in the conversation's language, commands
        written with its adapter's prefix."""
        return self._text(message, conv.key, conv.locale, **values)

    def reply(self, conv: Conversation, text: str) -> Coroutine[Any, Any, None]:
        """Send ``text`` to the conversation; an adapter failure is logged, not raised."""
        return self._reply(conv.key, text)

    def flows_summary(self) -> list[dict[str, Any]]:
        """What ``instruction`` lists: every command flow with its options (cached per flow set)."""
        lang = i18n.current()
        if self._summary is not None and self._summary[0] == (self.library.generation, lang):
            return self._summary[1]
        out = []
        for flow in sorted(self.flows(), key=lambda f: f.trigger.command or '~' + f.name):
            trig = flow.trigger
            out.append(
                {
                    'name': flow.name,
                    'command': trig.command,
                    'aliases': trig.aliases,
                    'message': trig.message,
                    'description': model.localize(flow.flow.description or trig.description, lang),
                    'options': [
                        {
                            'name': o.name,
                            'type': o.type,
                            'required': o.is_required,
                            'description': model.localize(o.description, lang),
                        }
                        for o in trig.options
                    ],
                    'permission': flow.permission,
                }
            )
        self._summary = ((self.library.generation, lang), out)
        return out


def _defaults(trigger: model.Trigger) -> dict[str, Any]:
    """Every option present (``None`` when not given), so templates can test them."""
    return {o.name: o.default for o in trigger.options}
