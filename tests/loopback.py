"""Serving a test's fake server (Discord, voice, OpenAI emulators) on a free loopback port, the one way they all do."""

from __future__ import annotations

import abc
from typing import Self

from aiohttp import web

__all__ = ['GatewayServer', 'serve']


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


class GatewayServer(abc.ABC):
    """An emulator with a websocket gateway: ``async with`` serves :meth:`make_app` and closes the client's socket.

    Subclasses keep the client's live websocket in ``_ws`` so :meth:`close` can end it before the server.
    """

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._ws: web.WebSocketResponse | None = None

    @abc.abstractmethod
    def make_app(self) -> web.Application:
        """The emulator's routes."""

    async def start(self) -> Self:
        self._runner, self.port = await serve(self.make_app())
        return self

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
