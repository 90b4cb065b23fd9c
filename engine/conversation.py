"""A live conversation and the stored forms of what it holds.

:class:`Conversation` is the model the flow machines move (its ``state``) plus what the runtime
keeps per user and channel; :class:`Internal` is an event the engine posts to itself. This module
knows no engine and no state kind, so the state handlers and the engine both import it without a
cycle. :func:`jsonable` and :func:`attachment` turn attachments and paths into what the store keeps
and back.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from engine.api import Attachment, ConversationKey, Event, Message, User
from engine.flows import model
from engine.states.scope import StateScope
from engine.store import StoredConversation

if TYPE_CHECKING:
    from engine.flows.compile import CompiledFlow

_log = logging.getLogger(__name__)

__all__ = [
    'Conversation',
    'Internal',
    'attachment',
    'jsonable',
    'store_key',
    'stored_event',
    'stored_message',
    'stored_user',
]


@attrs.frozen(kw_only=True)
class Internal:
    """An event the engine posts to itself: an action finished, a timeout fell due, a topic fired."""

    kind: str
    """``done``, ``error``, ``timeout`` or ``notify``."""
    epoch: int
    """The state entry it belongs to; stale ones (the conversation moved on) are dropped."""
    payload: Any = None


class Conversation:
    """A live conversation: the model the machines move, plus what the runtime keeps between events.

    Every field is typed; :meth:`snapshot` and :meth:`restore` turn them into the store's row and
    back. The row keeps them in its ``extra`` table under the names earlier versions used, so rows
    written before these fields existed still load.
    """

    __slots__ = (
        'attempts',
        'busy',
        'compiled',
        'data',
        'deferred',
        'event',
        'history',
        'key',
        'locale',
        'queue',
        'row_key',
        'row_user',
        'scope',
        'stack',
        'started',
        'state',
        'stored',
        'user',
    )

    def __init__(self, key: ConversationKey, compiled: CompiledFlow, user: User, data: dict[str, Any]) -> None:
        self.key = key
        self.row_key = store_key(key)
        """The store's key of the conversation, made once (every step's snapshot writes it)."""
        self.row_user: tuple[User, list[Any]] | None = None
        """The last user :meth:`snapshot` stored and their stored form, reused while the user is the same."""
        self.compiled = compiled
        self.state = compiled.flow.initial
        self.user = user
        self.data = data
        self.stack: list[dict[str, Any]] = []
        """The flows that started sub-flows, innermost last (flow, version, state, data)."""
        self.locale: str | None = None
        """The language of the user's last event, if the adapter knew it."""
        self.history: list[str] = []
        """The questions answered so far, for ``back``."""
        self.attempts = 0
        """Invalid answers to the current question (reset when a question is entered)."""
        self.started = False
        """Whether the first event started the flow (a later event is input, not the start)."""
        self.deferred: list[Event] = []
        """Messages that came while the flow was busy, read when it ends."""
        self.scope = StateScope()
        """What the current state entry armed (timer, task, topic, progress message)."""
        self.busy = False
        self.queue: collections.deque[tuple[Event | Internal, asyncio.Future[None]]] | None = None
        self.stored = False
        """Whether the store may hold a row for it; one that never waited (``!hi``) ends without a write."""
        self.event: Event | None = None
        """The last user event, for locale and attachments."""

    @property
    def spec(self) -> model.State | None:
        """The definition of the current state (``None`` at the end)."""
        return self.compiled.flow.states.get(self.state)

    @property
    def epoch(self) -> int:
        """The number of the current state entry (:attr:`StateScope.epoch`)."""
        return self.scope.epoch

    def context(self) -> Mapping[str, Any]:
        """What templates and conditions read: the data, plus ``data``, ``user`` and ``locale``."""
        return {
            **self.data,
            'data': self.data,
            'user': {'id': self.user.id, 'name': self.user.name},
            'locale': self.locale or '',
        }

    def snapshot(self) -> StoredConversation:
        """The row the store keeps for this conversation (scope fields and deferred messages included).

        Fields at their initial value are left out of ``extra``, as earlier versions did.
        """
        extra: dict[str, Any] = self.scope.persisted()  # a new table, written once per step: no comprehension
        if self.locale:
            extra['locale'] = self.locale
        if self.history:
            extra['history'] = list(self.history)
        if self.attempts:
            extra['attempts'] = self.attempts
        if self.started:
            extra['started'] = self.started
        if self.deferred:
            extra['deferred'] = [stored_message(m) for m in self.deferred]
        user = self.user
        cached = self.row_user
        if cached is None or cached[0] is not user:  # users are immutable: same object, same stored form
            cached = self.row_user = (user, [user.id, user.name, sorted(user.roles), user.guild])
        extra['user'] = cached[1]
        compiled = self.compiled
        return StoredConversation(  # by position (key, flow, version, state, data, stack, deadline, extra, guild)
            self.row_key,
            compiled.name,
            compiled.version,
            self.state,
            self.data,
            self.stack,
            self.scope.deadline,
            extra,
            user.guild,
        )

    @classmethod
    def restore(cls, key: ConversationKey, compiled: CompiledFlow, row: StoredConversation) -> Conversation:
        """A conversation back from its row (:meth:`snapshot`), its scope's timer and task not armed yet.

        :param compiled: the flow version ``row`` names (the caller looks it up or rebuilds it).
        """
        conv = cls(key, compiled, stored_user(row, key.user), row.data)
        extra = dict(row.extra)
        conv.state, conv.stack, conv.scope.deadline, conv.stored = row.state, row.stack, row.deadline, True
        conv.scope.restore(extra)
        conv.locale = extra.pop('locale', None) or None
        conv.history = [str(state) for state in extra.pop('history', [])]
        conv.attempts = int(extra.pop('attempts', 0) or 0)
        conv.started = bool(extra.pop('started', False))
        conv.deferred = [stored_event(key, conv.user, stored) for stored in extra.pop('deferred', [])]
        extra.pop('user', None)
        if extra:
            _log.info('conversation %s: stored fields %s are unknown to this version; ignored', key, sorted(extra))
        return conv


