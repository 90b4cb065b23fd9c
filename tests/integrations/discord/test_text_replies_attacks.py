"""Text replies (:class:`integrations.discord.rest.TextReplies`) against a hostile server, network or admin: what
hikari's own path does is the yardstick (same errors, nothing it refuses sent), and a header is never injected."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import hikari
import pytest

from integrations.discord.rest import post_text

from .test_keepalive import Handler, Server, _certificate, answer
from .test_text_replies import client

CHANNEL = 1234


def sends(data: bytes) -> Handler:
    async def handler(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(data)

    return handler


async def message(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(answer(b'{"id": "%d"}' % len(srv.requests)))


async def _outcome(call: Any) -> Any:
    """``'sent'``, or the type of the exception ``call`` raised (what is compared between the two paths)."""
    try:
        await call
    except Exception as exc:
        return type(exc)
    return 'sent'


@pytest.mark.parametrize('token', ['abc\r\nX-Injected: 1', 'abc\nX-Injected: 1', 'abc\0', 'tökén€'])
async def test_a_token_with_control_or_non_ascii_characters_is_handled_as_hikari_does(token: str) -> None:
    async with Server(message) as srv, client(srv.url, token) as (rest, texts):
        assert texts.connections is None  # hikari's path: aiohttp's own checks
        ours = await _outcome(texts.post(CHANNEL, 'x'))
        theirs = await _outcome(post_text(rest, CHANNEL, 'x'))
        assert ours == theirs
    heads = [r.split(b'\r\n\r\n')[0].split(b'\r\n') for r in srv.requests]
    assert not [line for head in heads for line in head if line.startswith(b'X-Injected')]
    assert len(srv.requests) == (0 if token.isascii() else 2)  # aiohttp refuses control characters


async def test_a_plain_token_keeps_the_fast_path() -> None:
    async with Server(message) as srv, client(srv.url, 'Bot OTAw.abc-_DEF.ghi') as (_, texts):
        assert texts.connections is not None
        assert await texts.post(CHANNEL, 'x') == '1'


@pytest.mark.parametrize('prefix', ['/api/v10', '/behind/a/proxy/api/v10'])
@pytest.mark.parametrize('host', ['127.0.0.1', '::1'])
async def test_the_request_line_and_host_are_hikaris_for_any_rest_url(prefix: str, host: str) -> None:
    async with Server(message, host=host) as srv:
        url = srv.url.removesuffix('/api/v10') + prefix
        async with client(url) as (rest, texts):
            assert await post_text(rest, CHANNEL, 'x') == '1'
            assert await texts.post(CHANNEL, 'x') == '2'
            assert texts.connections is not None and texts.connections.idle
    theirs, ours = (r.split(b'\r\n\r\n')[0].split(b'\r\n') for r in srv.requests)
    assert ours[0] == theirs[0] == b'POST %s/channels/%d/messages HTTP/1.1' % (prefix.encode(), CHANNEL)
    host_header = [h for h in theirs if h.lower().startswith(b'host:')]
    assert host_header and host_header[0] in ours


@pytest.mark.parametrize(
    'body',
    [b'{"content": "no id"}', b'not json', b'\xff\xfe\xfd', b'[1, 2]', b'"text"'],
    ids=['no-id', 'not-json', 'not-utf8', 'a-list', 'a-string'],
)
async def test_a_success_with_a_body_that_is_not_a_message_fails_as_hikaris_path_does(body: bytes) -> None:
    async with Server(sends(answer(body))) as srv, client(srv.url) as (rest, texts):
        ours = await _outcome(texts.post(CHANNEL, 'x'))
        theirs = await _outcome(post_text(rest, CHANNEL, 'x'))
        assert ours == theirs and isinstance(ours, type) and issubclass(ours, Exception)
        assert len(srv.requests) == 2  # not sent again by either


@pytest.mark.parametrize('status', [307, 308])
async def test_a_redirect_that_keeps_the_post_goes_through_hikari_which_follows_it(status: int) -> None:
    async def redirect(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        if srv.requests[-1].startswith(b'POST /elsewhere'):
            await message(srv, body, writer)
        else:  # "send this request there": the server did not act on it
            writer.write(answer(b'', status=status, extra='Location: /elsewhere\r\n'))

    async with Server(redirect) as srv, client(srv.url) as (rest, texts):
        assert await post_text(rest, CHANNEL, 'x') == '2'
        assert await texts.post(CHANNEL, 'x') == '5'  # ours redirected, hikari's redirected, hikari's followed
    api, elsewhere = b'/api/v10/channels/%d/messages' % CHANNEL, b'/elsewhere'
    assert [r.split(b' ')[1] for r in srv.requests] == [api, elsewhere, api, api, elsewhere]


@pytest.mark.parametrize('status', [301, 302, 303])
async def test_a_redirect_that_may_follow_a_processed_post_is_an_error_not_a_second_post(status: int) -> None:
    redirect = sends(answer(b'', status=status, extra='Location: /elsewhere\r\n'))
    async with Server(redirect) as srv, client(srv.url) as (_, texts):
        with pytest.raises(hikari.HTTPResponseError) as raised:
            await texts.post(CHANNEL, 'x')
        assert raised.value.status == status
    assert len(srv.requests) == 1


async def test_with_redirects_disallowed_a_307_is_hikaris_error() -> None:
    redirect = sends(answer(b'', status=307, extra='Location: /elsewhere\r\n'))
    async with Server(redirect) as srv, client(srv.url, max_redirects=None) as (rest, texts):
        ours = await _outcome(texts.post(CHANNEL, 'x'))
        theirs = await _outcome(post_text(rest, CHANNEL, 'x'))
        assert ours == theirs == hikari.HTTPResponseError
    assert len(srv.requests) == 2


@pytest.mark.parametrize('fault', ['wrong-host', 'expired'])
async def test_a_server_certificate_that_does_not_verify_gets_nothing_from_either_path(
    tmp_path: Path, fault: str
) -> None:
    cert, key = _certificate(tmp_path, expired=fault == 'expired')
    srv = Server(message)
    srv.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    srv.tls.load_cert_chain(cert, key)
    async with srv:
        url = srv.url.replace('127.0.0.1', 'localhost') if fault == 'wrong-host' else srv.url
        trusting = ssl.create_default_context(cafile=cert)
        async with client(url, ssl=trusting) as (rest, texts):
            assert texts.connections is not None
            with pytest.raises(hikari.HTTPError):
                await texts.post(CHANNEL, 'x')
            with pytest.raises(hikari.HTTPError):
                await rest.create_message(CHANNEL, 'x')
    assert srv.requests == []
