"""The bot's own keep-alive HTTP/1.1 connections (:mod:`integrations.discord.keepalive`) against a scripted server:
reuse, a server closing (idle, mid-answer, without answering), time-outs, malformed and oversize answers, TLS with
verification, many requests at once, closing with requests in flight; and never a request written twice."""

from __future__ import annotations

import asyncio
import datetime
import gc
import gzip
import ipaddress
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from integrations.discord import keepalive
from integrations.discord.keepalive import Connections, Lost, NotSent, Unanswered

Handler = Callable[['Server', bytes, asyncio.StreamWriter], Awaitable[None]]


def request(body: bytes = b'{}', path: str = '/api/v10/x') -> bytes:
    return b'POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s' % (path.encode(), len(body), body)


def answer(body: bytes, *, status: int = 200, extra: str = '') -> bytes:
    head = f'HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n'
    return head.encode() + body


async def echo(server: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(answer(body))


class Server:
    """A loopback HTTP/1.1 server reading requests with a Content-Length; ``handler`` answers each (or not)."""

    def __init__(self, handler: Handler = echo, host: str = '127.0.0.1') -> None:
        self.handler = handler
        self.host = host
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.tls: ssl.SSLContext | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        host = f'[{self.host}]' if ':' in self.host else self.host
        return f'{"https" if self.tls else "http"}://{host}:{port}/api/v10'

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b'\r\n\r\n')
                length = next(
                    int(line.split(b':')[1])
                    for line in head.split(b'\r\n')
                    if line.lower().startswith(b'content-length')
                )
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                await self.handler(self, body, writer)
                if writer.is_closing():
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server() as srv:
        yield srv


@pytest.fixture
async def pool(server: Server) -> AsyncIterator[Connections]:
    conns = Connections(server.url)
    yield conns
    await conns.aclose()


async def test_requests_one_after_another_share_one_connection(server: Server, pool: Connections) -> None:
    for i in range(3):
        got = await pool.exchange(request(b'{"n":%d}' % i), 5)
        assert (got.status, got.body, got.content_type) == (200, b'{"n":%d}' % i, 'application/json')
    assert server.connections == 1
    assert len(server.requests) == 3


async def test_the_request_bytes_reach_the_server_unchanged(server: Server, pool: Connections) -> None:
    sent = request('{"content":"ünï\\n"}'.encode(), '/api/v10/channels/1/messages')
    await pool.exchange(sent, 5)
    assert server.requests == [sent]


