"""The outgoing half of Discord: :class:`DiscordAdapter` implements ``engine.api.Adapter`` with hikari.

Replies go through the pending slash-command interaction of the conversation while there is one (so the
interaction is answered inside Discord's deadline, and a deferred "thinking…" answer is edited into the
result), and as channel messages otherwise. Long texts are split on line boundaries, very long ones sent as a
file; asks get buttons whose ``custom_id`` carries the owner and the value. A running step has one progress
message, edited in place (edits coalesced per message) and replaced by the step's result: edited into it when
the result is one text, deleted when the result is its own message. Notices (refusals, stale buttons) are
ephemeral when an interaction can carry them.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import pathlib
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs
import hikari

from engine.api import Adapter, ConversationKey, NotSupportedError, Option
from engine.i18n import _
from engine.states.actions import ActionError

from .attachments import Downloads
from .config import DiscordConfig
from .media import voice_message_meta
from .rest import TextReplies

__all__ = [
    'CUSTOM_ID_PREFIX',
    'DiscordAdapter',
    'Heard',
    'VoiceControl',
    'literal_backslashes',
    'parse_custom_id',
    'split_text',
]

_log = logging.getLogger(__name__)

CUSTOM_ID_PREFIX = 'fb'
_INTERACTION_TTL = 14 * 60.0
"""Interaction tokens live 15 minutes; after that replies go to the channel."""


class VoiceControl(Protocol):
    """The part of ``integrations.discord.voice.manager.VoiceManager`` the adapter uses."""

    async def join(self, guild_id: int, channel_id: int) -> Any: ...

    async def leave(self, guild_id: int) -> Any: ...

    async def speak(self, guild_id: int, path: pathlib.Path, *, user_id: int | None = None) -> Any: ...

    async def listen(self, guild_id: int, listener: Any) -> None: ...

    def channel_of(self, guild_id: int) -> int | None: ...

    async def stop_listening(self, guild_id: int) -> bool: ...

    async def interrupt(self, guild_id: int, user_id: int) -> bool: ...

    async def close(self) -> None: ...


Heard = Callable[[int, int, int, str], Awaitable[None]]
"""What the bot does with an utterance heard in voice: (guild id, text channel id, user id, text)."""


def split_text(text: str, limit: int = 2000) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at line ends, else at spaces, else anywhere."""
    if len(text) <= limit:  # most replies: one piece, no cuts
        return [_sendable(text)]
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
    return [_sendable(p) for p in pieces]


def _sendable(piece: str) -> str:
    """A piece as sent: without trailing line ends; a blank one as a zero-width space (Discord refuses blank
    content)."""
    return piece.rstrip('\n') if piece.strip() else '\u200b'


_CODE = re.compile(r'(```.*?```|`[^`\n]*`)', re.DOTALL)


def literal_backslashes(text: str) -> str:
    """``text`` with every backslash outside code shown as typed: Discord's markdown reads ``\\.`` as an escaped
    dot, so ``..\\..\\x`` would show as ``....x``. Inside code spans and blocks backslashes are already literal."""
    if '\\' not in text:
        return text
    parts = _CODE.split(text)
    return ''.join(part if i % 2 else part.replace('\\', '\\\\') for i, part in enumerate(parts))


def parse_custom_id(custom_id: str) -> tuple[str, str] | None:
    """``(owner user id, value or #token)`` of a flowbot button, ``None`` for anyone else's component."""
    prefix, sep, rest = custom_id.partition(':')
    owner, sep2, value = rest.partition(':')
    if prefix != CUSTOM_ID_PREFIX or not sep or not sep2 or not owner.isdigit():
        return None
    return owner, value


Interaction = hikari.CommandInteraction | hikari.ComponentInteraction
"""An interaction the adapter answers: a slash command, or a button press (for notices)."""


