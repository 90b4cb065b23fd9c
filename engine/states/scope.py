"""What one entry into a state armed, owned in one place and disarmed together when it is left.

A conversation gets a new :class:`StateScope` each time it enters a state (or, when the last one
holds nothing, the same one with a new number: :meth:`StateScope.renew`). The scope holds the
state's timer, its action task, the topic it waits on, its progress message and the id of its
action call. :meth:`StateScope.disarm` stops the timer and the task; the engine then forgets the
topic and closes the progress message. The scope's :attr:`~StateScope.epoch` numbers the entry:
an event the state started (an action's result, a timeout) carries it, and one that arrives after
the state was left no longer matches and is dropped.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

__all__ = ['PERSISTED', 'StateScope']

_EPOCHS = itertools.count(1)
"""State entries are numbered across all conversations, so a stale internal event of an ended
conversation can never match a new conversation on the same key."""

PERSISTED = ('topic', 'progress_id', 'call')
"""Scope fields stored with a waiting conversation, under these names (a restart re-arms them)."""


class StateScope:
    """The resources of one state entry; see the module docs."""

    __slots__ = (
        'call',
        'deadline',
        'epoch',
        'progress_at',
        'progress_flush',
        'progress_id',
        'progress_pending',
        'progress_sending',
        'task',
        'timer',
        'topic',
    )

    def __init__(self) -> None:
        self.epoch = next(_EPOCHS)
        """This entry's number; events of earlier entries do not match it."""
        self.deadline: float | None = None
        """Wall-clock time of the state's timeout, persisted so a restart re-arms it."""
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        """The ``call`` state's action."""
        self.topic: str | None = None
        """What a ``wait`` state waits on."""
        self.progress_id: str | None = None
        """The progress message shown while the state works, edited in place."""
        self.progress_at = 0.0
        """When the progress message was last edited (monotonic), for rate limiting."""
        self.progress_sending = False
        """The first progress message is on its way (updates meanwhile wait in ``progress_pending``)."""
        self.progress_pending: str | None = None
        """The newest update held back by the rate limit; shown when the interval is over, so the
        message always ends on the latest text (a worker taking a task, a last percentage)."""
        self.progress_flush: asyncio.TimerHandle | None = None
        """The timer that shows ``progress_pending``."""
        self.call: str | None = None
        """The id of the action call, kept when a restart runs it again (its idempotency key)."""

    def renew(self) -> bool:
        """Number the next state entry in this scope when it holds nothing to disarm (the common step: a
        question without a timeout answered), so a step makes no new scope; ``False`` when it holds something
        (the caller then disarms it and starts a new one, as whatever was started still refers to this one).

        ``progress_at`` and ``progress_pending`` need no reset: they are read only while a progress message
        or its flush exists, which this scope has none of.
        """
        if (
            self.timer is None
            and self.task is None
            and self.topic is None
            and self.deadline is None
            and self.progress_id is None
            and self.progress_flush is None
            and self.call is None
            and not self.progress_sending
        ):
            self.epoch = next(_EPOCHS)
            return True
        return False

    def disarm(self) -> None:
        """Stop the timers and the task (unless the task is the one leaving: it ends by itself)."""
        for handle in (self.timer, self.progress_flush):
            if handle is not None:
                handle.cancel()
        self.timer = self.progress_flush = None
        self.progress_pending = None
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self.task = None

    def persisted(self) -> dict[str, Any]:
        """The fields a stored conversation keeps (see :data:`PERSISTED`), those that are set."""
        stored: dict[str, Any] = {}  # written on every step: plain tests, no comprehension over getattr
        if self.topic is not None:
            stored['topic'] = self.topic
        if self.progress_id is not None:
            stored['progress_id'] = self.progress_id
        if self.call is not None:
            stored['call'] = self.call
        return stored

    def restore(self, stored: dict[str, Any]) -> None:
        """Take back :meth:`persisted` fields, removing them from ``stored``."""
        for name in PERSISTED:
            value = stored.pop(name, None)
            if value is not None:
                setattr(self, name, value)
