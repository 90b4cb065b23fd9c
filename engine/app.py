"""Wiring: config → store, action registry, plugins, flow library and engine, ready to run."""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping, Sequence

import attrs

from engine.config import Config
from engine.files import sendable_roots
from engine.flows.library import FlowLibrary
from engine.flows.loader import FlowError, did_you_mean
from engine.plugins import SetupContext, load_plugins
from engine.reload import FlowReloader
from engine.runtime import Engine
from engine.shipped import flow_folders
from engine.shutdown import close_within
from engine.states.actions import ActionFn, ActionRegistry
from engine.store import Shards, Store, open_store

__all__ = ['SERVING_GC_THRESHOLD', 'App', 'build_app', 'tune_collector']

_log = logging.getLogger(__name__)

SERVING_GC_THRESHOLD = (10_000, 10, 10)
"""The collector's thresholds while serving: the youngest generation every 10,000 net allocations instead of
700. Under a burst, thousands of steps wait for their commit (or their reply) with their frames alive; at 700
the collector kept promoting and walking them (13 full passes per 50,000 durable steps, about a third of the
SQLite benchmark's CPU; 1 pass at 10,000). Cycles are still collected, a few thousand objects later."""


def tune_collector() -> None:
    """Set the garbage collector up for a long-running process, once start-up is done.

    What start-up built (modules, hikari, plugins and their models, compiled flows) lives as long as the
    process: frozen out of the full passes, which otherwise walk it again and again under load; then
    :data:`SERVING_GC_THRESHOLD`.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLD)


@attrs.define
class App:
    """A wired bot (see :func:`build_app`): started and stopped as one, in a fixed order."""

    config: Config
    engine: Engine
    plugins: SetupContext
    reloader: FlowReloader | None = None
    """Watches the flow folders while running, when ``bot.reload`` is on."""

    async def start(self, shards: Shards | None = None) -> None:
        """Open the store, claim the shards this process runs, remember the active flow versions,
        restore conversations (of those shards), start plugin work, watch the flows."""
        await self.engine.store.open()
        if shards is not None:
            await self.engine.store.claim(shards)
        for compiled in self.engine.library.active():
            await self.engine.store.put_flow_version(compiled.name, compiled.version, compiled.flow.source)
        await self.engine.start(shards)
        for hook in self.plugins.on_start:
            await hook()
        if self.config.bot.reload:
            self.reloader = FlowReloader.from_config(self.engine, self.config)
            await self.reloader.start()

    async def stop(self) -> None:
        """Stop in reverse order of :meth:`start`; every step is bounded (:mod:`engine.shutdown`) and a step
        that fails or hangs is logged, then the next one runs: the store is closed whatever came before."""
        if self.reloader is not None:
            await close_within(self.reloader.stop(), 'stopping the flow reloader')
            self.reloader = None
        for hook in self.plugins.on_stop:
            await close_within(hook(), f'plugin stop hook {getattr(hook, "__qualname__", hook)}')
        await close_within(self.engine.stop(), 'stopping the engine')
        await close_within(self.engine.store.close(), 'closing the store')


def build_app(
    config: Config,
    *,
    store: Store | None = None,
    plugins: Sequence[str] | None = None,
    actions: Mapping[str, ActionFn] | None = None,
    engine_type: type[Engine] = Engine,
    load_flows: bool = True,
) -> App:
    """Wire config → store → actions → plugins → flow library → engine: the one place that does it, so the bot,
    ``flowbot lint``, dialog scripts, tests and benchmarks all run what production runs.

    :param store: the store to use; default: the configured one (opened by :meth:`App.start`).
    :param plugins: plugin modules to load instead of ``[bot] plugins`` (tests load fewer).
    :param actions: actions added after the plugins', replacing one of the same name (a test's fakes).
    :param engine_type: the engine class (dialog scripts use one that remembers ended conversations).
    :param load_flows: load the configured flow folders and warn about configuration sections no plugin
        reads, as a bot that is going to run does; ``False`` leaves the library empty for callers that
        check or activate flows of their own (lint, dialog scripts).
    :raises FlowError: a flow file is invalid.
    :raises ConfigError: a configured flow folder does not exist.
    """
    folders = flow_folders(config) if load_flows else []  # first: a missing folder is reported before the store opens
    store = store or open_store(config.store_spec)
    registry = ActionRegistry()
    library = FlowLibrary(
        registry, config.permissions.keys(), languages=config.bot.languages, file_roots=sendable_roots(config)
    )
    engine = engine_type(config=config, store=store, actions=registry, library=library)
    ctx = SetupContext(config=config, actions=registry, store=store, notifier=engine, catalog=engine.flows)
    load_plugins(ctx, list(config.bot.plugins if plugins is None else plugins))
    for name, fn in (actions or {}).items():
        registry.add(name, fn, replace=True)
    if load_flows:
        for name in sorted(config.sections.keys() - config.read_sections):
            hint = did_you_mean(name, config.read_sections)
            _log.warning('%s: section [%s] is not read by any plugin%s; it has no effect', config.path, name, hint)
        problems = library.load(folders)
        if problems:
            raise FlowError(problems)
    return App(config=config, engine=engine, plugins=ctx)
