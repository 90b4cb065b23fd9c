"""Fixtures: the loopback Discord emulator, the real engine with test flows, and a running DiscordBot."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator

import attrs
import hikari
import pytest

from engine.app import App, build_app
from engine.config import BotConfig, Config, PermissionGroup
from integrations.discord.bot import DiscordBot
from integrations.discord.config import DiscordConfig

from .emulator import DiscordEmulator

HERE = pathlib.Path(__file__).parent
REPO = HERE.parents[2]
ADMIN_ROLE = 777
GUILD = 500_000_000_000_000_001
CHANNEL = 600_000_000_000_000_001


@pytest.fixture
async def emulator() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator() as emu:
        yield emu


@pytest.fixture
async def app(tmp_path: pathlib.Path) -> AsyncIterator[App]:
    """The real engine with ``flows/hi.toml`` and the test flows next to this file."""
    config = Config(
        bot=BotConfig(
            flows=[REPO / 'flows' / 'hi.toml', HERE / 'flows'],
            store=':memory:',
            data_root=tmp_path,
            plugins=[],
            reload=False,
        ),
        permissions={'admins': PermissionGroup(roles=[str(ADMIN_ROLE)])},
    )
    built = build_app(config)
    await built.start()
    yield built
    await built.stop()


@attrs.define
class Running:
    """A started bot and what it saw."""

    bot: DiscordBot
    emulator: DiscordEmulator
    errors: list[BaseException]


async def start_bot(emulator: DiscordEmulator, app: App, **config: object) -> Running:
    settings = DiscordConfig(rest_url=emulator.rest_url, **config)  # type: ignore[arg-type]
    bot = DiscordBot(app.engine, settings, token=emulator.token, logs=None, voice=lambda _bot: None)  # type: ignore[arg-type,return-value]
    errors: list[BaseException] = []

    async def on_error(event: hikari.ExceptionEvent[hikari.Event]) -> None:
        errors.append(event.exception)

    bot.bot.subscribe(hikari.ExceptionEvent, on_error)
    try:
        await asyncio.wait_for(bot.start(), 15)
    except BaseException:
        await bot.close()
        raise
    return Running(bot, emulator, errors)


@contextlib.asynccontextmanager
async def bot_running(emulator: DiscordEmulator, app: App, **config: object) -> AsyncIterator[Running]:
    """A bot connected to the emulator for the block (``config``: :class:`DiscordConfig` settings), closed when it
    ends however it ends; then the test fails if any listener raised.

    For tests that set up the emulator first (its guilds, before the bot connects) or need other settings than
    :func:`running`'s.
    """
    run = await start_bot(emulator, app, **config)
    try:
        yield run
    finally:
        await run.bot.close()
    assert run.errors == [], f'listener errors: {run.errors!r}'


@pytest.fixture
async def running(emulator: DiscordEmulator, app: App) -> AsyncIterator[Running]:
    """A bot connected to the emulator; fails the test if any listener raised."""
    async with bot_running(emulator, app, defer_after=1.0) as run:
        yield run


def make_ogg(path: pathlib.Path, seconds: float = 1.0) -> pathlib.Path:
    """A real OGG/Opus file (a 440 Hz tone), as Discord voice messages are."""
    import av
    import numpy as np

    rate = 48_000
    with av.open(str(path), 'w', format='ogg') as out:
        stream = out.add_stream('libopus', rate=rate)
        stream.layout = 'mono'  # type: ignore[union-attr]
        t = np.arange(int(rate * seconds)) / rate
        pcm = (np.sin(2 * np.pi * 440 * t) * 12_000).astype(np.int16)
        for start in range(0, len(pcm), 960):
            chunk = pcm[start : start + 960]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format='s16', layout='mono')
            frame.sample_rate = rate
            for packet in stream.encode(frame):  # type: ignore[union-attr]
                out.mux(packet)
        for packet in stream.encode(None):  # type: ignore[union-attr]
            out.mux(packet)
    return path
