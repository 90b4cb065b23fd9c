"""The incoming half of Discord: a ``hikari.GatewayBot`` with a lightbulb 3 client, events -> engine.

:class:`DiscordBot` turns slash commands (lightbulb), prefix commands and free messages
(MESSAGE_CREATE read from the raw gateway payload, :mod:`.incoming`) and button presses (``InteractionCreateEvent``) into ``engine.api`` events and
awaits ``engine.dispatch``; replies come back through :class:`~.adapter.DiscordAdapter`.
:func:`serve` is the entry point: ``await serve(engine, config)`` runs until the bot is stopped.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import hikari
import lightbulb

from engine import i18n
from engine.api import Adapter, Attachment, ChoicePress, Command, ConversationKey, Event, Message, User
from engine.config import Config
from engine.i18n import _
from engine.shutdown import close_within

from . import codec
from .adapter import DiscordAdapter, VoiceControl, parse_custom_id
from .attachments import AttachmentError, Downloads
from .commands import CommandSpec, FlowLike, SlashCommands
from .config import DiscordConfig, load_discord_config
from .incoming import IncomingMessage, read_message
from .prefix import PrefixCommand, UsageError, check_arguments, find_command, typed_options

__all__ = ['CACHE', 'INTENTS', 'PERMISSIONS', 'DiscordBot', 'EngineLike', 'describe_failure', 'invite_url', 'serve']

_log = logging.getLogger(__name__)

_SYNCED = 'discord_commands'
"""Store record kind: per application id, the hash of the command set Discord has."""

_GUILD_EVENTS = frozenset({'GUILD_CREATE', 'GUILD_UPDATE', 'GUILD_DELETE'})

INTENTS = (
    hikari.Intents.GUILDS
    | hikari.Intents.GUILD_MESSAGES
    | hikari.Intents.DM_MESSAGES
    | hikari.Intents.MESSAGE_CONTENT
    | hikari.Intents.GUILD_VOICE_STATES
)

PERMISSIONS = (
    hikari.Permissions.VIEW_CHANNEL
    | hikari.Permissions.SEND_MESSAGES
    | hikari.Permissions.SEND_MESSAGES_IN_THREADS
    | hikari.Permissions.ATTACH_FILES
    | hikari.Permissions.READ_MESSAGE_HISTORY
    | hikari.Permissions.CONNECT
    | hikari.Permissions.SPEAK
    | hikari.Permissions.SEND_VOICE_MESSAGES
)
"""What the invite link asks for: read and answer in channels and threads, send files and voice messages,
quote earlier messages (corrections), join and speak in voice channels."""

CACHE = (
    hikari.api.CacheComponents.GUILDS
    | hikari.api.CacheComponents.GUILD_CHANNELS
    | hikari.api.CacheComponents.VOICE_STATES
    | hikari.api.CacheComponents.ME
)
"""What the bot reads from hikari's cache: its servers, a channel's guild, who sits in voice, its own user (the rest,
such as every message and member, would be stored per event for nothing). A server's preferred locale is read from
the raw guild events instead (:meth:`DiscordBot._note_guild`)."""


class RecordStore(Protocol):
    """The part of ``engine.store.Store`` the bot uses: small records (the synced command hash)."""

    async def put_record(self, kind: str, record_id: str, data: Mapping[str, Any]) -> None: ...

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None: ...


class EngineLike(Protocol):
    """What the bot needs of ``engine.runtime.Engine``."""

    on_flows_changed: list[Callable[[], Awaitable[None]]]

    @property
    def store(self) -> RecordStore: ...

    async def dispatch(self, event: Event) -> None: ...

    def flows(self) -> Sequence[FlowLike]: ...

    def add_adapter(self, adapter: Adapter) -> None: ...

    def may_start(
        self, command: str, key: ConversationKey, user: User, *, is_dm: bool, locale: str | None = None
    ) -> str | None: ...


VoiceFactory = Callable[[hikari.GatewayBot], VoiceControl | None]
"""Builds the voice manager for a started bot; returning ``None`` turns voice off."""


def _default_voice(bot: hikari.GatewayBot, idle_timeout: float) -> VoiceControl:
    from integrations.discord.voice import VoiceManager

    return VoiceManager(bot, idle_timeout=idle_timeout)


class DiscordBot:
    """One bot: gateway, lightbulb client, adapter and command sync, wired to an engine.

    :param engine: the engine (``dispatch``, ``flows``, ``add_adapter``, ``on_flows_changed``).
    :param token: overrides the configured token (tests).
    :param voice: builds the voice manager from the bot; default :class:`~integrations.discord.voice.manager.VoiceManager`.
    :param hikari_options: passed to ``hikari.GatewayBot`` (``banner``, ``logs``, ...).
    """

    def __init__(
        self,
        engine: EngineLike,
        config: DiscordConfig,
        *,
        token: str | None = None,
        voice: VoiceFactory | None = None,
        **hikari_options: Any,
    ) -> None:
        self.engine = engine
        self.config = config
        options: dict[str, Any] = {
            'banner': None,
            'http_settings': hikari.impl.HTTPSettings(force_close_transports=not config.reuse_connections),
            'cache_settings': hikari.impl.CacheSettings(components=CACHE),
            'dumps': codec.dumps,  # orjson: JSON was a tenth of the CPU per command with the standard library's
            'loads': codec.loads,
            **hikari_options,
        }
        self.bot = hikari.GatewayBot(
            token or config.resolved_token(), intents=INTENTS, rest_url=config.rest_url, **options
        )
        self.client = lightbulb.client_from_app(self.bot, sync_commands=False)
        root = pathlib.Path(config.download_dir) if config.download_dir else None
        downloads = (
            Downloads(config.max_attachment_bytes, config.allowed_content_types, root)
            if root is not None
            else Downloads(config.max_attachment_bytes, config.allowed_content_types)
        )
        self.adapter = DiscordAdapter(self.bot.rest, config, downloads, cache=self.bot.cache)
        self.adapter.on_heard = self._on_heard
        self.commands = SlashCommands(self.client, self._on_slash, guild_ids=config.guild_ids)
        self._voice_factory = voice
        self.application_id: int | None = None
        self._own_id: int | None = None
        self._guild_locales: dict[int, str | None] = {}
        """Each server's preferred locale, from its GUILD_CREATE and GUILD_UPDATE (:meth:`_note_guild`)."""
        # the raw payload, not MessageCreateEvent: with no listener for it hikari builds no Message entity
        self.bot.subscribe(hikari.ShardPayloadEvent, self._on_payload)
        self.bot.subscribe(hikari.InteractionCreateEvent, self._on_interaction)
        engine.add_adapter(self.adapter)
        engine.on_flows_changed.append(self.flows_changed)

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self, **start_options: Any) -> None:
        """Connect every shard, start lightbulb and sync the commands of the engine's flows."""
        start_options.setdefault('check_for_updates', False)
        if self.config.shard_count is not None:
            start_options.setdefault('shard_count', self.config.shard_count)
            start_options.setdefault('shard_ids', self.config.shard_ids)
        await self.bot.start(**start_options)
        self.adapter.voice = (
            self._voice_factory(self.bot)
            if self._voice_factory
            else _default_voice(self.bot, self.config.voice_idle_timeout)
        )
        application = await self.bot.rest.fetch_application()
        self.application_id = int(application.id)
        record = await self.engine.store.get_record(_SYNCED, str(self.application_id))
        self.commands.synced_hash = record.get('hash') if record else None
        await self.client.start()
        await self._sync_commands()

    async def flows_changed(self) -> None:
        """Engine hot reload: re-register commands, sync only if the set changed."""
        await self._sync_commands()

    async def _sync_commands(self) -> None:
        """Register the flows' commands; after a sync keep its hash, so the next start does not sync again."""
        if await self.commands.update(self.engine.flows()) and self.application_id is not None:
            await self.engine.store.put_record(_SYNCED, str(self.application_id), {'hash': self.commands.synced_hash})

    async def close(self) -> None:
        """Stop everything the bot started; each step is bounded (:mod:`engine.shutdown`), so one that hangs
        (the gateway's close handshake under load, a voice channel) cannot keep the process from exiting."""
        if self.flows_changed in self.engine.on_flows_changed:
            self.engine.on_flows_changed.remove(self.flows_changed)
        await close_within(self.client.stop(), 'stopping the lightbulb client')
        await close_within(self.adapter.aclose(), 'cancelling the Discord adapter work')
        if self.adapter.voice is not None:
            await close_within(self.adapter.voice.close(), 'leaving the voice channels')
        if self.bot.is_alive:  # a start cut short before hikari began has nothing to close
            await close_within(self.bot.close(), 'closing the Discord gateway')
        await close_within(self.adapter.downloads.aclose(), 'closing the attachment downloads')

    # -- helpers ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _user(user: hikari.User, member: Any, guild_id: hikari.Snowflake | None) -> User:
        roles = frozenset(str(r) for r in getattr(member, 'role_ids', ()) or ())
        name = getattr(member, 'display_name', None) or user.global_name or user.username
        return User(id=str(user.id), name=name, roles=roles, guild=str(guild_id) if guild_id else None)

    def _locale(self, guild_id: int | None, user_locale: object = None) -> str | None:
        """The reply locale: the user's (interactions carry it), else the server's preferred one, else ``None``
        (the engine then uses ``bot.language``); also made the language of messages built before the engine runs."""
        locale = str(user_locale) if user_locale else None
        if locale is None and guild_id is not None:
            locale = self._guild_locales.get(guild_id)
        i18n.enter(locale)
        return locale

    def _note_guild(self, name: str, payload: Mapping[str, Any]) -> None:
        """Keep a server's preferred locale as its guild events tell it: read on every message, it was taken
        from hikari's cache, which copies the whole guild entity on each read (5 us per message)."""
        try:
            guild_id = int(payload['id'])
        except (KeyError, TypeError, ValueError):
            _log.warning('%s without a guild id, ignored', name)
            return
        if payload.get('unavailable'):  # an outage (GUILD_CREATE or GUILD_DELETE): what is known stays, as in hikari
            return
        if name != 'GUILD_DELETE':
            locale = payload.get('preferred_locale')
            if locale is not None and not isinstance(locale, str):
                _log.warning('%s of guild %s: preferred_locale %r is no text, ignored', name, guild_id, locale)
                locale = None
            self._guild_locales[guild_id] = locale or None
        else:  # left or removed
            self._guild_locales.pop(guild_id, None)

    def _is_own(self, author_id: int) -> bool:
        """Whether the bot wrote it; its id is kept once known (``get_me`` copies the user from hikari's cache on
        every call, a hundredth of the CPU per command)."""
        if self._own_id is None:
            me = self.bot.get_me()
            self._own_id = int(me.id) if me is not None else None
        return author_id == self._own_id

    async def _dispatch(self, event: Event) -> None:
        try:
            await self.engine.dispatch(event)
        except Exception:
            _log.exception('engine failed on %s from %s', type(event).__name__, event.key)

    async def _refuse(self, key: ConversationKey, text: str) -> None:
        """Tell the user alone why their message, command or press was not taken (ephemeral where possible)."""
        try:
            await self.adapter.send_notice(key, text)
        except hikari.HikariError:
            _log.exception('cannot tell %s: %s', key, text)

    # -- messages: prefix commands and free messages ---------------------------------------------------------------

    async def _on_payload(self, event: hikari.ShardPayloadEvent) -> None:
        name = event.name
        if name == 'MESSAGE_CREATE':
            try:
                message = read_message(event.payload)
            except (KeyError, TypeError, ValueError):
                _log.exception('MESSAGE_CREATE without the fields of a message, ignored: %r', event.payload.get('id'))
                return
            await self._on_message(message)
        elif name in _GUILD_EVENTS:
            self._note_guild(name, event.payload)

    async def _on_message(self, message: IncomingMessage) -> None:
        if self._is_own(message.author_id):
            return
        self.adapter.note_message(message.channel_id, message.id)
        if not message.is_human:
            return
        is_dm = message.guild_id is None
        if is_dm and self.config.dm_policy == 'deny':
            return
        key = ConversationKey('discord', str(message.channel_id), str(message.author_id))
        self.adapter.note_event(key, message.guild_id)
        locale = self._locale(message.guild_id)  # messages carry no user locale: the server's
        common: dict[str, Any] = {
            'key': key,
            'user': message.user,
            'message_id': str(message.id),
            'is_dm': is_dm,
            'locale': locale,
        }
        content = message.content
        remotes = message.remote_files(self.bot.entity_factory)
        command = find_command(content, self.config.prefix, self.commands.specs)
        if command is not None:
            await self._prefix_command(command, remotes, common)
            return
        attachments: list[Attachment] = []
        refused: list[str] = []
        for remote in remotes:
            try:
                attachments.append(await self.adapter.downloads.fetch(key, remote))
            except AttachmentError as exc:
                _log.info('attachment %s of message %s not taken: %s', remote.id, message.id, exc)
                refused.append(str(exc))
        if refused:  # told even when text came with them: the text goes on, the files do not
            await self._refuse(key, '\n'.join(refused))
            if not attachments and not content.strip():
                return
        await self._dispatch(Message(**common, text=content, attachments=attachments))

    async def _prefix_command(
        self, command: PrefixCommand, remotes: Sequence[hikari.Attachment], common: dict[str, Any]
    ) -> None:
        key: ConversationKey = common['key']
        prefix = self.config.prefix
        try:
            options = check_arguments(command, remotes, prefix)
        except UsageError as exc:
            await self._refuse(key, str(exc))
            return
        if remotes and (refused := self.engine.may_start(command.command, key, common['user'], is_dm=common['is_dm'])):
            await self._refuse(key, refused)  # before downloading anything
            return
        attachments: list[Attachment] = []
        for remote in remotes:
            try:
                attachments.append(await self.adapter.downloads.fetch(key, remote))
            except AttachmentError as exc:
                await self._refuse(key, str(exc))
                return
        if attachments:  # the check typed stand-ins for the files; parse again with the downloaded ones
            try:
                options = typed_options(command, attachments, prefix)
            except UsageError as exc:
                await self._refuse(key, str(exc))
                return
        await self._dispatch(Command(**common, name=command.command, options=options, attachments=attachments))

    # -- voice: what listening heard -------------------------------------------------------------------------------

    async def _on_heard(self, guild_id: int, channel_id: int, user_id: int, text: str) -> None:
        """An utterance heard in a voice channel: a message from its speaker in the channel listening was asked in."""
        state = self.bot.cache.get_voice_state(guild_id, user_id)
        member = state.member if state is not None else None
        if member is None:
            _log.info('utterance of user %s in guild %s dropped: not a member in voice', user_id, guild_id)
            return
        if member.is_bot:
            return
        key = ConversationKey('discord', str(channel_id), str(user_id))
        self.adapter.note_event(key, guild_id)
        user = self._user(member.user, member, hikari.Snowflake(guild_id))
        locale = self._locale(guild_id)
        await self._dispatch(Message(key=key, user=user, text=text, is_dm=False, locale=locale))

    # -- slash commands --------------------------------------------------------------------------------------------

    async def _on_slash(self, ctx: lightbulb.Context, spec: CommandSpec) -> None:
        interaction = ctx.interaction
        is_dm = ctx.guild_id is None
        key = ConversationKey('discord', str(ctx.channel_id), str(ctx.user.id))
        locale = self._locale(ctx.guild_id, interaction.locale)
        if is_dm and self.config.dm_policy == 'deny':
            await ctx.respond(_('Direct messages are turned off for this bot.'), ephemeral=True)
            return
        self.adapter.begin_interaction(key, ctx.interaction, int(ctx.guild_id) if ctx.guild_id else None)
        by_name = {o.name: o for o in spec.options}
        user = self._user(ctx.user, ctx.member, ctx.guild_id)
        with_files = any((o := by_name.get(given.name)) is not None and o.type == 'attachment' for given in ctx.options)
        if with_files and (
            refused := self.engine.may_start(spec.command, key, user, is_dm=is_dm, locale=str(interaction.locale))
        ):
            await self._refuse(key, refused)  # before downloading anything
            return
        options: dict[str, Any] = {}
        attachments: list[Attachment] = []
        resolved = interaction.resolved
        for given in ctx.options:
            opt = by_name.get(given.name)
            if opt is None:
                continue
            value: Any = given.value
            if opt.type == 'attachment':
                remote = resolved.attachments.get(hikari.Snowflake(value)) if resolved else None
                if remote is None:
                    await self._refuse(
                        key, _('The file for {option} did not arrive; please attach it again.').format(option=opt.name)
                    )
                    return
                try:
                    value = await self.adapter.downloads.fetch(key, remote)
                except AttachmentError as exc:
                    await self._refuse(key, str(exc))
                    return
                attachments.append(value)
            elif opt.type in ('user', 'channel'):
                value = str(value)
            elif opt.type == 'number':
                value = float(value)
            options[opt.name] = value
        for opt in spec.options:
            if opt.name not in options and opt.default is not None:
                options[opt.name] = opt.default
        await self._dispatch(
            Command(
                key=key,
                user=user,
                name=spec.command,
                options=options,
                attachments=attachments,
                message_id=str(interaction.id),
                locale=locale,
                is_dm=is_dm,
            )
        )

    # -- buttons ---------------------------------------------------------------------------------------------------

    async def _on_interaction(self, event: hikari.InteractionCreateEvent) -> None:
        interaction = event.interaction
        if not isinstance(interaction, hikari.ComponentInteraction):
            return
        parsed = parse_custom_id(interaction.custom_id)
        if parsed is None:
            return
        owner, raw = parsed
        locale = self._locale(interaction.guild_id, interaction.locale)
        try:
            if str(interaction.user.id) != owner:
                await interaction.create_initial_response(
                    hikari.ResponseType.MESSAGE_CREATE,
                    _('This question is for someone else.'),
                    flags=hikari.MessageFlag.EPHEMERAL,
                )
                return
            await interaction.create_initial_response(hikari.ResponseType.MESSAGE_UPDATE, components=[])
        except hikari.HikariError:
            _log.exception('cannot acknowledge button %s on message %s', interaction.custom_id, interaction.message.id)
            return
        key = ConversationKey('discord', str(interaction.channel_id), owner)
        value = self.adapter.choice_value(raw)
        self.adapter.answered(key)
        self.adapter.pressed(key, interaction)  # notices for the presser go back through the press, ephemeral
        try:
            if value is None:
                await self._refuse(key, _('That button has expired; please type your answer.'))
                return
            is_dm = interaction.guild_id is None
            user = self._user(interaction.user, interaction.member, interaction.guild_id)
            await self._dispatch(
                ChoicePress(
                    key=key,
                    user=user,
                    value=value,
                    message_id=str(interaction.message.id),
                    locale=locale,
                    is_dm=is_dm,
                )
            )
        finally:
            self.adapter.pressed(key, None)


