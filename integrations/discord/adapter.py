"""The outgoing half of Discord: :class:`DiscordAdapter` implements ``engine.api.Adapter`` with hikari.

Replies go through the pending slash-command interaction of the conversation while there is one (so the
interaction is answered inside Discord's deadline and the "thinking…" placeholder gets its answer), and as
channel messages otherwise. Long texts are split on line boundaries, very long ones sent as a file; asks get
buttons whose ``custom_id`` carries the owner and the value; progress edits are coalesced per message.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import pathlib
import time
from collections.abc import Sequence
from typing import Any, Protocol

import attrs
import hikari
import lightbulb
from lightbulb.internal.constants import INITIAL_RESPONSE_IDENTIFIER

from engine.api import Adapter, ConversationKey, NotSupportedError, Option
from engine.states.actions import ActionError

from .attachments import Downloads
from .config import DiscordConfig
from .media import voice_message_meta

__all__ = ['CUSTOM_ID_PREFIX', 'DiscordAdapter', 'VoiceControl', 'parse_custom_id', 'split_text']

_log = logging.getLogger(__name__)

CUSTOM_ID_PREFIX = 'fb'
_INTERACTION_TTL = 14 * 60.0
"""Interaction tokens live 15 minutes; after that replies go to the channel."""
_INITIAL = INITIAL_RESPONSE_IDENTIFIER


class VoiceControl(Protocol):
    """The part of ``integrations.discord.voice.manager.VoiceManager`` the adapter uses."""

    async def join(self, guild_id: int, channel_id: int) -> Any: ...

    async def leave(self, guild_id: int) -> Any: ...

    async def speak(self, guild_id: int, path: pathlib.Path) -> Any: ...

    async def close(self) -> None: ...


def split_text(text: str, limit: int = 2000) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at line ends, else at spaces, else anywhere."""
    if len(text) <= limit:  # most replies: one piece, no cuts
        return [text.rstrip('\n') or '\u200b']
    pieces: list[str] = []
    current = ''
    for whole in text.splitlines(keepends=True):
        line = whole
        while len(line) > limit:
            cut = line.rfind(' ', 0, limit) + 1 or limit
            if current:
                pieces.append(current)
                current = ''
            pieces.append(line[:cut])
            line = line[cut:]
        if len(current) + len(line) > limit:
            pieces.append(current)
            current = ''
        current += line
    if current or not pieces:
        pieces.append(current)
    return [p.rstrip('\n') or '\u200b' for p in pieces]


def parse_custom_id(custom_id: str) -> tuple[str, str] | None:
    """``(owner user id, value or #token)`` of a flowbot button, ``None`` for anyone else's component."""
    prefix, sep, rest = custom_id.partition(':')
    owner, sep2, value = rest.partition(':')
    if prefix != CUSTOM_ID_PREFIX or not sep or not sep2 or not owner.isdigit():
        return None
    return owner, value


@attrs.define
class _Pending:
    ctx: lightbulb.Context
    started: float
    timer: asyncio.Task[None] | None = None

    @property
    def fresh(self) -> bool:
        return time.monotonic() - self.started < _INTERACTION_TTL


@attrs.define
class _EditSlot:
    last: float = 0.0
    text: str | None = None
    task: asyncio.Task[None] | None = None


