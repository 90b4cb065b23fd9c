"""Stopping the Discord bot finishes promptly, even when a cancellation is lost or a part hangs on close."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from engine import shutdown
from engine.app import App
from integrations.discord.bot import DiscordBot, serve
from integrations.discord.config import DiscordConfig

from .conftest import start_bot
from .emulator import DiscordEmulator


async def test_serve_stops_when_asked_even_if_its_cancellation_was_absorbed_during_start(
    emulator: DiscordEmulator, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load a library can swallow the cancel that lands as one of its awaits completes; the start then
    goes on. serve() must still stop on the ``stopping`` event instead of waiting on the gateway for ever."""
    bots: list[DiscordBot] = []
    in_start = asyncio.Event()
    original_start = DiscordBot.start

    async def start_absorbing_a_cancel(self: DiscordBot, **options: Any) -> None:
        bots.append(self)
        in_start.set()
        with contextlib.suppress(asyncio.CancelledError):  # absorbed, as a library under load can
            await asyncio.sleep(3600)
        await original_start(self, **options)

    monkeypatch.setattr(DiscordBot, 'start', start_absorbing_a_cancel)
    stopping = asyncio.Event()
    config = DiscordConfig(rest_url=emulator.rest_url)
    task = asyncio.ensure_future(
        serve(app.engine, config, stopping=stopping, token=emulator.token, logs=None, voice=lambda _bot: None)
    )
    await asyncio.wait_for(in_start.wait(), 10)
    stopping.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=20)
    if not done:
        await bots[0].bot.close()  # the failure, not a hung test
    assert done, 'serve() kept waiting on the gateway after it was asked to stop'
    assert not bots[0].bot.is_alive  # the gateway was closed, not left behind


class _StuckVoice:
    """A voice manager whose close never ends and ignores its cancellation."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def close(self) -> None:
        while not self.release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await self.release.wait()


async def test_closing_the_bot_cuts_a_hanging_part_short_and_still_closes_the_gateway(
    emulator: DiscordEmulator, app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(shutdown, 'STEP_TIMEOUT', 3.0)  # the gateway's own close takes a moment
    run = await start_bot(emulator, app)
    voice = _StuckVoice()
    run.bot.adapter.voice = voice  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger='engine.shutdown'):
        closing = asyncio.ensure_future(run.bot.close())
        done, _ = await asyncio.wait({closing}, timeout=15)
    voice.release.set()
    assert done, 'DiscordBot.close() waited on the voice manager without limit'
    assert 'leaving the voice channels did not finish within 3s; cut short' in caplog.text
    assert not run.bot.bot.is_alive
