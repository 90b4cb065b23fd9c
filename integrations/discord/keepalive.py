"""Keep-alive HTTP/1.1 connections to one origin, for requests built ahead as bytes: one write, one parsed answer.

aiohttp's client builds a request object, a connector lease, a writer and a response object for every call: about
145 Python calls and a quarter of the bot's CPU per reply (``benchmarks/discord.py``). The bot's most common REST
call, a text reply (:mod:`integrations.discord.rest`), needs none of that: its head is known but for the length,
and its answer is read whole. Here a request is one ``transport.write`` on a kept connection, and the answer is
parsed by ``httptools`` (C, MagicStack's parser of uvicorn), which calls back once per header and body piece.

What is ours is the lifecycle, kept small: a connection carries one request at a time; it goes back to the idle
list when its answer is complete and both sides keep it alive; an idle connection older than ``idle_timeout`` is
closed rather than used, which makes a server's keep-alive close racing a new request rare.

A request is never written twice here, and the caller learns what it may do: :class:`NotSent` means nothing was
written (closed, or no connection could be opened), so it may be sent another way; :class:`Unanswered` (a kind of
:class:`Lost`) means a *kept* connection closed before a single byte of the answer came, the keep-alive race: the
server closed the idle connection as the request was written and almost surely never read it, so it may be sent
again once, as aiohttp's clients do; :class:`Lost` otherwise means it was written and no complete answer came (a
new connection closed, the time ran out, a partial or malformed answer): the server may have acted on it, and only
the caller knows whether repeating is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_
import time
import zlib

import httptools
import multidict
import yarl

__all__ = ['MAX_BODY', 'MAX_HEAD', 'Answer', 'Connections', 'Lost', 'NotSent', 'Unanswered']

MAX_BODY = 8 * 1024 * 1024
"""An answer larger than this, on the wire or decoded, is refused (a text reply's is about a kilobyte): a server
cannot fill the memory, with a gzip bomb either."""
MAX_HEAD = 64 * 1024
"""An answer's status line and headers larger than this are refused (Discord's are about a kilobyte; aiohttp refuses
a line or field over 8 KiB): the parser keeps a header it has not finished, so an endless one would fill the memory."""


class NotSent(Exception):
    """Nothing of the request was written: it may be sent another way."""


class Lost(Exception):
    """The request was written but no complete answer came: the server may have acted on it."""


class Unanswered(Lost):
    """A kept connection closed before any byte of the answer: the server almost surely never read the request."""


class Answer:
    """A complete HTTP answer, with what hikari's rate-limit and error code read of aiohttp's response
    (``status``, ``headers``, ``content_type``, ``real_url``, ``read()``), so that code judges it unchanged."""

    __slots__ = ('body', 'headers', 'real_url', 'status')

    def __init__(self, status: int, headers: multidict.CIMultiDict[str], body: bytes, url: yarl.URL) -> None:
        self.status = status
        self.headers = multidict.CIMultiDictProxy(headers)
        self.body = body
        self.real_url = url

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case (``application/json``), as aiohttp gives it."""
        return self.headers.get('Content-Type', 'application/octet-stream').split(';', 1)[0].strip().lower()

    async def read(self) -> bytes:
        return self.body


