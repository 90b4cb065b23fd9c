"""The action registry: the only Python a flow can reach.

A ``call`` state names an action; the name resolves here and nowhere else, so a flow file can
never import or call arbitrary code. The engine and integrations fill the registry at start-up.
"""

from __future__ import annotations

import inspect
import logging
import pathlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs

from engine.api import Adapter, Attachment, ConversationKey, User
from engine.errors import UserError

__all__ = [
    'Action',
    'ActionContext',
    'ActionError',
    'ActionFn',
    'ActionRegistry',
    'Notifier',
    'NullNotifier',
]

_log = logging.getLogger(__name__)


class ActionError(UserError):
    """An expected failure whose message is fit to show the user (bad input, service down)."""


class Notifier(Protocol):
    """What long-running work uses to reach ``wait`` states: the engine implements it."""

    async def notify(self, topic: str, payload: Mapping[str, Any] | None = None) -> int:
        """Resume every conversation waiting on ``topic``; return how many were resumed."""

    async def progress(self, topic: str, text: str) -> list[str]:
        """Update the progress message of every conversation waiting on ``topic``; return their ids."""

    async def post(
        self, place: Mapping[str, Any], text: str, *, files: Sequence[str] = (), edit: str | None = None
    ) -> str | None:
        """Send to ``place`` (``adapter``, ``channel``, ``user``) outside any conversation, mentioning the
        user, or edit message ``edit`` there; ``None`` while that adapter is not connected."""

    def owns(self, place: Mapping[str, Any]) -> bool:
        """Whether this process watches work reporting to ``place`` (with shards, only its own guilds')."""


class NullNotifier:
    """A notifier with nobody waiting: for setting up a plugin without an engine (a plugin's own tests)."""

    async def notify(self, topic: str, payload: Mapping[str, Any] | None = None) -> int:
        """Wake nobody: no conversation waits here.

        :returns: 0, the number of conversations notified.
        """
        return 0

    async def progress(self, topic: str, text: str) -> list[str]:
        """Show progress to nobody.

        :returns: no message ids.
        """
        return []

    def owns(self, place: Mapping[str, Any]) -> bool:
        """Claim every place, so a plugin without an engine still delivers what it holds (to nobody)."""
        return True

    async def post(
        self, place: Mapping[str, Any], text: str, *, files: Sequence[str] = (), edit: str | None = None
    ) -> str | None:
        """Post nowhere.

        :returns: ``None``: no message was sent.
        """
        return None


@attrs.define(kw_only=True)
class ActionContext:
    """What an action may see of the conversation that called it."""

    key: ConversationKey
    user: User
    adapter: Adapter
    data: Mapping[str, Any]
    """The conversation's saved values (read-only by convention; return values instead)."""
    attachments: Sequence[Attachment] = ()
    """Attachments of the event that led here (downloaded by the adapter)."""
    locale: str = 'en'
    workdir: pathlib.Path | None = None
    """A per-conversation temporary folder, deleted when the conversation ends."""
    progress: Callable[[str], Awaitable[None]] | None = None
    """Edit this conversation's progress message in place (rate-limited by the engine)."""
    flow: str = ''
    state: str = ''
    call_id: str = ''
    """Stable across a re-run of the same call after a restart: an idempotency key for actions with
    side effects (``model.train`` adopts the job this call already started instead of starting another)."""

    async def report(self, text: str) -> None:
        """Show progress if the caller can; a no-op otherwise."""
        if self.progress is not None:
            await self.progress(text)


ActionFn = Callable[..., Awaitable[Any]]
"""``async def action(ctx: ActionContext, **args) -> JSON-serialisable value``."""


@attrs.frozen
class Action:
    """A registered action: its callable and what lint needs to check a ``call`` against it."""

    name: str
    fn: ActionFn
    description: str = ''
    params: frozenset[str] | None = None
    """Accepted argument names; ``None`` when it takes ``**kwargs``."""
    required: frozenset[str] = frozenset()


class ActionRegistry:
    """An allowlist of named actions."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def add(self, name: str, fn: ActionFn, *, description: str = '', replace: bool = False) -> Action:
        """Register ``fn`` under ``name``; its keyword parameters become the accepted arguments.

        :param replace: allow overriding an existing action (tests and canned results do).
        """
        if not (inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)):
            raise TypeError(f'action {name!r} must be an async function')
        if name in self._actions and not replace:
            raise ValueError(f'action {name!r} is registered twice')
        params, required = _signature(fn)
        action = Action(name, fn, description or (inspect.getdoc(fn) or '').split('\n')[0], params, required)
        self._actions[name] = action
        return action

    def action(self, name: str, *, description: str = '') -> Callable[[ActionFn], ActionFn]:
        """Decorator form of :meth:`add`."""

        def register(fn: ActionFn) -> ActionFn:
            self.add(name, fn, description=description)
            return fn

        return register

    def get(self, name: str) -> Action | None:
        """The action registered as ``name``, or ``None``, so a caller can say which name is unknown."""
        return self._actions.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._actions))

    def __len__(self) -> int:
        return len(self._actions)

    def signatures(self) -> dict[str, tuple[frozenset[str] | None, frozenset[str]]]:
        """Each action's accepted and required arguments: all lint needs, picklable for a lint process."""
        return {name: (a.params, a.required) for name, a in self._actions.items()}

    @classmethod
    def from_signatures(cls, signatures: Mapping[str, tuple[frozenset[str] | None, frozenset[str]]]) -> ActionRegistry:
        """A registry that lint can check against, whose actions cannot be run."""
        registry = cls()
        for name, (params, required) in signatures.items():
            registry._actions[name] = Action(name, _not_runnable, '', params, required)
        return registry

    def copy(self) -> ActionRegistry:
        """A registry with the same actions, to add to without changing this one."""
        clone = ActionRegistry()
        clone._actions = dict(self._actions)
        return clone


async def _not_runnable(ctx: ActionContext, **args: Any) -> Any:
    raise ActionError('this action is only known by its signature here')


def _signature(fn: ActionFn) -> tuple[frozenset[str] | None, frozenset[str]]:
    params = list(inspect.signature(fn).parameters.values())[1:]  # the first is the context
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None, frozenset()
    names = frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    required = frozenset(
        p.name for p in params if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
    return names, required
