"""The Discord emulator with several gateway shards, for tests that run bot processes side by side.

Each gateway connection is one shard session, known by the ``shard`` of its IDENTIFY; an event goes to the
shard of its guild, ``(guild_id >> 22) % shard_count`` as Discord routes it, and direct messages to shard 0.
REST is shared, as on Discord.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp import WSMsgType, web

from .emulator import DiscordEmulator, GatewayFrame, GatewayStream

__all__ = ['ShardedEmulator', 'guild_on_shard']


def guild_on_shard(shard: int, count: int, n: int = 1) -> int:
    """A snowflake-sized guild id whose events go to ``shard`` of ``count``."""
    return ((1_000_000 + n) * count + shard) << 22


@attrs.define(eq=False)
class _Session:
    ws: web.WebSocketResponse
    stream: GatewayStream
    shard: int | None = None
    seq: int = 0
    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)


class ShardedEmulator(DiscordEmulator):
    """:class:`DiscordEmulator` whose gateway serves ``shard_count`` shards at once."""

    def __init__(self, *, shard_count: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.shard_count = shard_count
        self.sessions: dict[int, _Session] = {}
        self._changed = asyncio.Condition()

    def shard_of(self, data: Mapping[str, Any]) -> int:
        guild = data.get('guild_id')
        return (int(guild) >> 22) % self.shard_count if guild else 0

    async def wait_shards(self, *shards: int, timeout: float = 30.0) -> None:
        """Wait until each of ``shards`` has an identified session."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: all(s in self.sessions for s in shards)), timeout)

    async def wait_shard_gone(self, shard: int, timeout: float = 30.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: shard not in self.sessions), timeout)

    async def _send_to(self, session: _Session, payload: Mapping[str, Any]) -> None:
        if session.ws.closed:
            return
        async with session.lock:
            await session.stream.send(session.ws, payload)

    async def dispatch(self, event: str, data: Mapping[str, Any]) -> int:
        """Send the event on its guild's shard; that shard must be connected."""
        shard = self.shard_of(data)
        session = self.sessions.get(shard)
        if session is None:
            raise RuntimeError(f'shard {shard} is not connected')
        session.seq += 1
        await self._send_to(session, {'op': 0, 't': event, 's': session.seq, 'd': data})
        return session.seq

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        session = _Session(ws, GatewayStream(request.query.get('compress')))
        await self._send_to(session, {'op': 10, 'd': {'heartbeat_interval': self.heartbeat_interval}})
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                await self._on_session_frame(session, json.loads(msg.data))
        finally:
            async with self._changed:
                if session.shard is not None and self.sessions.get(session.shard) is session:
                    del self.sessions[session.shard]
                self._changed.notify_all()
        return ws

    async def _on_session_frame(self, session: _Session, payload: dict[str, Any]) -> None:
        op, d = payload['op'], payload.get('d')
        self.frames.append(GatewayFrame(op, d))
        if op == 1:
            await self._send_to(session, {'op': 11})
        elif op == 2:
            self.identifies += 1
            shard, count = (d or {}).get('shard') or [0, 1]
            if count != self.shard_count:
                await session.ws.close(code=4010, message=b'Invalid shard')
                return
            session.shard = shard
            session.seq = 1
            ready = {**self._ready_payload(), 'shard': [shard, count], 'session_id': f'emulated-{shard}'}
            await self._send_to(session, {'op': 0, 't': 'READY', 's': 1, 'd': ready})
            async with self._changed:
                old = self.sessions.get(shard)
                self.sessions[shard] = session
                self._changed.notify_all()
            if old is not None and not old.ws.closed:
                await old.ws.close()
            self._ready.set()

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            await session.ws.close()
        await super().close()
