"""Shared test helpers: a tone file and a connection made straight through ``initialize``."""

from __future__ import annotations

import asyncio
import math
import pathlib
import struct
import wave
from typing import cast

import av
import hikari
from hikari.api import VoiceComponent

from integrations.discord.voice.connection import DaveVoiceConnection
from tests.integrations.discord.emulator import DiscordEmulator
from tests.integrations.discord.voice.voice_emulator import VoiceEmulator

__all__ = ['Closed', 'answer_voice_state_updates', 'connect', 'opus_to_pcm', 'write_tone']


def write_tone(path: pathlib.Path, seconds: float, *, rate: int = 22_050, freq: float = 440.0) -> pathlib.Path:
    """A mono 16-bit WAV sine tone at an odd rate, so decoding and resampling are exercised."""
    samples = int(seconds * rate)
    frames = b''.join(struct.pack('<h', int(12_000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(samples))
    with wave.open(str(path), 'wb') as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return path


class Closed:
    """An ``on_close`` hook that records the connections it was called with."""

    def __init__(self) -> None:
        self.calls: list[DaveVoiceConnection] = []

    async def __call__(self, connection: DaveVoiceConnection) -> None:
        self.calls.append(connection)


async def connect(
    emu: VoiceEmulator,
    *,
    user_id: int = 111,
    channel_id: int = 222,
    guild_id: int = 333,
    on_close: Closed | None = None,
    **options: object,
) -> DaveVoiceConnection:
    """Connect to ``emu`` as hikari's ``connect_to`` would, over plain ``ws://``."""
    if emu.dave is not None:
        user_id, channel_id = emu.dave.bot_user_id, emu.dave.channel_id
    elif emu.members:
        channel_id = emu.members[0].channel_id
    return await DaveVoiceConnection.initialize(
        channel_id=hikari.Snowflake(channel_id),
        endpoint=f'wss://{emu.endpoint}',
        guild_id=hikari.Snowflake(guild_id),
        on_close=on_close or Closed(),
        owner=cast(VoiceComponent, None),
        session_id='voice-session',
        shard_id=0,
        token='voice-token',
        user_id=hikari.Snowflake(user_id),
        secure=False,
        timeout=5.0,
        **options,
    )


async def answer_voice_state_updates(discord: DiscordEmulator, voice: VoiceEmulator, guild: int, bot: int) -> None:
    """Play Discord: each op 4 the bot sends is answered with the events ``connect_to`` waits for."""
    seen = 0
    while True:
        frames = [f for f in discord.frames if f.op == 4]
        for frame in frames[seen:]:
            channel = int(frame.d['channel_id']) if frame.d['channel_id'] else None
            await discord.voice_state_update(guild, bot, channel, session_id=f'voice-session-{seen}')
            if channel is not None:
                await discord.voice_server_update(guild, voice.endpoint, token=f'voice-token-{seen}')
            seen += 1
        await asyncio.sleep(0.01)


def opus_to_pcm(payloads: list[bytes], rate: int = 16_000) -> bytes:
    """Decode Opus frames (48 kHz stereo) to mono s16 PCM at ``rate``, as a recogniser wants it."""
    decoder = av.CodecContext.create('opus', 'r')
    assert isinstance(decoder, av.AudioCodecContext)
    decoder.sample_rate, decoder.layout = 48_000, 'stereo'
    resampler = av.AudioResampler(format='s16', layout='mono', rate=rate)
    pcm = bytearray()
    for payload in payloads:
        for frame in decoder.decode(av.Packet(payload)):
            for out in resampler.resample(frame):
                pcm += out.to_ndarray().tobytes()
    return bytes(pcm)