def invite_url(application_id: int) -> str:
    """The link that adds the bot to a server with the scopes and permissions it needs."""
    return (
        f'https://discord.com/oauth2/authorize?client_id={application_id}'
        f'&scope=bot+applications.commands&permissions={int(PERMISSIONS)}'
    )


def describe_failure(exc: BaseException) -> str:
    """One plain line for an operator about why the bot could not run (no traceback, no raw close codes)."""
    code = getattr(exc, 'code', None)
    if isinstance(exc, hikari.GatewayServerClosedConnectionError) and code == 4014:
        return _(
            'Discord refused the privileged intent MESSAGE_CONTENT: turn on "Message Content Intent" under Bot -> '
            'Privileged Gateway Intents in the Developer Portal (https://discord.com/developers/applications), '
            'then start again.'
        )
    if isinstance(exc, hikari.UnauthorizedError) or (
        isinstance(exc, hikari.GatewayServerClosedConnectionError) and code == 4004
    ):
        return _(
            'Discord rejected the bot token: check DISCORD_TOKEN (or the token file) in the Developer Portal under Bot.'
        )
    if isinstance(exc, hikari.GatewayServerClosedConnectionError):
        return _('Discord closed the connection (code {code}): {reason}').format(code=code, reason=exc.reason)
    return _('the Discord bot stopped: {error}').format(error=exc)