@attrs.define(eq=False)
class _Responder:
    """One interaction's answers: the initial response, its deferral, follow-ups, edits.

    Kept here rather than in lightbulb's context, whose answer after a deferral is a follow-up (the
    "thinking…" placeholder would stay) and whose initial-response marker is private API.
    """

    interaction: Interaction
    started: float
    state: str = 'open'
    """``open`` (nothing sent), ``deferred`` ("thinking…" shown) or ``answered``."""
    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    timer: asyncio.Task[None] | None = None

    @property
    def fresh(self) -> bool:
        return time.monotonic() - self.started < _INTERACTION_TTL

    @property
    def initial_id(self) -> str:
        """The message id the adapter gives the initial response (its real id is not needed to edit it)."""
        return f'@{self.interaction.id}'

    async def defer(self) -> None:
        async with self.lock:
            if self.state == 'open':
                await self.interaction.create_initial_response(hikari.ResponseType.DEFERRED_MESSAGE_CREATE)
                self.state = 'deferred'

    async def post(self, content: Any, *, ephemeral: bool = False, **kw: Any) -> str:
        """Send one message through the interaction: the initial response, the deferred answer, or a follow-up."""
        flags = hikari.MessageFlag.EPHEMERAL if ephemeral else hikari.UNDEFINED
        async with self.lock:
            if self.state == 'open':
                await self.interaction.create_initial_response(
                    hikari.ResponseType.MESSAGE_CREATE, content, flags=flags, **kw
                )
                self.state = 'answered'
                return self.initial_id
            if self.state == 'deferred' and not ephemeral:
                await self.interaction.edit_initial_response(content, **kw)
                self.state = 'answered'
                return self.initial_id
            if self.state == 'deferred':
                # An ephemeral answer cannot replace the public "thinking…", and Discord would turn the first
                # follow-up into that answer: drop it first, so the notice is a message of its own.
                self.state = 'answered'
                await self.interaction.delete_initial_response()
            message = await self.interaction.execute(content, flags=flags, **kw)
            return str(message.id)

    async def edit(self, message_id: str, content: Any, **kw: Any) -> None:
        if message_id == self.initial_id:
            await self.interaction.edit_initial_response(content, **kw)
        else:
            await self.interaction.edit_message(int(message_id), content, **kw)

    async def delete(self, message_id: str) -> None:
        if message_id == self.initial_id:
            await self.interaction.delete_initial_response()
        else:
            await self.interaction.delete_message(int(message_id))

    async def fetch(self, message_id: str) -> hikari.Message:
        if message_id == self.initial_id:
            return await self.interaction.fetch_initial_response()
        return await self.interaction.fetch_message(int(message_id))


