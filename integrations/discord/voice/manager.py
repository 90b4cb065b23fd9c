"""Voice channels per guild for the Discord adapter: join, speak files in order, listen, leave, leave when idle.

The adapter's ``voice_join``/``voice_leave``/``voice_speak`` call this; it connects through hikari's
own ``bot.voice.connect_to`` with :class:`DaveVoiceConnection`, so hikari keeps routing voice
events to the connection. Failures users should hear about raise ``ActionError``.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import Mapping
from typing import Any

import attrs
import hikari

from engine.i18n import _
from engine.states.actions import ActionError
from integrations.discord.voice.connection import DaveVoiceConnection
from integrations.discord.voice.listen import Listener
from integrations.discord.voice.opus import AudioError, opus_frames

__all__ = ['VoiceManager']

_log = logging.getLogger(__name__)


@attrs.define
class _Speech:
    audio: pathlib.Path
    done: asyncio.Future[int]
    user_id: int | None = None
    """Whom it answers: their talking cuts it short (barge-in)."""
    stop: asyncio.Event = attrs.field(factory=asyncio.Event)


@attrs.define
class _Guild:
    connection: DaveVoiceConnection
    queue: asyncio.Queue[_Speech | None] = attrs.field(factory=asyncio.Queue)
    stop: asyncio.Event = attrs.field(factory=asyncio.Event)
    """Set to cut the current speech short (on leave)."""
    worker: asyncio.Task[None] | None = None
    current: _Speech | None = None
    listener: Listener | None = None


class VoiceManager:
    """One voice connection per guild, a speech queue each, and an idle timer.

    :param bot: the hikari bot; its voice component and cache are used.
    :param idle_timeout: seconds without speech after which the bot leaves the channel.
    :param connection_options: extra ``DaveVoiceConnection`` options (``secure``, ``dave``,
        ``dave_hold``, ``timeout``); ``timeout`` bounds both hikari's wait for the voice server and
        each voice handshake (hikari's ``connect_to`` would keep it to itself).
    """

    def __init__(
        self,
        bot: hikari.GatewayBot,
        *,
        idle_timeout: float = 300.0,
        connection_options: Mapping[str, object] | None = None,
    ) -> None:
        self._bot = bot
        self._idle_timeout = idle_timeout
        self._options: dict[str, Any] = dict(connection_options or {})
        self._guilds: dict[int, _Guild] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def is_connected(self, guild_id: int) -> bool:
        guild = self._guilds.get(int(guild_id))
        return guild is not None and guild.connection.is_alive

    def channel_of(self, guild_id: int) -> int | None:
        """The voice channel the bot is in in this guild, if any."""
        guild = self._guilds.get(int(guild_id))
        return int(guild.connection.channel_id) if guild is not None and guild.connection.is_alive else None

    def user_channel(self, guild_id: int, user_id: int) -> int | None:
        """The voice channel ``user_id`` is in, from hikari's cache (needs the GUILD_VOICE_STATES intent)."""
        state = self._bot.cache.get_voice_state(int(guild_id), int(user_id))
        return int(state.channel_id) if state is not None and state.channel_id is not None else None

    async def join(self, guild_id: int, channel_id: int) -> DaveVoiceConnection:
        """Be in ``channel_id``: a no-op when already there, a move when in another channel of the guild."""
        guild_id, channel_id = int(guild_id), int(channel_id)
        async with self._lock(guild_id):
            current = self._guilds.get(guild_id)
            if current is not None and current.connection.is_alive and current.connection.channel_id == channel_id:
                return current.connection
            if current is not None:
                await self._leave(guild_id)
            try:
                connection = await self._bot.voice.connect_to(
                    guild_id, channel_id, DaveVoiceConnection, **self._connect_options()
                )
            except hikari.VoiceError as exc:  # our VoiceConnectError included
                _log.error('joining voice channel %s in guild %s failed: %s', channel_id, guild_id, exc)
                raise ActionError(_('I could not join the voice channel: {error}').format(error=exc)) from exc
            state = _Guild(connection)
            state.worker = asyncio.create_task(self._work(guild_id, state), name=f'voice queue {guild_id}')
            self._guilds[guild_id] = state
            return connection

    async def leave(self, guild_id: int) -> bool:
        """Stop speaking (mid-speech too), drop the queue and leave; ``False`` if not in a channel."""
        async with self._lock(int(guild_id)):
            return await self._leave(int(guild_id))

    async def speak(self, guild_id: int, audio: pathlib.Path, *, user_id: int | None = None) -> int:
        """Queue ``audio`` (any format FFmpeg reads) and wait until it has been spoken.

        :param user_id: whom the speech answers: when they start talking it stops (barge-in).

        :return: the number of 20 ms frames played (fewer when ``leave`` cut it short, 0 if never started).
        :raises ActionError: when the bot is in no voice channel here or the file cannot be played.
        """
        guild = self._guilds.get(int(guild_id))
        if guild is None or not guild.connection.is_alive:
            raise ActionError(_('I am not in a voice channel in this server; ask me to join one first.'))
        if not audio.is_file():
            raise ActionError(_('There is no audio to speak: the file is missing.'))
        speech = _Speech(audio, asyncio.get_running_loop().create_future(), user_id)
        guild.queue.put_nowait(speech)
        return await speech.done

    def is_listening(self, guild_id: int) -> bool:
        guild = self._guilds.get(int(guild_id))
        return guild is not None and guild.listener is not None

    async def listen(self, guild_id: int, listener: Listener) -> None:
        """Hear the voice channel of this guild through ``listener`` (replacing an earlier one).

        :raises ActionError: the bot is in no voice channel here.
        """
        guild = self._guilds.get(int(guild_id))
        if guild is None or not guild.connection.is_alive:
            raise ActionError(_('I am not in a voice channel in this server; ask me to join one first.'))
        previous, guild.listener = guild.listener, listener
        guild.connection.listen(listener)
        if previous is not None:
            await previous.close()
        _log.info('listening in voice channel %s of guild %s', guild.connection.channel_id, guild_id)

    async def stop_listening(self, guild_id: int) -> bool:
        """Stop hearing the channel (the bot stays); ``False`` if it was not listening."""
        guild = self._guilds.get(int(guild_id))
        if guild is None or guild.listener is None:
            return False
        listener, guild.listener = guild.listener, None
        guild.connection.listen(None)
        await listener.close()
        _log.info('stopped listening in guild %s', guild_id)
        return True

    async def interrupt(self, guild_id: int, user_id: int) -> bool:
        """Barge-in: stop the speech being played if it answers ``user_id``; ``True`` if one was cut."""
        guild = self._guilds.get(int(guild_id))
        speech = guild.current if guild is not None else None
        if speech is None or speech.user_id != int(user_id) or speech.stop.is_set():
            return False
        _log.info('user %s talks: speech in guild %s cut short', user_id, guild_id)
        speech.stop.set()
        return True

    async def close(self) -> None:
        """Leave every channel (bot shutdown)."""
        for guild_id in list(self._guilds):
            await self.leave(guild_id)

    def _connect_options(self) -> dict[str, Any]:
        """``connect_to`` keyword arguments: ``timeout`` goes to hikari and, renamed, to the connection."""
        options = dict(self._options)
        if 'timeout' in options:
            options.setdefault('handshake_timeout', options['timeout'])
        return options

    def _lock(self, guild_id: int) -> asyncio.Lock:
        return self._locks.setdefault(guild_id, asyncio.Lock())

    async def _leave(self, guild_id: int) -> bool:
        state = self._guilds.pop(guild_id, None)
        if state is None:
            return False
        state.stop.set()
        if state.current is not None:
            state.current.stop.set()
        state.queue.put_nowait(None)
        if state.listener is not None:
            state.connection.listen(None)
            await state.listener.close()
        if state.worker is not None and state.worker is not asyncio.current_task():
            await state.worker
        _drain(state)
        if state.connection.is_alive:
            await state.connection.disconnect()
        _log.info('left voice channel %s in guild %s', state.connection.channel_id, guild_id)
        return True

    async def _work(self, guild_id: int, state: _Guild) -> None:
        """Speak queued files one by one; leave after ``idle_timeout`` seconds with nothing to say."""
        while not state.stop.is_set():
            try:
                speech = await asyncio.wait_for(state.queue.get(), self._idle_timeout)
            except TimeoutError:
                _log.info('voice idle for %.0f s in guild %s: leaving', self._idle_timeout, guild_id)
                asyncio.get_running_loop().create_task(self._leave_idle(guild_id, state))
                return
            if speech is None:
                return
            await self._play(guild_id, state, speech)
            if not state.connection.is_alive:
                _log.info('voice connection of guild %s closed by Discord', guild_id)
                if self._guilds.get(guild_id) is state:
                    del self._guilds[guild_id]
                _drain(state)
                return

    async def _play(self, guild_id: int, state: _Guild, speech: _Speech) -> None:
        if state.stop.is_set():
            _settle(speech, 0)
            return
        state.current = speech
        try:
            frames = opus_frames(speech.audio)
            result = await state.connection.play(frames, stop=speech.stop)
        except AudioError as exc:
            _log.warning('cannot speak %s in guild %s: %s', speech.audio, guild_id, exc)
            _settle(speech, ActionError(_('That audio cannot be played: {error}').format(error=exc)))
        except ConnectionError as exc:
            _log.warning('voice playback in guild %s interrupted: %s', guild_id, exc)
            _settle(speech, ActionError(_('The voice connection was lost while speaking.')))
        except Exception as exc:
            _log.exception('voice playback of %s in guild %s failed', speech.audio, guild_id)
            _settle(speech, ActionError(_('Speaking in the voice channel failed.')), cause=exc)
        else:
            _settle(speech, result)
        finally:
            state.current = None

    async def _leave_idle(self, guild_id: int, state: _Guild) -> None:
        async with self._lock(guild_id):
            if self._guilds.get(guild_id) is state:
                await self._leave(guild_id)


def _settle(speech: _Speech, result: int | ActionError, *, cause: BaseException | None = None) -> None:
    if speech.done.done():
        return
    if isinstance(result, ActionError):
        result.__cause__ = cause
        speech.done.set_exception(result)
    else:
        speech.done.set_result(result)


def _drain(state: _Guild) -> None:
    """Answer speeches that will never be played (the bot left): zero frames."""
    while not state.queue.empty():
        speech = state.queue.get_nowait()
        if speech is not None:
            _settle(speech, 0)
