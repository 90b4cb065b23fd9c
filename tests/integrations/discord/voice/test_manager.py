"""VoiceManager through the real hikari ``GatewayBot`` and ``VoiceComponentImpl.connect_to``.

The Discord emulator (tests/integrations/discord/emulator.py) plays the main gateway and answers
the bot's voice state updates with VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE pointing at the
loopback voice server, exactly the events ``connect_to`` waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from collections.abc import AsyncIterator

import attrs
import hikari
import pytest

from engine.states.actions import ActionError
from integrations.discord.voice.manager import VoiceManager
from integrations.discord.voice.opus import opus_frames
from integrations.discord.voice.rtp import SILENCE_FRAME
from tests.integrations.discord.emulator import DiscordEmulator
from tests.integrations.discord.voice.helpers import answer_voice_state_updates, write_tone
from tests.integrations.discord.voice.voice_emulator import VoiceEmulator, load_dave_fixtures

DAVE = load_dave_fixtures()
BOT = DAVE.bot_user_id if DAVE else 900_000_000_000_000_001
VOICE_CHANNEL = DAVE.channel_id if DAVE else 700_000_000_000_000_001
OTHER_CHANNEL = 700_000_000_000_000_002
GUILD = 500_000_000_000_000_001
USER = 800_000_000_000_000_001


@attrs.define
class World:
    discord: DiscordEmulator
    voice: VoiceEmulator
    bot: hikari.GatewayBot

    def voice_updates(self) -> list[int | None]:
        """Channels the bot asked the main gateway to be in (op 4), in order."""
        return [
            int(f.d['channel_id']) if f.d['channel_id'] else None
            for f in self.discord.frames
            if f.op == 4 and isinstance(f.d, dict)
        ]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with DiscordEmulator(bot_id=BOT) as discord, VoiceEmulator(dave=DAVE) as voice:
        member = {**discord.member(), 'user': discord.user(USER, 'ann')}
        discord.guilds.append(
            discord.guild(GUILD, voice_states=[discord.voice_state(GUILD, USER, VOICE_CHANNEL)], members=[member])
        )
        intents = hikari.Intents.GUILDS | hikari.Intents.GUILD_VOICE_STATES
        bot = hikari.GatewayBot(discord.token, rest_url=discord.rest_url, banner=None, logs=None, intents=intents)
        await asyncio.wait_for(bot.start(), 15)
        state = World(discord, voice, bot)
        answering = asyncio.create_task(answer_voice_state_updates(discord, voice, GUILD, BOT))
        try:
            yield state
        finally:
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering
            await bot.close()


def manager(world: World, idle_timeout: float = 60.0) -> VoiceManager:
    return VoiceManager(world.bot, idle_timeout=idle_timeout, connection_options={'secure': False, 'timeout': 5.0})


async def wait_until(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_user_in_voice_is_joined_through_hikari_and_hears_the_reply(tmp_path: pathlib.Path, world: World) -> None:
    voice = manager(world)
    await wait_until(lambda: voice.user_channel(GUILD, USER) == VOICE_CHANNEL)
    connection = await voice.join(GUILD, voice.user_channel(GUILD, USER) or 0)
    assert world.bot.voice.connections[hikari.Snowflake(GUILD)] is connection
    assert voice.is_connected(GUILD) and voice.channel_of(GUILD) == VOICE_CHANNEL
    assert world.voice.session_id == 'voice-session-0' and world.voice.token == 'voice-token-0'

    tone = write_tone(tmp_path / 'reply.wav', 0.4)
    frames = await voice.speak(GUILD, tone)
    assert frames == len(list(opus_frames(tone)))
    await world.voice.wait_packets(frames + 5)
    await asyncio.sleep(0.05)
    assert len(world.voice.packets) == frames + 5
    if DAVE is not None:  # with the recorded messages the DAVE group is active
        assert all(p.payload.endswith(b'\xfa\xfa') for p in world.voice.packets[:frames])

    assert await voice.leave(GUILD)
    await wait_until(lambda: world.voice_updates() == [VOICE_CHANNEL, None])
    assert not voice.is_connected(GUILD) and not world.bot.voice.connections


async def test_speeches_queue_and_play_one_after_another(tmp_path: pathlib.Path, world: World) -> None:
    voice = manager(world)
    await voice.join(GUILD, VOICE_CHANNEL)
    await voice.join(GUILD, VOICE_CHANNEL)  # already there: nothing happens
    first, second = write_tone(tmp_path / 'a.wav', 0.3), write_tone(tmp_path / 'b.wav', 0.5, freq=660)
    played = list(await asyncio.gather(voice.speak(GUILD, first), voice.speak(GUILD, second)))
    await world.voice.wait_packets(sum(played) + 10)
    await voice.leave(GUILD)

    assert played == [len(list(opus_frames(first))), len(list(opus_frames(second)))]
    payloads = [p.payload for p in world.voice.packets]
    assert len(payloads) == played[0] + played[1] + 10
    assert payloads[played[0] : played[0] + 5] == [SILENCE_FRAME] * 5
    assert SILENCE_FRAME not in payloads[played[0] + 5 : -5]
    assert world.voice.identifies == 1
    await wait_until(lambda: world.voice_updates() == [VOICE_CHANNEL, None])
    assert [r.d['speaking'] for r in world.voice.ops(5) if r.d] == [1, 0, 1, 0]


async def test_leave_mid_speech_stops_playback_and_leaves(tmp_path: pathlib.Path, world: World) -> None:
    voice = manager(world)
    await voice.join(GUILD, VOICE_CHANNEL)
    long = write_tone(tmp_path / 'long.wav', 3.0)
    speaking = asyncio.create_task(voice.speak(GUILD, long))
    queued = asyncio.create_task(voice.speak(GUILD, long))
    await world.voice.wait_packets(10)
    asked = time.perf_counter()
    assert await voice.leave(GUILD)
    took = time.perf_counter() - asked

    played = await speaking
    assert 10 <= played < len(list(opus_frames(long))) // 2
    assert await queued == 0
    stopped_at = len(world.voice.packets)
    assert [p.payload for p in world.voice.packets[-5:]] == [SILENCE_FRAME] * 5
    await asyncio.sleep(0.2)
    assert len(world.voice.packets) == stopped_at
    assert world.voice.packets[-1].arrival - asked < 0.1, 'RTP went on for 100 ms or more after leave'
    assert took < 0.1, f'leave blocked for {took * 1000:.0f} ms'
    assert world.voice.undecryptable == 0
    await wait_until(lambda: world.voice_updates() == [VOICE_CHANNEL, None])
    with pytest.raises(ActionError, match='not in a voice channel'):
        await voice.speak(GUILD, long)


async def test_idle_bot_leaves_the_channel(world: World) -> None:
    voice = manager(world, idle_timeout=0.3)
    await voice.join(GUILD, VOICE_CHANNEL)
    await wait_until(lambda: world.voice_updates() == [VOICE_CHANNEL, None])
    await wait_until(lambda: not voice.is_connected(GUILD))
    assert not await voice.leave(GUILD)


async def test_moving_to_another_channel_reconnects_there(world: World) -> None:
    voice = manager(world)
    await voice.join(GUILD, VOICE_CHANNEL)
    await voice.join(GUILD, OTHER_CHANNEL)
    assert voice.channel_of(GUILD) == OTHER_CHANNEL
    await voice.leave(GUILD)
    await wait_until(lambda: world.voice_updates() == [VOICE_CHANNEL, None, OTHER_CHANNEL, None])


async def test_bad_audio_is_refused_clearly_and_the_bot_stays(tmp_path: pathlib.Path, world: World) -> None:
    voice = manager(world)
    with pytest.raises(ActionError, match='ask me to join'):
        await voice.speak(GUILD, tmp_path / 'none.wav')
    await voice.join(GUILD, VOICE_CHANNEL)
    broken = tmp_path / 'broken.mp3'
    broken.write_bytes(b'ID3 this is not audio at all' * 10)
    with pytest.raises(ActionError, match='cannot be played'):
        await voice.speak(GUILD, broken)
    with pytest.raises(ActionError, match='missing'):
        await voice.speak(GUILD, tmp_path / 'none.wav')
    assert voice.is_connected(GUILD)
    assert await voice.speak(GUILD, write_tone(tmp_path / 'ok.wav', 0.2)) > 0
    await voice.leave(GUILD)


async def test_connection_timeout_reaches_the_voice_handshake(world: World) -> None:
    world.voice.answer_identify = False  # the voice server accepts the websocket and never answers
    voice = VoiceManager(world.bot, connection_options={'secure': False, 'timeout': 1.5})
    started = time.perf_counter()
    with pytest.raises(ActionError, match=r'timed out after 1\.5 s'):
        await voice.join(GUILD, VOICE_CHANNEL)
    assert 1.4 < time.perf_counter() - started < 3.0