@attrs.define
class _Progress:
    """The conversation's progress message; ``done`` once its step is over (the next reply replaces it)."""

    message_id: str
    done: bool = False


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
        self.texts = TextReplies(rest)
        """Text replies on kept connections of their own (closed by :meth:`aclose`)."""
        self.config = config
        self.prefix = config.prefix
        self.downloads = downloads
        self.cache = cache
        self.voice = voice
        self.on_heard: Heard | None = None
        """Set by the bot: where utterances heard in voice channels go (as messages to the engine)."""
        self._pending: dict[ConversationKey, _Responder] = {}
        self._pressed: dict[ConversationKey, _Responder] = {}
        """Button presses being handled: notices for the presser go through them, ephemeral."""
        self._via: collections.OrderedDict[str, _Responder] = collections.OrderedDict()
        """Message ids sent through an interaction -> its responder (edits go through the webhook)."""
        self._open_asks: dict[ConversationKey, int] = {}
        self._values: collections.OrderedDict[str, str] = collections.OrderedDict()
        """``#token`` -> long choice values that do not fit a custom_id."""
        self._guilds: dict[ConversationKey, int | None] = {}
        self._edits: dict[tuple[ConversationKey, str], _EditSlot] = {}
        self._progress: dict[ConversationKey, _Progress] = {}
        self._latest: dict[int, int] = {}
        """Channel -> newest message id posted there by anyone else, to tell a buried progress message."""
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- bookkeeping fed by the bot --------------------------------------------------------------------------------

    def begin_interaction(
        self, key: ConversationKey, interaction: hikari.CommandInteraction, guild_id: int | None
    ) -> None:
        """Answer the conversation's next replies through ``interaction``; defer it if the engine is slow."""
        self.end_interaction(key)
        responder = _Responder(interaction, time.monotonic())
        self._pending[key] = responder
        self._guilds[key] = guild_id
        responder.timer = self._spawn(self._defer_later(responder), f'defer {key}')

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

    def pressed(self, key: ConversationKey, interaction: hikari.ComponentInteraction | None) -> None:
        """While a button press (already acknowledged) is handled, notices for its presser go through it;
        ``None`` when the handling is over."""
        if interaction is None:
            self._pressed.pop(key, None)
        else:
            self._pressed[key] = _Responder(interaction, time.monotonic(), state='answered')

    def note_message(self, channel: int, message_id: int) -> None:
        """Someone else posted in ``channel``: a progress message older than this is no longer in view, so a
        result is posted below instead of edited into it."""
        if message_id > self._latest.get(channel, 0):
            self._latest[channel] = message_id

    def choice_value(self, raw: str) -> str | None:
        """The choice value a button carries (long values travel as ``#token``)."""
        return self._values.get(raw[1:]) if raw.startswith('#') else raw

    async def _defer_later(self, responder: _Responder) -> None:
        await asyncio.sleep(self.config.defer_after)
        try:
            await responder.defer()
        except hikari.HikariError as exc:
            _log.warning('deferring interaction %s failed: %r', responder.interaction.id, exc)

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

    def _interaction(self, key: ConversationKey) -> _Responder | None:
        pending = self._pending.get(key)
        if pending is None:
            return None
        if not pending.fresh:
            self.end_interaction(key)
            return None
        return pending

    def _remember(self, message_id: str, responder: _Responder) -> None:
        self._via[message_id] = responder
        while len(self._via) > 10_000:
            self._via.popitem(last=False)

    # -- sending ---------------------------------------------------------------------------------------------------

    async def _post(self, key: ConversationKey, content: str | None = None, **kw: Any) -> str:
        """One message: through the pending interaction when there is one, else to the channel."""
        body = content if content is not None else hikari.UNDEFINED
        if isinstance(body, str) and key.user.isdigit() and body.startswith(self.mention(key.user)):
            kw.setdefault('user_mentions', [int(key.user)])  # a report addressed to its user notifies them, only them
        responder = self._interaction(key)
        if responder is not None:
            message_id = await responder.post(body, **kw)
            if responder.timer is not None and responder.state == 'answered':
                responder.timer.cancel()
            self._remember(message_id, responder)
            return message_id
        if isinstance(body, str) and not kw:  # text alone, most replies: no Message entity built for its id
            return await self.texts.post(int(key.channel), body)
        message = await self.rest.create_message(int(key.channel), body, **kw)
        return str(message.id)

    def mention(self, user: str) -> str:
        return f'<@{user}>' if user.isdigit() else ''

    async def send_text(self, key: ConversationKey, text: str) -> str:
        """Send ``text``; over ``max_message_chars`` split on lines, over ``file_threshold_chars`` as a file.

        A finished step's progress message becomes the text when it fits one message, else it is deleted.
        """
        text = text or '\u200b'
        try:
            if len(text) > self.config.file_threshold_chars:
                head = literal_backslashes(split_text(text, 300)[0])
                data = hikari.Bytes(io.BytesIO(text.encode()), 'reply.txt', mimetype='text/plain')
                note = _('… (the full reply is attached)')
                return await self._deliver(key, f'{head}\n{note}', attachment=data)
            pieces = split_text(literal_backslashes(text), self.config.max_message_chars)
            if len(pieces) == 1:
                return await self._deliver(key, pieces[0])
            message_id = ''
            for piece in pieces:
                message_id = await self._replacing(key, self._post(key, piece))
            return message_id
        except hikari.HikariError as exc:
            _log.error('sending %d characters to %s failed: %r', len(text), key, exc)
            raise

    async def send_notice(self, key: ConversationKey, text: str) -> str:
        """A reply for the user alone: ephemeral through their slash command or button press, else in the channel."""
        responder = self._interaction(key) or self._pressed.get(key)
        if responder is None:
            return await self.send_text(key, text)
        content = split_text(literal_backslashes(text), self.config.max_message_chars)[0]
        message_id = await responder.post(content, ephemeral=True)
        self._remember(message_id, responder)
        return message_id

    async def send_file(
        self, key: ConversationKey, path: pathlib.Path, *, text: str | None = None, voice_message: bool = False
    ) -> str:
        """Send a file, or an OGG/Opus voice message (flag IS_VOICE_MESSAGE, duration and waveform)."""
        if not path.is_file():
            raise ActionError(_('The file {name} to send does not exist.').format(name=path.name))
        size = path.stat().st_size
        if size > self.config.max_attachment_bytes:
            raise ActionError(
                _('The file {name} is too large to send on Discord ({size} MB).').format(
                    name=path.name, size=size // 1024 // 1024
                )
            )
        if not voice_message:
            caption = literal_backslashes(text) if text else text
            return await self._deliver(key, caption, attachment=hikari.File(path))
        duration, waveform = await asyncio.to_thread(voice_message_meta, path)
        if text:
            await self.send_text(key, text)
        resource = hikari.Bytes(await asyncio.to_thread(path.read_bytes), 'voice-message.ogg', mimetype='audio/ogg')
        responder = self._interaction(key)
        if responder is not None:
            await responder.defer()
            interaction = responder.interaction
            msg = await self.rest.execute_webhook_voice_message(
                interaction.application_id, interaction.token, resource, waveform, duration
            )
            self._remember(str(msg.id), responder)
            return str(msg.id)
        return await self._replacing(
            key, self._message_id(self.rest.create_voice_message(int(key.channel), resource, waveform, duration))
        )

    @staticmethod
    async def _message_id(sending: Any) -> str:
        return str((await sending).id)

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
        text = literal_backslashes(text)
        pieces = split_text(text, self.config.max_message_chars)
        for piece in pieces[:-1]:
            await self._replacing(key, self._post(key, piece))
        message_id = await self._deliver(key, pieces[-1], components=rows)
        if message_id.isdigit() and self._interaction(key) is None and message_id not in self._via:
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

    # -- progress --------------------------------------------------------------------------------------------------

    async def progress(self, key: ConversationKey, text: str, message_id: str | None = None) -> str:
        """Show a step's progress in the conversation's one progress message: a finished step's message
        is reused (edited) for the next step, so a chain of steps shows one message."""
        current = self._progress.get(key)
        if message_id is None and current is not None:
            message_id = current.message_id
        if message_id is not None and not self._editable(message_id):
            message_id = None  # an expired interaction's answer, or one from before a restart: start a new one
        if message_id is None:
            message_id = await self._post(key, split_text(literal_backslashes(text), self.config.max_message_chars)[0])
        else:
            await self.edit_text(key, message_id, text)
        self._progress[key] = _Progress(message_id)
        return message_id

    def progress_done(self, key: ConversationKey, message_id: str) -> None:
        """The step is over: the next reply replaces its progress message (also one restored from the store)."""
        current = self._progress.get(key)
        if current is None or current.message_id == message_id:
            self._progress[key] = _Progress(message_id, done=True)

    async def _deliver(self, key: ConversationKey, content: str | None, **kw: Any) -> str:
        """Send one message that may be a step's result: edited into the finished step's progress message
        when that is still in view, else posted (and the progress message deleted)."""
        current = self._progress.get(key)
        if (
            current is not None
            and current.done
            and self._editable(current.message_id)
            and not self._buried(key, current.message_id)
        ):
            del self._progress[key]
            self._cancel_edit(key, current.message_id)
            try:
                await self._edit(key, current.message_id, content, **kw)
                return current.message_id
            except hikari.HikariError as exc:
                _log.info('progress message %s in %s cannot become the result: %r', current.message_id, key, exc)
        return await self._replacing(key, self._post(key, content, **kw))

    def _editable(self, message_id: str) -> bool:
        """A channel message, or an interaction's message while its token lives (15 minutes)."""
        responder = self._via.get(message_id)
        return responder.fresh if responder is not None else message_id.isdigit()

    def _buried(self, key: ConversationKey, message_id: str) -> bool:
        """Whether someone posted in the channel after ``message_id`` (an interaction's answer counts from the
        interaction), so an edit would put the result out of view."""
        anchor = message_id.lstrip('@')
        latest = self._latest.get(int(key.channel)) if key.channel.isdigit() else None
        return latest is not None and anchor.isdigit() and latest > int(anchor)

    async def _replacing(self, key: ConversationKey, sending: Any) -> str:
        """Await ``sending`` (a message that cannot be an edit), then delete a finished step's progress message."""
        message_id: str = await sending
        current = self._progress.get(key)
        if current is not None and current.done:
            del self._progress[key]
            await self._delete(key, current.message_id)
        return message_id

    async def _delete(self, key: ConversationKey, message_id: str) -> None:
        self._cancel_edit(key, message_id)
        responder = self._via.get(message_id)
        if not self._editable(message_id):
            return
        try:
            if responder is not None:
                await responder.delete(message_id)
            elif message_id.isdigit():
                await self.rest.delete_message(int(key.channel), int(message_id))
        except hikari.HikariError as exc:
            _log.info('deleting progress message %s in %s failed: %r', message_id, key, exc)

    def _cancel_edit(self, key: ConversationKey, message_id: str) -> None:
        """Drop a coalesced edit still waiting, so it cannot overwrite what replaces the message."""
        slot = self._edits.pop((key, message_id), None)
        if slot is not None and slot.task is not None:
            slot.task.cancel()

    async def edit_text(self, key: ConversationKey, message_id: str, text: str) -> None:
        """Replace a message's text; edits closer than ``edit_interval`` are coalesced into the latest."""
        text = literal_backslashes(text)
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

    async def _edit(self, key: ConversationKey, message_id: str, text: str | None, **kw: Any) -> None:
        content = split_text(text, self.config.max_message_chars)[0] if text is not None else None
        responder = self._via.get(message_id)
        if responder is not None:
            await responder.edit(message_id, content, **kw)
        else:
            await self.rest.edit_message(int(key.channel), int(message_id), content, **kw)

    async def fetch_text(self, key: ConversationKey, message_id: str) -> str | None:
        """The text of an earlier bot message (corrections quote it); ``None`` when it is gone."""
        responder = self._via.get(message_id)
        try:
            if responder is not None:
                message = await responder.fetch(message_id)
            elif message_id.isascii() and message_id.isdigit() and int(message_id) < 1 << 63:  # not ², not too big
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
            raise ActionError(_('Voice works in a server channel, not in direct messages.'))
        return guild

    def _voice(self) -> VoiceControl:
        if self.voice is None:
            raise NotSupportedError(_('voice is not available on this bot'))
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
            raise ActionError(_('Join a voice channel first, then ask me again.'))
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
        await voice.speak(guild, audio, user_id=int(key.user))
        return True

    async def voice_listen(self, key: ConversationKey, streams: Callable[[], Any] | None) -> str:
        """Hear the voice channel the bot is in here; utterances become messages in ``key.channel``."""
        voice = self._voice()
        guild = self._guild_of(key)
        if streams is None:
            await voice.stop_listening(guild)
            return ''
        from .voice import Listener, Utterance

        try:  # the first stream loads the model (seconds): before the bot says it listens, not at the first word
            await asyncio.to_thread(streams)
        except Exception as exc:  # the recogniser's errors (no model, wrong engine) are worded for users
            _log.warning('listening in guild %s cannot start: %s', guild, exc)
            raise ActionError(str(exc)) from exc

        heard, channel = self.on_heard, int(key.channel)

        async def utterance(said: Utterance) -> None:
            if heard is not None:
                await heard(guild, channel, said.user_id, said.text)

        async def barge_in(user_id: int) -> None:
            await voice.interrupt(guild, user_id)

        record = pathlib.Path(self.config.listen_record_dir) if self.config.listen_record_dir else None
        listener = Listener(
            streams, utterance, on_speech=barge_in, end_gap=self.config.listen_end_gap, record_dir=record
        )
        await voice.listen(guild, listener)
        channel_id = voice.channel_of(guild)
        cached = self.cache.get_guild_channel(channel_id) if self.cache is not None and channel_id else None
        return (cached.name or str(channel_id)) if cached is not None else str(channel_id or '')

    async def close_conversation(self, key: ConversationKey) -> None:
        """Forget the conversation's interaction, buttons and edits; delete its leftover progress message and
        its downloads."""
        self.end_interaction(key)
        self._open_asks.pop(key, None)
        self._guilds.pop(key, None)
        progress = self._progress.pop(key, None)
        if progress is not None:  # the conversation ended with nothing to replace it: a stale "working…" goes
            await self._delete(key, progress.message_id)
        for slot_key in [k for k in self._edits if k[0] == key]:
            slot = self._edits.pop(slot_key)
            if slot.task is not None and slot.text is None:
                slot.task.cancel()
        await self.downloads.close(key)

    async def aclose(self) -> None:
        """Cancel background work (deferrals, pending edits) and close the connections of the text replies."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.texts.aclose()