def stored_user(row: StoredConversation, fallback: str) -> User:
    """The user a row was saved for (id, name, roles, guild); only ``fallback`` as id when it has none."""
    uid, name, roles, guild = row.extra.get('user') or [fallback, '', [], None]
    return User(str(uid), str(name), frozenset(roles), guild)


def jsonable(value: Any) -> Any:
    """Make a value storable: attachments become tables, paths strings."""
    if isinstance(value, Attachment):
        return {
            'name': value.name,
            'content_type': value.content_type,
            'size': value.size,
            'path': str(value.path) if value.path else None,
            'url': value.url,
            'duration': value.duration,
            'audio': value.is_audio,
        }
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if attrs.has(type(value)):
        return jsonable(attrs.asdict(value, recurse=False))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def attachment(stored: Mapping[str, Any]) -> Attachment:
    """An attachment back from its stored form (:func:`jsonable`)."""
    path = stored.get('path')
    return Attachment(
        name=stored.get('name', ''),
        content_type=stored.get('content_type', 'application/octet-stream'),
        size=stored.get('size', 0),
        path=pathlib.Path(path) if path else None,
        url=stored.get('url'),
        duration=stored.get('duration'),
    )


def store_key(key: ConversationKey) -> str:
    """The store's key of a conversation (adapter, channel and user joined by a unit separator)."""
    return f'{key.adapter}\x1f{key.channel}\x1f{key.user}'


def stored_message(event: Event) -> dict[str, Any]:
    """A deferred message as the store keeps it (only messages are deferred; commands stop a flow)."""
    return {
        'text': getattr(event, 'text', ''),
        'attachments': [jsonable(a) for a in getattr(event, 'attachments', ())],
        'locale': event.locale,
        'message_id': event.message_id,
        'is_dm': event.is_dm,
    }


def stored_event(key: ConversationKey, user: User, stored: Mapping[str, Any]) -> Message:
    """A deferred message back from its stored form (:func:`stored_message`)."""
    return Message(
        key=key,
        user=user,
        text=str(stored.get('text', '')),
        attachments=tuple(attachment(a) for a in stored.get('attachments', [])),
        locale=stored.get('locale'),
        message_id=stored.get('message_id'),
        is_dm=bool(stored.get('is_dm')),
    )
