"""A stand-in ``model.chat`` for voice tests: answers every message with one fixed sentence, records what it got."""

from __future__ import annotations

from typing import Any

from engine.plugins import SetupContext
from engine.states.actions import ActionContext

__all__ = ['REPLY', 'setup']

REPLY = '감사합니다'


def setup(ctx: SetupContext) -> None:
    heard: list[tuple[str, str]] = []
    ctx.services['heard'] = heard

    async def chat(action: ActionContext, *, text: str) -> dict[str, Any]:
        """Record who said ``text`` and answer with :data:`REPLY`."""
        heard.append((action.user.id, text))
        return {'reply': REPLY}

    ctx.actions.add('model.chat', chat)