class DiscordAdapter(Adapter):
    """Sends the engine's replies to Discord.

    :param rest: hikari's REST client.
    :param cache: hikari's cache (voice states, channels' guilds); ``None`` disables voice.
    :param downloads: the attachment store, cleaned per conversation.
    :param voice: the voice manager, once the bot has one.
    """

    name = 'discord'

    def __init__(
        self,
        rest: hikari.api.RESTClient,
        config: DiscordConfig,
        downloads: Downloads,
        *,
        cache: hikari.api.Cache | None = None,
        voice: VoiceControl | None = None,
    ) -> None:
        self.rest = rest
        self.config = config
        self.downloads = downloads
        self.cache = cache
        self.voice = voice
        self._pending: dict[ConversationKey, _Pending] = {}
        self._via: collections.OrderedDict[str, lightbulb.Context] = collections.OrderedDict()
        """Message ids sent through an interaction -> its context (edits go through the webhook)."""
        self._open_asks: dict[ConversationKey, int] = {}
        self._values: collections.OrderedDict[str, str] = collections.OrderedDict()
        """``#token`` -> long choice values that do not fit a custom_id."""
        self._guilds: dict[ConversationKey, int | None] = {}
        self._edits: dict[tuple[ConversationKey, str], _EditSlot] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- bookkeeping fed by the bot --------------------------------------------------------------------------------

    def begin_interaction(self, key: ConversationKey, ctx: lightbulb.Context, guild_id: int | None) -> None:
        """Answer the conversation's next replies through ``ctx``; defer it if the engine is slow."""
        self.end_interaction(key)
        pending = _Pending(ctx, time.monotonic())
        self._pending[key] = pending
        self._guilds[key] = guild_id
        pending.timer = self._spawn(self._defer_later(ctx), f'defer {key}')

    def end_interaction(self, key: ConversationKey) -> None:
        pending = self._pending.pop(key, None)
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()

    def note_event(self, key: ConversationKey, guild_id: int | None) -> None:
        """A new message from the user: later replies go to the channel; stale buttons are taken away."""
        self._guilds[key] = guild_id
        self.end_interaction(key)
        message_id = self._open_asks.pop(key, None)
        if message_id is not None:
            self._spawn(self._strip_buttons(int(key.channel), message_id), f'strip buttons {key}')

    def answered(self, key: ConversationKey) -> None:
        """A button of the conversation's ask was pressed (the press already removed the buttons)."""
        self._open_asks.pop(key, None)
        self.end_interaction(key)

    def choice_value(self, raw: str) -> str | None:
        """The choice value a button carries (long values travel as ``#token``)."""
        return self._values.get(raw[1:]) if raw.startswith('#') else raw

    async def _defer_later(self, ctx: lightbulb.Context) -> None:
        await asyncio.sleep(self.config.defer_after)
        try:
            await ctx.defer()
        except hikari.HikariError as exc:
            _log.warning('deferring interaction %s failed: %r', ctx.interaction.id, exc)

    async def _strip_buttons(self, channel: int, message_id: int) -> None:
        try:
            await self.rest.edit_message(channel, message_id, components=[])
        except hikari.HikariError as exc:
            _log.info('removing buttons of message %s in %s failed: %r', message_id, channel, exc)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _interaction(self, key: ConversationKey) -> lightbulb.Context | None:
        pending = self._pending.get(key)
        if pending is None:
            return None
        if not pending.fresh:
            self.end_interaction(key)
            return None
        return pending.ctx

    def _remember(self, message_id: str, ctx: lightbulb.Context) -> None:
        self._via[message_id] = ctx
        while len(self._via) > 10_000:
            self._via.popitem(last=False)

    # -- sending ---------------------------------------------------------------------------------------------------

    async def _post(self, key: ConversationKey, content: str | None = None, **kw: Any) -> str:
        """One message: through the pending interaction when there is one, else to the channel."""
        ctx = self._interaction(key)
        if ctx is not None:
            sent = await ctx.respond(content if content is not None else hikari.UNDEFINED, **kw)
            message_id = f'@{ctx.interaction.id}' if sent == _INITIAL else str(sent)
            self._remember(message_id, ctx)
            if sent == _INITIAL and self._pending.get(key) is not None:
                timer = self._pending[key].timer
                if timer is not None:
                    timer.cancel()
            return message_id
        message = await self.rest.create_message(
            int(key.channel), content if content is not None else hikari.UNDEFINED, **kw
        )
        return str(message.id)

    async def send_text(self, key: ConversationKey, text: str) -> str:
        """Send ``text``; over ``max_message_chars`` split on lines, over ``file_threshold_chars`` as a file."""
        text = text or '\u200b'
        try:
            if len(text) > self.config.file_threshold_chars:
                head = split_text(text, 300)[0]
                data = hikari.Bytes(io.BytesIO(text.encode()), 'reply.txt', mimetype='text/plain')
                return await self._post(key, f'{head}\n… (the full reply is attached)', attachment=data)
            message_id = ''
            for piece in split_text(text, self.config.max_message_chars):
                message_id = await self._post(key, piece)
            return message_id
        except hikari.HikariError as exc:
            _log.error('sending %d characters to %s failed: %r', len(text), key, exc)
            raise

    async def send_file(
        self, key: ConversationKey, path: pathlib.Path, *, text: str | None = None, voice_message: bool = False
    ) -> str:
        """Send a file, or an OGG/Opus voice message (flag IS_VOICE_MESSAGE, duration and waveform)."""
        if not path.is_file():
            raise ActionError(f'The file {path.name} to send does not exist.')
        size = path.stat().st_size
        if size > self.config.max_attachment_bytes:
            raise ActionError(f'The file {path.name} is too large to send on Discord ({size // 1024 // 1024} MB).')
        if not voice_message:
            return await self._post(key, text, attachment=hikari.File(path))
        duration, waveform = await asyncio.to_thread(voice_message_meta, path)
        if text:
            await self.send_text(key, text)
        resource = hikari.Bytes(await asyncio.to_thread(path.read_bytes), 'voice-message.ogg', mimetype='audio/ogg')
        ctx = self._interaction(key)
        if ctx is not None:
            await ctx.defer()
            msg = await self.rest.execute_webhook_voice_message(
                ctx.interaction.application_id, ctx.interaction.token, resource, waveform, duration
            )
            self._remember(str(msg.id), ctx)
        else:
            msg = await self.rest.create_voice_message(int(key.channel), resource, waveform, duration)
        return str(msg.id)

    async def ask(self, key: ConversationKey, text: str, options: Sequence[Option]) -> str:
        """A prompt with up to 25 buttons (5 rows of 5); more choices are listed for typing."""
        rows: list[hikari.impl.MessageActionRowBuilder] = []
        for i, option in enumerate(options[:25]):
            if i % 5 == 0:
                rows.append(hikari.impl.MessageActionRowBuilder())
            rows[-1].add_interactive_button(
                hikari.ButtonStyle.PRIMARY if i == 0 else hikari.ButtonStyle.SECONDARY,
                self._custom_id(key.user, option.value),
                label=(option.label or option.value)[:80],
            )
        if len(options) > 25:
            text += '\n' + ', '.join(o.value for o in options[25:])
        pieces = split_text(text, self.config.max_message_chars)
        for piece in pieces[:-1]:
            await self._post(key, piece)
        message_id = await self._post(key, pieces[-1], components=rows)
        if message_id.isdigit() and self._interaction(key) is None:
            self._open_asks[key] = int(message_id)
        return message_id

    def _custom_id(self, user: str, value: str) -> str:
        custom_id = f'{CUSTOM_ID_PREFIX}:{user}:{value}'
        if len(custom_id) <= 100 and not value.startswith('#'):
            return custom_id
        token = f'{len(self._values):x}'
        self._values[token] = value
        while len(self._values) > 10_000:
            self._values.popitem(last=False)
        return f'{CUSTOM_ID_PREFIX}:{user}:#{token}'

    async def edit_text(self, key: ConversationKey, message_id: str, text: str) -> None:
        """Replace a message's text; edits closer than ``edit_interval`` are coalesced into the latest."""
        slot = self._edits.setdefault((key, message_id), _EditSlot())
        now = time.monotonic()
        wait = slot.last + self.config.edit_interval - now
        if wait <= 0 and slot.task is None:
            slot.last = now
            await self._edit(key, message_id, text)
            return
        slot.text = text
        if slot.task is None:
            slot.task = self._spawn(self._edit_later(key, message_id, slot, max(wait, 0.0)), f'edit {message_id}')

    async def _edit_later(self, key: ConversationKey, message_id: str, slot: _EditSlot, wait: float) -> None:
        await asyncio.sleep(wait)
        text, slot.text, slot.task = slot.text, None, None
        if text is not None:
            slot.last = time.monotonic()
            try:
                await self._edit(key, message_id, text)
            except hikari.HikariError as exc:
                _log.warning('editing message %s in %s failed: %r', message_id, key, exc)

    async def _edit(self, key: ConversationKey, message_id: str, text: str) -> None:
        content = split_text(text, self.config.max_message_chars)[0]
        ctx = self._via.get(message_id)
        if ctx is not None:
            target = _INITIAL if message_id.startswith('@') else int(message_id)
            await ctx.edit_response(target, content)
        else:
            await self.rest.edit_message(int(key.channel), int(message_id), content)

    async def fetch_text(self, key: ConversationKey, message_id: str) -> str | None:
        """The text of an earlier bot message (corrections quote it); ``None`` when it is gone."""
        ctx = self._via.get(message_id)
        try:
            if ctx is not None:
                message = await ctx.fetch_response(_INITIAL if message_id.startswith('@') else int(message_id))
            elif message_id.isdigit():
                message = await self.rest.fetch_message(int(key.channel), int(message_id))
            else:
                return None
        except hikari.NotFoundError:
            return None
        return message.content

    # -- voice -----------------------------------------------------------------------------------------------------

    def _guild_of(self, key: ConversationKey) -> int:
        guild = self._guilds.get(key)
        if guild is None and self.cache is not None:
            channel = self.cache.get_guild_channel(int(key.channel))
            guild = int(channel.guild_id) if channel is not None else None
        if guild is None:
            raise ActionError('Voice works in a server channel, not in direct messages.')
        return guild

    def _voice(self) -> VoiceControl:
        if self.voice is None:
            raise NotSupportedError('voice is not available on this bot')
        return self.voice

    def _user_channel(self, guild: int, user: str) -> int | None:
        state = self.cache.get_voice_state(guild, int(user)) if self.cache is not None else None
        return int(state.channel_id) if state is not None and state.channel_id is not None else None

    async def in_voice(self, key: ConversationKey) -> bool:
        """True when voice works here and the user sits in a voice channel of this server."""
        if self.voice is None:
            return False
        guild = self._guilds.get(key)
        if guild is None and self.cache is not None:
            channel = self.cache.get_guild_channel(int(key.channel)) if key.channel.isdigit() else None
            guild = int(channel.guild_id) if channel is not None else None
        return guild is not None and self._user_channel(guild, key.user) is not None

    async def voice_join(self, key: ConversationKey) -> str:
        voice = self._voice()
        guild = self._guild_of(key)
        channel = self._user_channel(guild, key.user)
        if channel is None:
            raise ActionError('Join a voice channel first, then ask me again.')
        await voice.join(guild, channel)
        cached = self.cache.get_guild_channel(channel) if self.cache is not None else None
        return cached.name or str(channel) if cached is not None else str(channel)

    async def voice_leave(self, key: ConversationKey) -> None:
        await self._voice().leave(self._guild_of(key))

    async def voice_speak(self, key: ConversationKey, audio: pathlib.Path) -> bool:
        voice = self._voice()
        guild = self._guild_of(key)
        channel = self._user_channel(guild, key.user)
        if channel is None:
            return False
        await voice.join(guild, channel)
        await voice.speak(guild, audio)
        return True

    async def close_conversation(self, key: ConversationKey) -> None:
        """Forget the conversation's interaction, buttons and edits; delete its downloads."""
        self.end_interaction(key)
        self._open_asks.pop(key, None)
        self._guilds.pop(key, None)
        for slot_key in [k for k in self._edits if k[0] == key]:
            slot = self._edits.pop(slot_key)
            if slot.task is not None and slot.text is None:
                slot.task.cancel()
        await self.downloads.close(key)

    async def aclose(self) -> None:
        """Cancel background work (deferrals, pending edits)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
