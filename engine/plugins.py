"""How integrations plug into the engine: a module with ``setup(ctx: SetupContext) -> None``.

``bot.plugins`` in the config lists the modules; each registers its actions, shares services
with the others and may start background work (job pollers) when the engine starts.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from engine.config import Config, ConfigError
from engine.flows.model import Flow
from engine.i18n import _
from engine.states.actions import ActionRegistry, Notifier
from engine.store import Store

__all__ = ['SetupContext', 'load_plugins']

_log = logging.getLogger(__name__)


@attrs.define(kw_only=True)
class SetupContext:
    """What a plugin's ``setup`` receives."""

    config: Config
    actions: ActionRegistry
    store: Store
    notifier: Notifier
    catalog: Callable[[], Sequence[Flow]] = list
    """The active flows (for help texts and command lists)."""
    services: dict[str, Any] = attrs.field(factory=dict)
    """Objects plugins share by name, e.g. ``'speech'`` (recogniser and synthesiser) for voice."""
    on_start: list[Callable[[], Awaitable[None]]] = attrs.field(factory=list)
    """Coroutines run once the engine has restored its conversations (resume polling, ...)."""
    on_stop: list[Callable[[], Awaitable[None]]] = attrs.field(factory=list)


def load_plugins(ctx: SetupContext, names: list[str]) -> None:
    """Import each named module and call its ``setup``.

    :raises ConfigError: a name that cannot be imported (or a module it needs is missing), or a module
        without ``setup``: ``[bot] plugins`` names it, so the configuration is what to fix.
    """
    where = ctx.config.path or 'bot.toml'
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            _log.error('plugin %s cannot be imported: %s', name, exc, exc_info=True)
            raise ConfigError(
                _('{path}: [bot] plugins: {name} cannot be imported: {error}').format(path=where, name=name, error=exc)
            ) from None
        setup = getattr(module, 'setup', None)
        if not callable(setup):
            raise ConfigError(
                _('{path}: [bot] plugins: {name} is not a flowbot plugin (it has no setup(ctx) function)').format(
                    path=where, name=name
                )
            )
        setup(ctx)
