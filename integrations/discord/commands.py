"""Slash commands generated from flow triggers, registered with lightbulb and synced only when they change.

Every flow with ``trigger.command`` becomes one slash command, under its command name. Discord has no
aliases, and a second entry per alias would only crowd the slash menu with duplicates, so aliases stay
prefix-only (``!hello`` works, ``/hello`` does not exist). :class:`CommandSpec` is the Discord-neutral
description shared with prefix commands (:mod:`.prefix`). :class:`SlashCommands` keeps the lightbulb
registrations in step with the engine's flows and skips the sync (no REST call at all) while the hash of the
command set equals the one Discord already has (the bot keeps it in the store across restarts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import types
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import attrs
import hikari
import lightbulb

from engine.flows.model import OptionSpec, Trigger, localize

__all__ = [
    'CommandSpec',
    'FlowLike',
    'InvokeHandler',
    'SlashCommands',
    'command_set_hash',
    'command_specs',
    'discord_locale',
    'slash_builder',
]

_log = logging.getLogger(__name__)

_NAME_RX = re.compile(r'^[-_\w]{1,32}$')

OPTION_TYPES: dict[str, hikari.OptionType] = {
    'string': hikari.OptionType.STRING,
    'integer': hikari.OptionType.INTEGER,
    'number': hikari.OptionType.FLOAT,
    'boolean': hikari.OptionType.BOOLEAN,
    'attachment': hikari.OptionType.ATTACHMENT,
    'user': hikari.OptionType.USER,
    'channel': hikari.OptionType.CHANNEL,
}

_LOCALES = {locale.value: locale for locale in hikari.Locale}
_SHORT = {'en': 'en-US', 'es': 'es-ES', 'pt': 'pt-BR', 'sv': 'sv-SE', 'zh': 'zh-CN'}


class FlowLike(Protocol):
    """What commands need of an engine flow (``engine.flows.model.Flow`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def trigger(self) -> Trigger: ...


def discord_locale(lang: str) -> hikari.Locale | None:
    """Discord's locale for a flow language key (``ru``, ``en``, ``pt-BR``); ``None`` if Discord has none."""
    return _LOCALES.get(lang) or _LOCALES.get(_SHORT.get(lang, ''))


@attrs.frozen
class CommandSpec:
    """One invocable command name and what it means.

    :param name: the name typed or picked (the command or an alias).
    :param command: the flow's canonical command name, which the engine receives.
    """

    name: str
    command: str
    flow: str
    trigger: Trigger

    @property
    def options(self) -> list[OptionSpec]:
        return list(self.trigger.options)

    @property
    def is_alias(self) -> bool:
        return self.name != self.command


def command_specs(flows: Iterable[FlowLike]) -> list[CommandSpec]:
    """Command specs of every flow with a command trigger, sorted by name; invalid or duplicate names are
    logged and skipped (Discord would reject the whole set)."""
    specs: dict[str, CommandSpec] = {}
    for flow in flows:
        trigger = flow.trigger
        if not trigger.command:
            continue
        for name in [trigger.command, *trigger.aliases]:
            if not _NAME_RX.match(name) or name != name.lower():
                _log.warning(
                    'flow %s: command name %r is not valid on Discord (1-32 lowercase letters, digits, '
                    '- or _); skipped',
                    flow.name,
                    name,
                )
                continue
            if name in specs:
                _log.warning(
                    'flow %s: command %r is already taken by flow %s; skipped', flow.name, name, specs[name].flow
                )
                continue
            specs[name] = CommandSpec(name=name, command=trigger.command, flow=flow.name, trigger=trigger)
    return [specs[n] for n in sorted(specs)]


def _texts(text: Any, limit: int, fallback: str) -> tuple[str, dict[hikari.Locale, str]]:
    default = (localize(text, 'en') or fallback)[:limit]
    locs: dict[hikari.Locale, str] = {}
    if isinstance(text, dict):
        for lang, value in text.items():
            locale = discord_locale(lang)
            if locale is not None and value:
                locs[locale] = str(value)[:limit]
    return default, locs


def _option(spec: OptionSpec) -> hikari.CommandOption:
    description, description_locs = _texts(spec.description, 100, spec.name)
    name_locs = {loc: n for lang, n in spec.name_localizations.items() if (loc := discord_locale(lang)) is not None}
    choices = None
    if spec.choices and spec.type in ('string', 'integer', 'number'):
        choices = [hikari.CommandChoice(name=str(c)[:100], value=c) for c in spec.choices[:25]]
    return hikari.CommandOption(
        type=OPTION_TYPES[spec.type],
        name=spec.name,
        description=description,
        is_required=spec.is_required,
        choices=choices,
        name_localizations=name_locs,  # type: ignore[arg-type]
        description_localizations=description_locs,  # type: ignore[arg-type]
    )


def slash_builder(spec: CommandSpec) -> hikari.impl.SlashCommandBuilder:
    """The Discord command for ``spec``: required options first (Discord insists), localized texts,
    and no DM context when the flow refuses direct messages."""
    description, description_locs = _texts(spec.trigger.description, 100, spec.flow)
    builder = hikari.impl.SlashCommandBuilder(name=spec.name, description=description)
    builder.set_description_localizations(description_locs)  # type: ignore[arg-type]
    options = sorted(spec.options, key=lambda o: not o.is_required)
    for option in options[:25]:
        builder.add_option(_option(option))
    contexts = [hikari.ApplicationContextType.GUILD]
    if spec.trigger.dm:
        contexts += [hikari.ApplicationContextType.BOT_DM, hikari.ApplicationContextType.PRIVATE_CHANNEL]
    builder.set_context_types(contexts)
    return builder


def _canonical(builder: hikari.impl.SlashCommandBuilder) -> dict[str, Any]:
    return {
        'name': builder.name,
        'description': builder.description,
        'description_localizations': {str(k): v for k, v in sorted(builder.description_localizations.items())},
        'contexts': sorted(int(c) for c in builder.context_types or ()),
        'options': [
            {
                'type': int(o.type),
                'name': o.name,
                'description': o.description,
                'required': o.is_required,
                'choices': [[c.name, c.value] for c in o.choices or ()],
                'name_localizations': {str(k): v for k, v in sorted(o.name_localizations.items())},
                'description_localizations': {str(k): v for k, v in sorted(o.description_localizations.items())},
            }
            for o in builder.options
        ],
    }


def command_set_hash(specs: Sequence[CommandSpec], guild_ids: Sequence[int] = ()) -> str:
    """A stable digest of everything Discord would be told; equal digests mean nothing to sync."""
    payload = {'guilds': sorted(guild_ids), 'commands': [_canonical(slash_builder(s)) for s in specs]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


InvokeHandler = Callable[[lightbulb.Context, CommandSpec], Awaitable[None]]
"""Called by every generated command with lightbulb's context and the command's spec."""


def _command_class(spec: CommandSpec, handler: InvokeHandler) -> type[lightbulb.SlashCommand]:
    """A lightbulb command class for ``spec`` whose builder comes from :func:`slash_builder`."""

    async def invoke(self: lightbulb.SlashCommand, ctx: lightbulb.Context) -> None:
        await handler(ctx, spec)

    async def as_command_builder(
        cls: type[lightbulb.SlashCommand], default_locale: hikari.Locale, provider: Any
    ) -> hikari.api.CommandBuilder:
        return slash_builder(spec)

    def body(ns: dict[str, Any]) -> None:
        ns['invoke'] = lightbulb.invoke(invoke)
        ns['as_command_builder'] = classmethod(as_command_builder)

    description, _ = _texts(spec.trigger.description, 100, spec.flow)
    kwds = {'name': spec.name, 'description': description}
    return types.new_class(f'Flow_{spec.name}', (lightbulb.SlashCommand,), kwds, body)


class SlashCommands:
    """Keeps lightbulb's registered commands equal to the flows' triggers.

    :param client: the lightbulb client (its ``sync_commands`` flag is driven from here).
    :param handler: what every command invocation calls.
    :param guild_ids: register per guild instead of globally.
    :param synced_hash: the hash of the set Discord already has (e.g. persisted from the last run).
    """

    def __init__(
        self,
        client: lightbulb.Client,
        handler: InvokeHandler,
        *,
        guild_ids: Sequence[int] = (),
        synced_hash: str | None = None,
    ) -> None:
        self.client = client
        self.handler = handler
        self.guild_ids = list(guild_ids)
        self.synced_hash = synced_hash
        self.specs: dict[str, CommandSpec] = {}
        self._classes: list[type[lightbulb.SlashCommand]] = []

    async def update(self, flows: Iterable[FlowLike]) -> bool:
        """Register the flows' commands; sync with Discord only if the set changed. Return whether it synced."""
        every = command_specs(flows)
        specs = [spec for spec in every if not spec.is_alias]
        digest = command_set_hash(specs, self.guild_ids)
        for cls in self._classes:
            self.client.unregister(cls)
        self._classes = [_command_class(spec, self.handler) for spec in specs]
        self.specs = {spec.name: spec for spec in every}
        """Every name a prefix command may use: commands and aliases."""
        for cls in self._classes:
            if self.guild_ids:
                self.client.register(cls, guilds=self.guild_ids, global_=False)
            else:
                self.client.register(cls, global_=True)
        changed = digest != self.synced_hash
        self.client.sync_commands = changed
        try:
            await self.client.sync_application_commands()
        except hikari.HikariError:
            _log.exception('syncing %d slash command(s) with Discord failed; they stay as they were', len(specs))
            raise
        if changed:
            _log.info(
                'synced %d slash command(s) (%s)',
                len(specs),
                'guilds ' + str(self.guild_ids) if self.guild_ids else 'global',
            )
            self.synced_hash = digest
        return changed
