"""The bot's kept connections (:mod:`integrations.discord.keepalive`) against a hostile server or network: answers
framed every way HTTP allows, oversize heads and bodies (a gzip bomb included), a byte a second, answers nobody asked
for, cancellation while waiting; the pool must stay bounded and usable, and a request is never written twice."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator

import pytest

from integrations.discord import keepalive
from integrations.discord.keepalive import Connections, Lost, NotSent

from .test_keepalive import Handler, Server, answer, echo, request


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server() as srv:
        yield srv


@pytest.fixture
async def pool(server: Server) -> AsyncIterator[Connections]:
    conns = Connections(server.url)
    yield conns
    await conns.aclose()


def sends(data: bytes, *, close: bool = False) -> Handler:
    """A handler writing ``data`` whatever was asked (and closing after it)."""

    async def handler(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        if close:
            await writer.drain()
            writer.close()

    return handler


def _usable(pool: Connections) -> None:
    assert not pool.busy and pool._slots._value == pool.limit, 'a connection or a slot leaked'


async def test_an_answer_delimited_by_the_close_is_read_whole(server: Server, pool: Connections) -> None:
    server.handler = sends(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"id":"1"}', close=True)
    got = await pool.exchange(request(), 5)
    assert (got.status, got.body) == (200, b'{"id":"1"}')
    assert pool.idle == [] and len(server.requests) == 1
    _usable(pool)


async def test_an_answer_delimited_by_the_close_but_reset_is_lost(server: Server, pool: Connections) -> None:
    async def reset(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"id":')
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.get_extra_info('socket').setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        writer.transport.abort()  # a reset, not the end of the answer

    server.handler = reset
    with pytest.raises(Lost, match='before the answer was complete'):
        await pool.exchange(request(), 5)
    _usable(pool)


async def test_an_http_1_0_answer_is_read_and_its_connection_not_kept(server: Server, pool: Connections) -> None:
    server.handler = sends(b'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok')
    assert (await pool.exchange(request(), 5)).body == b'ok'
    assert pool.idle == []
    server.handler = sends(b'HTTP/1.0 200 OK\r\n\r\nto the end', close=True)
    assert (await pool.exchange(request(), 5)).body == b'to the end'


async def test_interim_1xx_answers_are_skipped_for_the_final_one(server: Server, pool: Connections) -> None:
    server.handler = sends(
        b'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n' + answer(b'1')
    )
    got = await pool.exchange(request(), 5)
    assert (got.status, got.body, 'Link' in got.headers) == (200, b'1', False)
    server.handler = echo
    assert (await pool.exchange(request(b'2'), 5)).body == b'2'
    assert server.connections == 1


async def test_a_switching_protocols_answer_is_lost(server: Server, pool: Connections) -> None:
    server.handler = sends(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n')
    with pytest.raises(Lost):
        await pool.exchange(request(), 5)
    assert pool.idle == []
    _usable(pool)


async def test_an_endless_head_is_refused_before_it_fills_the_memory(server: Server, pool: Connections) -> None:
    async def endless(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\n')
        for i in range(10_000):
            writer.write(b'X-%d: %s\r\n' % (i, b'a' * 1000))
            await writer.drain()
            if writer.is_closing():
                return

    server.handler = endless
    with pytest.raises(Lost, match='head larger than'):
        await pool.exchange(request(), 5)
    server.handler = sends(b'HTTP/1.1 200 OK\r\nX-Huge: ' + b'a' * (keepalive.MAX_HEAD + 1) + b'\r\n\r\n')
    with pytest.raises(Lost, match='head larger than'):
        await pool.exchange(request(), 5)
    server.handler = echo
    assert (await pool.exchange(request(b'after'), 5)).body == b'after'
    _usable(pool)


async def test_a_large_body_in_one_packet_with_a_small_head_is_taken(server: Server, pool: Connections) -> None:
    big = b'x' * (keepalive.MAX_HEAD * 4)
    server.handler = sends(answer(big))
    assert (await pool.exchange(request(), 5)).body == big


async def test_a_byte_a_tick_answer_is_cut_at_the_total_time_out(server: Server, pool: Connections) -> None:
    async def slowloris(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        for byte in answer(b'{"id":"1"}' + b' ' * 1000):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.01)

    server.handler = slowloris
    started = time.monotonic()
    with pytest.raises(Lost, match=r'within 0\.3 s'):
        await pool.exchange(request(), 0.3)
    assert time.monotonic() - started < 1
    _usable(pool)


async def test_an_answer_nobody_asked_for_drops_the_idle_connection(server: Server, pool: Connections) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def remember(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(answer(body))

    server.handler = remember
    await pool.exchange(request(b'1'), 5)
    writers[0].write(answer(b'{"id":"forged"}'))  # while idle
    await asyncio.sleep(0.05)
    assert pool.idle == []
    assert (await pool.exchange(request(b'2'), 5)).body == b'2'
    assert server.connections == 2


@pytest.mark.parametrize('second', [answer(b'forged'), answer(b'forged')[:20], b'H'], ids=['whole', 'head', 'byte'])
async def test_two_answers_in_one_packet_give_the_first_and_drop_the_connection(
    server: Server, pool: Connections, second: bytes
) -> None:
    server.handler = sends(answer(b'1') + second)
    assert (await pool.exchange(request(), 5)).body == b'1'
    server.handler = echo
    assert (await pool.exchange(request(b'2'), 5)).body == b'2'  # never the forged one
    assert server.connections == 2


def _gzip_bomb(size: int) -> bytes:
    packer = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
    chunk = b'\0' * (1 << 20)
    return b''.join([*(packer.compress(chunk) for _ in range(size >> 20)), packer.flush()])


@pytest.mark.parametrize('coding', ['gzip', 'deflate'])
async def test_a_compression_bomb_is_refused_at_the_decoded_size(
    server: Server, pool: Connections, coding: str
) -> None:
    bomb = _gzip_bomb(64 << 20) if coding == 'gzip' else zlib.compress(b'\0' * (64 << 20), 9)
    assert len(bomb) < keepalive.MAX_BODY // 10
    server.handler = sends(
        b'HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s' % (coding.encode(), len(bomb), bomb)
    )
    with pytest.raises(Lost, match='larger than'):
        await pool.exchange(request(), 5)
    small = gzip.compress(b'x' * keepalive.MAX_BODY)
    server.handler = sends(
        b'HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s' % (len(small), small)
    )
    assert len((await pool.exchange(request(), 5)).body) == keepalive.MAX_BODY


async def test_a_truncated_gzip_answer_is_lost(server: Server, pool: Connections) -> None:
    packed = gzip.compress(b'{"id":"1"}')[:-6]
    server.handler = sends(
        b'HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s' % (len(packed), packed)
    )
    with pytest.raises(Lost, match='not decodable'):
        await pool.exchange(request(), 5)


async def test_cancelling_a_request_waiting_for_a_free_connection_leaks_nothing(server: Server) -> None:
    async def slow(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.2)
        writer.write(answer(body))

    server.handler = slow
    pool = Connections(server.url, limit=1)
    try:
        first = asyncio.create_task(pool.exchange(request(b'1'), 5))
        waiting = asyncio.create_task(pool.exchange(request(b'2'), 5))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await first).body == b'1'
        assert [r.endswith(b'2') for r in server.requests] == [False]
        _usable(pool)
        server.handler = echo
        assert (await pool.exchange(request(b'3'), 5)).body == b'3'
    finally:
        await pool.aclose()


@contextlib.asynccontextmanager
async def mute_server() -> AsyncIterator[tuple[str, list[asyncio.StreamWriter]]]:
    """A server that accepts TCP connections and never says a word (a TLS handshake never ends); its URL and its
    accepted connections."""
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    srv = await asyncio.start_server(mute, '127.0.0.1', 0)
    try:
        yield f'https://127.0.0.1:{srv.sockets[0].getsockname()[1]}/api', accepted
    finally:
        for writer in accepted:
            writer.close()
        srv.close()
        await srv.wait_closed()


async def test_cancelling_a_request_while_its_connection_opens_leaks_nothing() -> None:
    async with mute_server() as (url, accepted):
        pool = Connections(url)
        try:
            task = asyncio.create_task(pool.exchange(request(), 5))
            while not accepted:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            _usable(pool)
            assert pool.idle == []
        finally:
            await pool.aclose()


async def test_a_connect_time_out_is_not_sent() -> None:
    async with mute_server() as (url, _):
        pool = Connections(url, connect_timeout=0.1)
        try:
            with pytest.raises(NotSent, match='cannot connect'):
                await pool.exchange(request(), 5)
            _usable(pool)
        finally:
            await pool.aclose()


async def test_ipv6_loopback_urls_are_served() -> None:
    async with Server(host='::1') as srv:
        assert srv.url.startswith('http://[::1]:')
        pool = Connections(srv.url)
        try:
            assert (await pool.exchange(request(b'v6'), 5)).body == b'v6'
            assert (await pool.exchange(request(b'v6'), 5)).body == b'v6'
            assert srv.connections == 1
        finally:
            await pool.aclose()
