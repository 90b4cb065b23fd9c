"""A stop finishes promptly: a shutdown step that hangs, even one ignoring its cancellation, is cut short."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import time

import pytest

from engine import shutdown
from engine.app import build_app
from engine.config import BotConfig, Config
from engine.shutdown import close_within


async def _hang_ignoring_cancellation(release: asyncio.Event) -> None:
    """A close that never ends by itself and swallows every cancellation until ``release`` is set."""
    while not release.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await release.wait()


async def test_a_step_that_ignores_its_cancellation_is_cut_short_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger='engine.shutdown'):
        finished = await asyncio.wait_for(close_within(_hang_ignoring_cancellation(release), 'the stuck part', 0.2), 5)
    assert not finished
    assert time.monotonic() - started < 2
    assert 'shutdown: the stuck part did not finish within 0.2s; cut short' in caplog.text
    release.set()


async def test_a_failing_step_is_logged_and_the_shutdown_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise OSError('disk gone')

    with caplog.at_level(logging.ERROR, logger='engine.shutdown'):
        assert not await close_within(broken(), 'the broken part')
    assert 'shutdown: the broken part failed' in caplog.text
    assert 'disk gone' in caplog.text


async def test_app_stop_closes_the_store_even_when_a_plugin_stop_hook_hangs(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(shutdown, 'STEP_TIMEOUT', 0.2)
    config = Config(bot=BotConfig(flows=[], store=str(tmp_path / 'store.sqlite3'), data_root=tmp_path, plugins=[]))
    app = build_app(config)
    await app.start()
    release = asyncio.Event()

    async def stuck_hook() -> None:
        await _hang_ignoring_cancellation(release)

    app.plugins.on_stop.append(stuck_hook)
    with caplog.at_level(logging.WARNING, logger='engine.shutdown'):
        stopping = asyncio.ensure_future(app.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
    release.set()  # let a hung stop end, so a failure is reported rather than the test hanging
    assert done, 'App.stop() waited on the plugin stop hook without limit'
    assert 'stuck_hook did not finish within 0.2s' in caplog.text
    with pytest.raises(Exception, match='closed'):
        await app.engine.store.get_record('any', 'thing')  # closed all the same
