"""Shared test helpers: a tone file and a connection made straight through ``initialize``."""

from __future__ import annotations

import math
import pathlib
import struct
import wave
from typing import cast

import hikari
from hikari.api import VoiceComponent

from integrations.discord.voice.connection import DaveVoiceConnection
from tests.integrations.discord.voice.voice_emulator import VoiceEmulator

__all__ = ['Closed', 'connect', 'write_tone']


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