async def serve(
    engine: EngineLike,
    config: Config | DiscordConfig,
    *,
    announce: Callable[[str], object] | None = None,
    stopping: asyncio.Event | None = None,
    **hikari_options: Any,
) -> None:
    """Run the Discord adapter for ``engine`` until the bot is closed (``stopping``, cancel or ``bot.close()``).

    :param announce: told the invite link once connected (``flowbot run`` prints it).
    :param stopping: set to stop. Unlike a cancellation, which a library can absorb while the bot starts
        (under load a cancel landing as an awaited step completes is lost), it is still seen after the start.
    """
    discord_config = config if isinstance(config, DiscordConfig) else load_discord_config(config)
    bot = DiscordBot(engine, discord_config, **hikari_options)
    try:  # a failed start (a refused intent, a bad token) still closes every session it opened
        await bot.start()
        if announce is not None and bot.application_id is not None:
            announce(
                _('Connected to Discord. Invite the bot to a server: {url}').format(url=invite_url(bot.application_id))
            )
        if stopping is None:
            await bot.bot.join()
        elif not stopping.is_set():
            waits = {asyncio.ensure_future(bot.bot.join()), asyncio.ensure_future(stopping.wait())}
            try:
                done, _pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
            for finished in done:
                finished.result()  # the gateway's error, if it ended on its own
    finally:
        await bot.close()