class _Connection(asyncio.Protocol):
    """One kept connection; ``waiter`` is the answer of the request in flight on it."""

    def __init__(self, pool: Connections) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.idle_since = 0.0
        self.url = pool.url
        """The URL of the request in flight."""
        self._headers: multidict.CIMultiDict[str] = multidict.CIMultiDict()
        self._body: list[bytes] = []
        self._size = 0
        self.answers = 0
        """Answers completed on this connection: after one, it is a kept connection."""
        self.heard = False
        """Whether any byte of the answer in flight came."""
        self.head_done = False
        """Whether the head (status and headers) of the answer in flight is complete."""
        self._head_size = 0
        """Bytes received while the head was not complete: an endless header is refused before httptools ends it."""
        self._head_fields = 0

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing asked: a server talking out of turn is not trusted further
            self._drop(Lost('the server sent data no request asked for'))
            return
        self.heard = True
        if not self.head_done:
            self._head_size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:  # ours raised in a callback is its context
            self._drop(Lost(f'malformed answer: {exc.__context__ or exc}'))
        except httptools.HttpParserUpgrade:
            self._drop(Lost('the server switched protocols'))
        else:
            if not self.head_done and self._head_size > MAX_HEAD and self.waiter is not None:
                self._drop(Lost(f'answer head larger than {MAX_HEAD} bytes'))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pool._forget(self)
        why = exc or 'closed by the server'
        if exc is None and self.waiter is not None and self.head_done and _ends_with_close(self._headers):
            self._finish(keep=False)  # its body was all that came before the (orderly) close
        elif self.answers and not self.heard:
            self._fail(Unanswered(f'kept connection closed before any answer ({why})'))
        else:
            self._fail(Lost(f'connection closed before the answer was complete ({why})'))

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if self.waiter is None:  # a second answer after the one asked for: the connection is dropped
            raise ValueError('an answer no request asked for')  # httptools turns it into HttpParserError

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += len(name) + len(value) + 4  # a head that came in one packet is counted here
        if self._head_fields > MAX_HEAD:
            raise ValueError(f'answer head larger than {MAX_HEAD} bytes')  # httptools turns it into HttpParserError
        self._headers.add(name.decode('latin-1'), value.decode('latin-1'))

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            raise ValueError(f'answer larger than {MAX_BODY} bytes')  # httptools turns it into HttpParserError
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:  # the parser raises HttpParserUpgrade when it says Upgrade; without it, as bad
                self._drop(Lost('the server switched protocols'))
                return
            self._headers, self.head_done, self._head_size, self._head_fields = multidict.CIMultiDict(), False, 0, 0
            return  # an interim answer (100 Continue, 103 Early Hints): the final one follows, as aiohttp reads it
        self._finish(self.parser.should_keep_alive())

    # -- ours

    def _finish(self, keep: bool) -> None:
        """Give the complete answer to its request; keep the connection if ``keep`` and the request still waits."""
        waiter, self.waiter = self.waiter, None
        status = self.parser.get_status_code()
        headers, body = self._headers, b''.join(self._body)
        self._headers, self._body, self._size = multidict.CIMultiDict(), [], 0
        self.head_done, self._head_size, self._head_fields = False, 0, 0
        self.answers += 1
        keep = keep and waiter is not None and not waiter.done()
        if keep:
            self.pool._release(self)
        else:
            self._drop(None)
        if waiter is None or waiter.done():  # cancelled meanwhile: the connection is dropped above
            return
        try:
            body = _decoded(headers.get('Content-Encoding', ''), body)
        except (ValueError, zlib.error) as exc:
            waiter.set_exception(Lost(f'answer not decodable: {exc}'))
            return
        waiter.set_result(Answer(status, headers, body, self.url))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _drop(self, exc: Exception | None) -> None:
        """Close the connection (an answer in flight fails with ``exc``)."""
        if exc is not None:
            self._fail(exc)
        self.pool._forget(self)
        if self.transport is not None:
            self.transport.close()


def _ends_with_close(headers: multidict.CIMultiDict[str]) -> bool:
    """Whether an answer with these headers ends where the connection closes (neither a length nor chunks)."""
    return 'Content-Length' not in headers and 'chunked' not in headers.get('Transfer-Encoding', '').lower()


def _decoded(encoding: str, body: bytes) -> bytes:
    """The body without its content coding; only those offered (``gzip, deflate``) are accepted.

    :raises ValueError: a coding that was not offered, a truncated stream, or more than :data:`MAX_BODY` decoded.
    """
    encoding = encoding.strip().lower()
    if not encoding or encoding == 'identity':
        return body
    if encoding == 'gzip':
        return _inflated(body, 16 + zlib.MAX_WBITS)
    if encoding == 'deflate':  # zlib-wrapped as the RFC says, raw as some servers send it
        try:
            return _inflated(body, zlib.MAX_WBITS)
        except zlib.error:
            return _inflated(body, -zlib.MAX_WBITS)
    raise ValueError(f'content coding {encoding!r} was not offered')


def _inflated(body: bytes, wbits: int) -> bytes:
    """``body`` decompressed, never more than :data:`MAX_BODY` bytes of it (a few kilobytes can inflate to gigabytes).

    :raises ValueError: larger decoded, or the stream is truncated.
    """
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, MAX_BODY + 1)
    if len(out) > MAX_BODY:
        raise ValueError(f'answer larger than {MAX_BODY} bytes decoded')
    if not inflater.eof:
        raise ValueError('compressed answer truncated')
    return out