async def test_a_connection_the_server_closed_while_idle_is_not_used(server: Server, pool: Connections) -> None:
    async def answer_and_close(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(answer(body, extra='Connection: keep-alive\r\n'))
        await writer.drain()
        writer.close()  # the server's keep-alive time-out, right after the answer

    server.handler = answer_and_close
    await pool.exchange(request(b'1'), 5)
    await asyncio.sleep(0.05)  # the close arrives while the connection is idle
    server.handler = echo
    assert (await pool.exchange(request(b'2'), 5)).body == b'2'
    assert server.connections == 2
    assert len(server.requests) == 2  # each written once


async def test_an_answer_saying_connection_close_ends_the_connection(server: Server, pool: Connections) -> None:
    async def closing(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(answer(body, extra='Connection: close\r\n'))

    server.handler = closing
    await pool.exchange(request(b'1'), 5)
    assert pool.idle == []
    server.handler = echo
    await pool.exchange(request(b'2'), 5)
    assert server.connections == 2


async def test_idle_connections_older_than_the_idle_timeout_are_closed_not_used(server: Server) -> None:
    pool = Connections(server.url, idle_timeout=0.05)
    try:
        await pool.exchange(request(), 5)
        await asyncio.sleep(0.1)
        await pool.exchange(request(), 5)
        assert server.connections == 2
    finally:
        await pool.aclose()


async def test_a_server_closing_mid_answer_loses_the_request_which_is_not_written_again(
    server: Server, pool: Connections
) -> None:
    async def half(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(answer(b'{"id":"1234567890"}')[:-5])
        await writer.drain()
        writer.close()

    server.handler = half
    with pytest.raises(Lost, match='closed before the answer was complete'):
        await pool.exchange(request(), 5)
    assert len(server.requests) == 1
    assert pool.idle == [] and pool.busy == set()


async def test_a_server_closing_without_answering_loses_the_request(server: Server, pool: Connections) -> None:
    async def silent_close(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server.handler = silent_close
    with pytest.raises(Lost):
        await pool.exchange(request(), 5)
    assert len(server.requests) == 1


async def test_a_kept_connection_closed_before_any_answer_byte_is_unanswered_a_fresh_one_lost(
    server: Server, pool: Connections
) -> None:
    async def close_the_second(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        if body == b'2':  # the server's keep-alive close meeting our request: it never read it
            writer.close()
        else:
            writer.write(answer(body))

    server.handler = close_the_second
    await pool.exchange(request(b'1'), 5)
    with pytest.raises(Unanswered, match='kept connection closed before any answer'):
        await pool.exchange(request(b'2'), 5)
    with pytest.raises(Lost) as fresh:  # a new connection closed unanswered: the server did read it
        await pool.exchange(request(b'2'), 5)
    assert not isinstance(fresh.value, Unanswered)
    assert pool.idle == [] and pool.busy == set()


async def test_a_kept_connection_cut_mid_answer_or_timed_out_is_lost_not_unanswered(
    server: Server, pool: Connections
) -> None:
    async def cut(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        if body == b'cut':
            writer.write(answer(b'{"id":"1"}')[:5])
            await writer.drain()
            writer.close()
        elif body == b'slow':
            await asyncio.sleep(1)
        else:
            writer.write(answer(body))

    server.handler = cut
    for body, timeout in ((b'cut', 5.0), (b'slow', 0.1)):
        await pool.exchange(request(b'ok'), 5)  # a kept connection for the next one
        with pytest.raises(Lost) as raised:
            await pool.exchange(request(body), timeout)
        assert not isinstance(raised.value, Unanswered), body


async def test_an_answer_that_does_not_come_in_time_loses_the_request(server: Server, pool: Connections) -> None:
    async def never(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    server.handler = never
    with pytest.raises(Lost, match=r'within 0\.1 s'):
        await pool.exchange(request(), 0.1)
    assert pool.idle == [] and pool.busy == set()  # its late answer would belong to nobody


async def test_malformed_and_oversize_answers_are_lost_and_their_connection_dropped(
    server: Server, pool: Connections, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def garbage(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b'NOT HTTP AT ALL\r\n\r\n')

    server.handler = garbage
    with pytest.raises(Lost, match='malformed'):
        await pool.exchange(request(), 5)
    monkeypatch.setattr(keepalive, 'MAX_BODY', 10)
    server.handler = echo
    with pytest.raises(Lost, match='malformed'):
        await pool.exchange(request(b'x' * 11), 5)
    assert (await pool.exchange(request(b'x' * 10), 5)).body == b'x' * 10
    assert pool.idle and len(pool.idle) == 1


async def test_gzip_answers_are_decoded_and_codings_not_offered_refused(server: Server, pool: Connections) -> None:
    coding = 'gzip'

    async def compressed(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        packed = gzip.compress(body)
        writer.write(
            f'HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\nContent-Length: {len(packed)}\r\n\r\n'.encode() + packed
        )

    server.handler = compressed
    assert (await pool.exchange(request(b'{"a":1}'), 5)).body == b'{"a":1}'
    coding = 'br'
    with pytest.raises(Lost, match="'br' was not offered"):
        await pool.exchange(request(), 5)


async def test_chunked_answers_are_read_whole(server: Server, pool: Connections) -> None:
    async def chunked(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n')

    server.handler = chunked
    assert (await pool.exchange(request(), 5)).body == b'abcde'
    assert (await pool.exchange(request(), 5)).body == b'abcde'
    assert server.connections == 1


async def test_many_requests_at_once_each_get_their_own_answer(server: Server, pool: Connections) -> None:
    async def slow_echo(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.01)
        writer.write(answer(body))

    server.handler = slow_echo
    bodies = [b'{"n":%d}' % i for i in range(200)]
    got = await asyncio.gather(*(pool.exchange(request(b), 10) for b in bodies))
    assert [a.body for a in got] == bodies
    assert len(server.requests) == 200
    assert server.connections == len(pool.idle) <= 200
    await asyncio.gather(*(pool.exchange(request(b), 10) for b in bodies[:50]))
    assert server.connections <= 200  # the kept ones were used again


async def test_connections_never_exceed_the_limit_and_requests_over_it_wait_for_a_free_one(server: Server) -> None:
    async def slow_echo(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.02)
        writer.write(answer(body))

    server.handler = slow_echo
    pool = Connections(server.url, limit=3)
    try:
        bodies = [b'%d' % i for i in range(30)]
        got = await asyncio.gather(*(pool.exchange(request(b), 10) for b in bodies))
        assert [a.body for a in got] == bodies
        assert server.connections == 3  # opened in all, none closed: never more than three at once
        assert len(pool.idle) == 3 and not pool.busy
    finally:
        await pool.aclose()


async def test_a_request_that_finds_no_free_connection_in_the_connect_time_is_not_sent(server: Server) -> None:
    async def slow(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.5)
        writer.write(answer(body))

    server.handler = slow
    pool = Connections(server.url, limit=1, connect_timeout=0.1)
    try:
        first = asyncio.create_task(pool.exchange(request(b'1'), 5))
        await asyncio.sleep(0.02)
        with pytest.raises(NotSent, match='no free connection'):
            await pool.exchange(request(b'2'), 5)
        assert (await first).body == b'1'
        assert len(server.requests) == 1
        assert (await pool.exchange(request(b'3'), 5)).body == b'3'  # the slot came back
    finally:
        await pool.aclose()


async def test_nothing_is_written_when_no_connection_can_be_opened() -> None:
    async with Server() as srv:
        url = srv.url
    pool = Connections(url)  # the port is closed now
    with pytest.raises(NotSent, match='cannot connect'):
        await pool.exchange(request(), 5)
    await pool.aclose()
    with pytest.raises(NotSent, match='closed'):
        await pool.exchange(request(), 5)


async def test_closing_fails_requests_in_flight_and_leaves_no_open_transport(server: Server) -> None:
    async def never(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    pool = Connections(server.url)
    await pool.exchange(request(), 5)  # one idle connection
    server.handler = never
    flying = [asyncio.create_task(pool.exchange(request(), 30)) for _ in range(3)]
    while len(server.requests) < 4:
        await asyncio.sleep(0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        await asyncio.wait_for(pool.aclose(), 1)
        results = await asyncio.gather(*flying, return_exceptions=True)
        gc.collect()
    assert all(isinstance(r, Lost) for r in results), results
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
    assert pool.idle == [] and pool.busy == set()


async def test_a_cancelled_request_drops_its_connection(server: Server, pool: Connections) -> None:
    async def slow(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.2)
        writer.write(answer(body))

    server.handler = slow
    task = asyncio.create_task(pool.exchange(request(b'late'), 5))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    server.handler = echo
    assert (await pool.exchange(request(b'next'), 5)).body == b'next'  # not the late answer of another request
    assert server.connections == 2


def _certificate(tmp: Path, *, expired: bool = False) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'flowbot test')])
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3 if expired else 0)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / 'cert.pem', tmp / 'key.pem'
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_https_verifies_the_server_and_writes_nothing_to_an_untrusted_one(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    srv = Server()
    srv.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    srv.tls.load_cert_chain(cert, key)
    async with srv:
        untrusting = Connections(srv.url)  # the system's roots: the self-signed certificate is refused
        with pytest.raises(NotSent, match='CERTIFICATE_VERIFY_FAILED'):
            await untrusting.exchange(request(), 5)
        await untrusting.aclose()
        assert srv.requests == []
        trusting = Connections(srv.url, ssl=ssl.create_default_context(cafile=cert))
        try:
            assert (await trusting.exchange(request(b'{"tls":1}'), 5)).body == b'{"tls":1}'
            assert (await trusting.exchange(request(b'{"tls":2}'), 5)).body == b'{"tls":2}'
        finally:
            await trusting.aclose()
        assert srv.connections == 1  # the refused handshake never reached the server's handler


def test_only_http_and_https_urls_are_taken() -> None:
    for url in ('ftp://example.com/api', 'unix:///tmp/sock', 'http:///no-host'):
        with pytest.raises(ValueError, match='not an http'):
            Connections(url)
