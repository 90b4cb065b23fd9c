"""Serving a test's fake server (Discord, voice, OpenAI emulators) on a free loopback port, the one way they all do."""

from __future__ import annotations

from aiohttp import web

__all__ = ['serve']


async def serve(app: web.Application, *, access_log: bool = False) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``127.0.0.1`` on a port the system picks; ``runner.cleanup()`` stops it.

    :param app: the emulator's routes.
    :param access_log: log every request to ``aiohttp.access`` (off: emulators record requests themselves).
    :returns: the runner and the port it listens on.
    """
    runner = web.AppRunner(app, handle_signals=False) if access_log else web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, '127.0.0.1', 0)
    await site.start()
    port: int = runner.addresses[0][1]
    return runner, port