class Connections:
    """Keep-alive connections to the origin of ``url`` (``http`` or ``https``).

    :param ssl: the TLS context for ``https`` (verification as the context says).
    :param connect_timeout: seconds to open a connection (TCP and TLS); ``None``: no limit.
    :param idle_timeout: an idle connection older than this is closed instead of used.
    :param limit: at most this many connections, open or opening (aiohttp's connector has one too): a request over it
        waits for a free one, within ``connect_timeout``, as aiohttp's does. A request holds one connection from
        its write to its answer, and a new one is opened only when none is idle, so waiting keeps the total bounded.
    """

    def __init__(
        self,
        url: str,
        *,
        ssl: ssl_.SSLContext | None = None,
        connect_timeout: float | None = 30.0,
        idle_timeout: float = 15.0,
        limit: int = 100,
    ) -> None:
        self.url = yarl.URL(url)
        if self.url.scheme not in ('http', 'https') or not self.url.host:
            raise ValueError(f'not an http(s) URL: {url}')
        self.ssl = (ssl or ssl_.create_default_context()) if self.url.scheme == 'https' else None
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        self.closed = False
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)

    async def exchange(self, request: bytes, timeout: float | None, url: yarl.URL | None = None) -> Answer:
        """Write ``request`` (a whole HTTP/1.1 request) on a kept or new connection and read its answer.

        :param timeout: seconds from writing to the complete answer; ``None``: no limit.
        :param url: the request's URL, the answer's ``real_url`` (default: the connections' URL).
        :raises NotSent: closed, no connection free within ``connect_timeout`` or none could be opened: nothing was
            written.
        :raises Unanswered: written on a kept connection, which closed before any byte of the answer.
        :raises Lost: written, and the connection closed, the time ran out or the answer was partial or malformed.
        """
        if self.closed:
            raise NotSent('the connections are closed')
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise NotSent(f'no free connection within {self.connect_timeout} s (limit {self.limit})') from None
        try:
            conn = await self._acquire()
            waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
            conn.waiter, conn.heard = waiter, False
            conn.url = url or self.url
            self.busy.add(conn)
            assert conn.transport is not None
            conn.transport.write(request)
            try:
                async with asyncio.timeout(timeout):
                    return await waiter
            except TimeoutError:
                conn._drop(None)
                raise Lost(f'no complete answer within {timeout} s') from None
            except asyncio.CancelledError:
                conn._drop(None)  # its answer would arrive for nobody: the connection cannot be reused
                raise
        finally:
            self._slots.release()

    async def _acquire(self) -> _Connection:
        if self.closed:
            raise NotSent('the connections are closed')
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()  # the most recently used: the least likely to be closed by the server
            if conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since > self.idle_timeout:
                for stale in [conn, *self.idle]:  # older still
                    stale._drop(None)
                self.idle.clear()
                break
            return conn
        host, port = self.url.host, self.url.port
        assert host is not None and port is not None  # yarl gives the scheme's port when the URL has none
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await asyncio.get_running_loop().create_connection(
                    lambda: _Connection(self), host, port, ssl=self.ssl
                )
        except (OSError, TimeoutError, ssl_.SSLError) as exc:
            raise NotSent(f'cannot connect to {self.url.origin()}: {exc!r}') from exc
        if self.closed:  # closed while connecting
            conn._drop(None)
            raise NotSent('the connections are closed')
        return conn

    def _release(self, conn: _Connection) -> None:
        self.busy.discard(conn)
        if self.closed:
            conn._drop(None)
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def _forget(self, conn: _Connection) -> None:
        self.busy.discard(conn)
        with contextlib.suppress(ValueError):  # not idle
            self.idle.remove(conn)

    async def aclose(self) -> None:
        """Close every connection; a request in flight fails with :class:`Lost`, later ones with :class:`NotSent`."""
        self.closed = True
        conns = [*self.idle, *self.busy]
        for conn in conns:
            conn._drop(Lost('the connections were closed'))
        self.idle.clear()
        self.busy.clear()
        if conns:
            await asyncio.sleep(0)  # let the transports run connection_lost (no unclosed-transport warnings)
