"""The narrow runtime the state handlers see: what a state may ask of the engine, and nothing else.

:class:`engine.runtime.Engine` implements it. Handlers and :mod:`engine.states.kinds` are typed
against :class:`Runtime`, not the engine, so they import nothing of the runtime (no import cycle)
and a test can drive a state with any object that offers these members.
"""

from __future__ import annotations

import pathlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from engine.api import Adapter
from engine.config import Config
from engine.conversation import Conversation
from engine.files import FileGate
from engine.states.actions import Action

if TYPE_CHECKING:  # annotations only: compiling a flow needs the handlers, which need this protocol
    from engine.flows.compile import CompiledFlow

__all__ = ['Runtime']


class Runtime(Protocol):
    """What state handlers use of the engine."""

    @property
    def config(self) -> Config:
        """The bot's settings (name, default language)."""

    @property
    def files(self) -> FileGate:
        """What a ``say``/``end`` state's files pass before they are sent (inside the allowed folders)."""

    def action(self, name: str) -> Action | None:
        """The registered action ``name`` (``None`` if no plugin provides it)."""

    def flow(self, name: str) -> CompiledFlow | None:
        """The served version of flow ``name`` (to enter it as a sub-flow)."""

    async def compiled_version(self, name: str, version: str) -> CompiledFlow | None:
        """A flow version a conversation started on (to return to it from a sub-flow)."""

    def flows_summary(self) -> list[dict[str, Any]]:
        """The command flows and their options, as templates see them (``flows``)."""

    def adapter(self, conv: Conversation) -> Adapter:
        """The channel the conversation is on."""

    def workdir(self, conv: Conversation) -> pathlib.Path:
        """The conversation's temporary folder (created on first use, removed when it ends)."""

    def save(self, conv: Conversation) -> Awaitable[None]:
        """Persist the conversation as it is (before it waits); done once it is durable."""

    def prefix(self, conv: Conversation) -> str:
        """How commands are written on the conversation's adapter, for templates (``bot.prefix``)."""

    async def move(self, conv: Conversation, trigger: str) -> None:
        """Leave the current state by ``trigger`` and do the work of the states it leads to."""

    def leave_state(self, conv: Conversation) -> None:
        """Disarm the current state's scope before a transition."""

    async def finish(self, conv: Conversation) -> None:
        """End the conversation."""

    def arm(self, conv: Conversation, seconds: float | None) -> None:
        """Start the entered state's timeout."""

    def wait_for(self, conv: Conversation, topic: str) -> None:
        """Resume the conversation when ``topic`` is notified."""

    def start_action(self, conv: Conversation, work: Callable[[], Awaitable[Any]]) -> None:
        """Run ``work`` as a task whose result comes back as an event for the current state."""

    async def show_progress(self, conv: Conversation, text: str) -> None:
        """Show or edit the state's progress message."""

    def text(self, message: str, conv: Conversation, **values: Any) -> str:
        """An engine message from the message table, in the conversation's language."""

    async def reply(self, conv: Conversation, text: str) -> None:
        """Send ``text`` to the conversation."""
