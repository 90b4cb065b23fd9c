"""The UDP side of a voice session: IP discovery, then fire-and-forget RTP packets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from integrations.discord.voice.rtp import DISCOVERY_SIZE, discovery_request, parse_discovery_response

__all__ = ['VoiceUdp']

_log = logging.getLogger(__name__)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.discovery: asyncio.Future[bytes] | None = None
        self.on_packet: Callable[[bytes], None] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if self.discovery is not None and not self.discovery.done() and len(data) == DISCOVERY_SIZE:
            self.discovery.set_result(data)
        elif self.on_packet is not None:  # other members' audio (and RTCP), read only while listening
            self.on_packet(data)

    def error_received(self, exc: Exception) -> None:
        _log.warning('voice UDP error: %s', exc)


class VoiceUdp:
    """A UDP socket connected to the voice server given in READY."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Protocol, server: tuple[str, int]) -> None:
        self._transport = transport
        self._protocol = protocol
        self.server = server

    @classmethod
    async def open(cls, host: str, port: int) -> VoiceUdp:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(_Protocol, remote_addr=(host, port))
        return cls(transport, protocol, (host, port))

    async def discover(self, ssrc: int, *, attempts: int = 3, timeout: float = 2.0) -> tuple[str, int]:
        """Ask the server which address and port it sees us at (needed by SELECT_PROTOCOL)."""
        loop = asyncio.get_running_loop()
        for attempt in range(1, attempts + 1):
            self._protocol.discovery = loop.create_future()
            self._transport.sendto(discovery_request(ssrc))
            try:
                return parse_discovery_response(await asyncio.wait_for(self._protocol.discovery, timeout))
            except TimeoutError:
                _log.info('voice IP discovery attempt %s/%s to %s:%s timed out', attempt, attempts, *self.server)
        raise ConnectionError(f'voice server {self.server[0]}:{self.server[1]} did not answer IP discovery')

    @property
    def on_packet(self) -> Callable[[bytes], None] | None:
        """Called with every media datagram received; ``None`` ignores them (not listening)."""
        return self._protocol.on_packet

    @on_packet.setter
    def on_packet(self, handler: Callable[[bytes], None] | None) -> None:
        self._protocol.on_packet = handler

    def send(self, packet: bytes) -> None:
        """Send one RTP packet; UDP gives no delivery guarantee, so nothing is awaited."""
        if not self._transport.is_closing():
            self._transport.sendto(packet)

    def close(self) -> None:
        self._transport.close()
