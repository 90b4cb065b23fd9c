"""The voice gateway websocket (v8): opcodes, close codes, sending, receiving, heartbeats.

This module only moves messages; what they mean is :mod:`integrations.discord.voice.connection`'s.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import attrs

__all__ = ['CLOSE_CODES', 'Close', 'CloseAction', 'VoiceGateway', 'VoiceOp', 'gateway_url']

_log = logging.getLogger(__name__)

VERSION = 8


class VoiceOp:
    """Voice gateway v8 opcodes (transport part; DAVE ones live in :class:`dave.DaveOp`)."""

    IDENTIFY = 0
    SELECT_PROTOCOL = 1
    READY = 2
    HEARTBEAT = 3
    SESSION_DESCRIPTION = 4
    SPEAKING = 5
    HEARTBEAT_ACK = 6
    RESUME = 7
    HELLO = 8
    RESUMED = 9


class CloseAction(enum.Enum):
    """What the client does after the websocket closed."""

    RESUME = 'resume'
    """Reconnect and RESUME the same session (UDP, keys and DAVE group stay)."""
    NEW_SESSION = 'new session'
    """Reconnect and IDENTIFY again: new SSRC, keys and DAVE group."""
    STOP = 'stop'
    """Give up: the bot was removed, or retrying cannot help."""


@attrs.frozen
class Close:
    """A close code's meaning for the logs and the action it calls for."""

    reason: str
    action: CloseAction


CLOSE_CODES: dict[int, Close] = {
    4001: Close('unknown opcode sent (client bug)', CloseAction.NEW_SESSION),
    4002: Close('invalid payload sent (client bug)', CloseAction.NEW_SESSION),
    4003: Close('payload sent before identifying', CloseAction.NEW_SESSION),
    4004: Close('authentication failed: wrong voice token', CloseAction.STOP),
    4005: Close('already authenticated', CloseAction.NEW_SESSION),
    4006: Close('session no longer valid', CloseAction.NEW_SESSION),
    4009: Close('session timed out', CloseAction.NEW_SESSION),
    4011: Close('voice server not found', CloseAction.STOP),
    4012: Close('unknown protocol selected', CloseAction.STOP),
    4014: Close('disconnected: kicked, channel deleted or moved elsewhere', CloseAction.STOP),
    4015: Close('voice server crashed', CloseAction.RESUME),
    4016: Close('unknown encryption mode', CloseAction.STOP),
    4017: Close('DAVE end-to-end encryption is required by this channel', CloseAction.STOP),
    4020: Close('bad request', CloseAction.STOP),
    4021: Close('rate limited', CloseAction.STOP),
    4022: Close('call terminated (channel deleted, guild deleted or bot kicked)', CloseAction.STOP),
}
"""Discord's voice close codes; anything else (a dropped connection, 1006, 1001) is resumed."""


def describe_close(code: int | None) -> Close:
    """Meaning of a close code; unknown codes and network drops are resumable."""
    if code is not None and code in CLOSE_CODES:
        return CLOSE_CODES[code]
    return Close(f'connection lost (close code {code})', CloseAction.RESUME)


def gateway_url(endpoint: str, *, secure: bool = True) -> str:
    """The websocket URL of ``endpoint`` (``host:port`` with or without scheme), asking for v8.

    :param secure: use ``wss://`` for a bare or ``wss://`` endpoint; ``False`` is for loopback tests.
    """
    host = endpoint.split('://', 1)[1] if '://' in endpoint else endpoint
    scheme = 'ws' if endpoint.startswith('ws://') or not secure else 'wss'
    return f'{scheme}://{host.rstrip("/")}/?v={VERSION}'


JsonHandler = Callable[[int, dict[str, Any]], Awaitable[None]]
BinaryHandler = Callable[[int, bytes], Awaitable[None]]


class VoiceGateway:
    """One websocket connection: sends ops, reads until closed, heartbeats with ``seq_ack``.

    :param on_json: called with (op, d) for every JSON message except heartbeat acks.
    :param on_binary: called with (op, payload) for every binary (DAVE) message.
    """

    def __init__(self, http: aiohttp.ClientSession, on_json: JsonHandler, on_binary: BinaryHandler) -> None:
        self._http = http
        self._on_json = on_json
        self._on_binary = on_binary
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._acked = True
        self.seq_ack = -1
        """Last sequence number received from the server (JSON ``seq`` or binary prefix)."""
        self.latency: float | None = None
        self._sent_at = 0.0

    async def open(self, url: str, *, timeout: float = 10.0) -> None:
        self._ws = await self._http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=timeout), autoping=True)

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def send(self, op: int, d: Any) -> None:
        """Send a JSON op; a closed socket raises ``ConnectionError``."""
        await self._socket().send_str(json.dumps({'op': op, 'd': d}))

    async def send_binary(self, frame: bytes) -> None:
        await self._socket().send_bytes(frame)

    async def read(self) -> int | None:
        """Dispatch messages until the socket closes; return the close code (``None`` if it just dropped)."""
        ws = self._socket()
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await self._text(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await self._binary(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    _log.warning('voice websocket error: %s', ws.exception())
                    break
        finally:
            self._stop_heartbeat()
        return ws.close_code

    async def close(self, code: int = 1000) -> None:
        self._stop_heartbeat()
        if self._ws is not None and not self._ws.closed:
            await self._ws.close(code=code)

    def start_heartbeat(self, interval_ms: float) -> None:
        """Start (or restart) heartbeating every ``interval_ms`` as HELLO asked."""
        self._stop_heartbeat()
        self._acked = True
        self._heartbeat = asyncio.create_task(self._beat(interval_ms / 1000), name='voice heartbeat')

    async def _beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self.is_open:
                return
            if not self._acked:
                _log.warning('voice heartbeat not acknowledged within %.1f s: reconnecting', interval)
                await self.close(4000)
                return
            self._acked = False
            self._sent_at = time.monotonic()
            try:
                await self.send(VoiceOp.HEARTBEAT, {'t': int(time.time() * 1000), 'seq_ack': self.seq_ack})
            except ConnectionError as exc:
                _log.info('voice heartbeat could not be sent: %s', exc)
                return

    def _stop_heartbeat(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _text(self, data: str) -> None:
        try:
            message = json.loads(data)
            op, d = int(message['op']), message.get('d')
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning('malformed voice gateway message ignored (%s): %.200s', exc, data)
            return
        if isinstance(message.get('seq'), int):
            self.seq_ack = message['seq']
        if op == VoiceOp.HEARTBEAT_ACK:
            self._acked = True
            self.latency = time.monotonic() - self._sent_at
            return
        await self._on_json(op, d if isinstance(d, dict) else {})

    async def _binary(self, data: bytes) -> None:
        if len(data) < 3:
            _log.warning('binary voice gateway frame of %s bytes ignored', len(data))
            return
        self.seq_ack = int.from_bytes(data[:2], 'big')
        await self._on_binary(data[2], data[3:])

    def _socket(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None or self._ws.closed:
            raise ConnectionError('the voice websocket is closed')
        return self._ws
