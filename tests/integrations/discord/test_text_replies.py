"""Text replies on the bot's own kept connections (:class:`integrations.discord.rest.TextReplies`): the request
hikari would send, hikari's rate limits and errors, hikari's path for everything but the plain case, never a POST
written twice, and the connections closed with the bot."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import hikari
import pytest
from hikari.internal import routes

from engine.api import ConversationKey
from engine.app import App
from integrations.discord.keepalive import NotSent
from integrations.discord.rest import TextReplies

from .conftest import CHANNEL, Running, start_bot
from .emulator import DiscordEmulator, RestCall
from .test_keepalive import Server, answer

ANN = 11
KEY = ConversationKey('discord', str(CHANNEL), str(ANN))
POST = rf'POST /channels/{CHANNEL}/messages'
TOKEN = 'OTAw.secret-token-for-the-test'


@contextlib.asynccontextmanager
async def client(
    url: str, token: str = TOKEN, retries: int = 0, **http: Any
) -> AsyncIterator[tuple[hikari.impl.RESTClientImpl, TextReplies]]:
    """hikari's REST client on ``url`` (``retries`` retries, connections kept) and its text replies."""
    app = hikari.RESTApp(
        url=url, http_settings=hikari.impl.HTTPSettings(force_close_transports=False, **http), max_retries=retries
    )
    await app.start()
    try:
        async with app.acquire(token, 'Bot') as rest:
            texts = TextReplies(rest)
            try:
                yield rest, texts
            finally:
                await texts.aclose()
    finally:
        await app.close()


def _posts(emu: DiscordEmulator) -> list[RestCall]:
    return emu.calls_to('POST', rf'/channels/{CHANNEL}/messages')


@pytest.fixture
def no_aiohttp(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails any request through aiohttp's client (hikari's path); the URLs it was asked for."""
    asked: list[str] = []

    def refuse(self: aiohttp.ClientSession, method: str, url: Any, **kw: Any) -> Any:
        asked.append(f'{method} {url}')
        raise aiohttp.ClientConnectionError('aiohttp was not to be used')

    monkeypatch.setattr(aiohttp.ClientSession, 'request', refuse)
    return asked


async def test_a_reply_is_the_request_hikari_sends_written_without_aiohttp(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu, rest = running.emulator, running.bot.bot.rest
    texts = ['Hi, ann!', '<@11> @everyone', 'ünïcødé ✓ \u200b', '', '"quotes" \\ and\nlines']
    for text in texts:
        await rest.create_message(CHANNEL, text)
    with monkeypatch.context() as patch:
        patch.setattr(aiohttp.ClientSession, 'request', None)  # any use of hikari's path is a TypeError
        for text in texts:
            await running.bot.adapter.texts.post(CHANNEL, text)
    posts = _posts(emu)
    hikaris, ours = posts[: len(texts)], posts[len(texts) :]
    for theirs, mine in zip(hikaris, ours, strict=True):
        assert (mine.method, mine.path, mine.query, mine.json) == (
            theirs.method,
            theirs.path,
            theirs.query,
            theirs.json,
        )
        differing = {'Accept-Encoding'}  # aiohttp also offers br and zstd, which it decodes
        assert [h for h in mine.headers if h not in differing] == [h for h in theirs.headers if h not in differing]
        assert {k: v for k, v in mine.headers.items() if k not in differing} == {
            k: v for k, v in theirs.headers.items() if k not in differing
        }
        assert mine.headers['Accept-Encoding'] == 'gzip, deflate'
    assert running.bot.adapter.texts.connections is not None
    assert len(running.bot.adapter.texts.connections.idle) == 1  # one kept connection did all five


async def test_rate_limit_headers_of_an_answer_go_to_hikaris_buckets(running: Running, no_aiohttp: list[str]) -> None:
    emu, rest = running.emulator, running.bot.bot.rest
    assert isinstance(rest, hikari.impl.RESTClientImpl)
    headers = {
        'X-RateLimit-Bucket': 'replies-bucket',
        'X-RateLimit-Limit': '5',
        'X-RateLimit-Remaining': '0',
        'X-RateLimit-Reset-After': '0.4',
        'X-RateLimit-Reset': f'{time.time() + 0.4:.3f}',
    }
    emu.answer_next(POST, 200, {'id': '123', 'content': 'first'}, headers=headers)
    assert await running.bot.adapter.send_text(KEY, 'first') == '123'
    route = routes.POST_CHANNEL_MESSAGES.compile(channel=CHANNEL)
    assert rest._bucket_manager._route_hash_to_bucket_hash[hash(route.route)] == 'replies-bucket'
    buckets = [b for h, b in rest._bucket_manager._real_hashes_to_buckets.items() if h.startswith('replies-bucket')]
    assert [(b.limit, b.remaining) for b in buckets] == [(5, 0)]
    assert no_aiohttp == []


async def test_a_429_waits_as_hikari_says_and_is_sent_again_through_hikari(running: Running) -> None:
    emu = running.emulator
    emu.rate_limit_next(POST, 0.3)
    started = time.monotonic()
    message_id = await running.bot.adapter.send_text(KEY, 'later')
    assert time.monotonic() - started >= 0.3
    assert [c.content for c in _posts(emu)] == ['later', 'later']
    assert emu.messages[int(message_id)]['content'] == 'later'


@pytest.mark.parametrize('status', [500, 503])
async def test_a_server_error_is_sent_again_after_hikaris_back_off(running: Running, status: int) -> None:
    emu = running.emulator
    emu.answer_next(POST, status)
    message_id = await running.bot.adapter.send_text(KEY, 'again')
    assert [c.content for c in _posts(emu)] == ['again', 'again']
    assert emu.messages[int(message_id)]['content'] == 'again'


@pytest.mark.parametrize(
    ('status', 'error'),
    [
        (400, hikari.BadRequestError),
        (403, hikari.ForbiddenError),
        (404, hikari.NotFoundError),
        (405, hikari.ClientHTTPResponseError),
        (501, hikari.InternalServerError),
    ],
)
async def test_a_refusal_is_hikaris_error_and_is_not_sent_again(
    running: Running, no_aiohttp: list[str], status: int, error: type[hikari.HTTPResponseError]
) -> None:
    running.emulator.answer_next(POST, status, {'message': 'no', 'code': 50013})
    with pytest.raises(error) as raised:
        await running.bot.adapter.send_text(KEY, 'refused')
    assert raised.value.status == status
    assert raised.value.url == f'{running.emulator.rest_url}/channels/{CHANNEL}/messages'
    assert len(_posts(running.emulator)) == 1
    assert no_aiohttp == []


async def test_a_non_json_success_is_hikaris_error(running: Running) -> None:
    running.emulator.answer_next(POST, 204)
    with pytest.raises(hikari.HTTPError, match='Expected JSON'):
        await running.bot.adapter.send_text(KEY, 'no body')


async def test_a_connection_that_cannot_be_opened_hands_the_reply_to_hikari(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections = running.bot.adapter.texts.connections
    assert connections is not None

    async def refused() -> Any:
        raise NotSent('cannot connect (test)')

    monkeypatch.setattr(connections, '_acquire', refused)
    message_id = await running.bot.adapter.send_text(KEY, 'through hikari')
    assert [c.content for c in _posts(running.emulator)] == ['through hikari']
    assert 'br' in _posts(running.emulator)[0].headers['Accept-Encoding']  # aiohttp's offer: hikari's path
    assert running.emulator.messages[int(message_id)]['content'] == 'through hikari'


async def test_many_replies_at_once_are_each_sent_once(running: Running) -> None:
    texts = [f'reply {i}' for i in range(200)]
    ids = await asyncio.gather(*(running.bot.adapter.send_text(KEY, t) for t in texts))
    assert len(set(ids)) == 200
    assert sorted(c.content or '' for c in _posts(running.emulator)) == sorted(texts)
    assert [running.emulator.messages[int(i)]['content'] for i in ids] == texts
    connections = running.bot.adapter.texts.connections
    assert connections is not None and 1 <= len(connections.idle) <= 200 and not connections.busy


async def test_closing_the_bot_with_replies_in_flight_closes_every_connection(
    emulator: DiscordEmulator, app: App
) -> None:
    run = await start_bot(emulator, app)
    # hikari lets one request at a time into a bucket Discord has not named yet: name it, with room for five
    headers = {'X-RateLimit-Bucket': 'b', 'X-RateLimit-Limit': '10', 'X-RateLimit-Remaining': '9'}
    emulator.answer_next(POST, 200, {'id': '1'}, headers={**headers, 'X-RateLimit-Reset-After': '60'})
    await run.bot.adapter.texts.post(CHANNEL, 'first')
    emulator.rest_delay[POST] = 5.0
    sending = [asyncio.create_task(run.bot.adapter.texts.post(CHANNEL, f'in flight {i}')) for i in range(5)]
    while len(_posts(emulator)) < 6:  # recorded on arrival, answered after the delay
        await asyncio.sleep(0.01)
    connections = run.bot.adapter.texts.connections
    assert connections is not None and len(connections.busy) == 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        started = time.monotonic()
        await run.bot.close()
        results = await asyncio.gather(*sending, return_exceptions=True)
        gc.collect()
    assert time.monotonic() - started < 4
    assert all(isinstance(r, hikari.HTTPError) and 'not sent again' in str(r) for r in results), results
    assert not connections.busy and not connections.idle
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
    assert len(_posts(emulator)) == 6  # none sent again


async def _cut_answer(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(answer(b'{"id": "1"}')[:-3])  # the message exists: Discord started answering
    await writer.drain()
    writer.close()


async def _no_answer(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
    writer.close()  # the message may or may not exist


@pytest.mark.parametrize(
    ('handler', 'hikari_error', 'hikari_posts'),
    [(_cut_answer, aiohttp.ClientPayloadError, 1), (_no_answer, hikari.HTTPError, 2)],
    ids=['cut-mid-answer', 'closed-without-answer'],
)
async def test_a_connection_lost_after_the_request_was_written_is_an_error_not_a_second_post(
    caplog: pytest.LogCaptureFixture, handler: Any, hikari_error: type[Exception], hikari_posts: int
) -> None:
    async with Server(handler) as srv, client(srv.url, retries=1) as (rest, texts):
        assert texts.connections is not None
        with caplog.at_level(logging.DEBUG), pytest.raises(hikari.HTTPError, match='not sent again'):
            await texts.post(CHANNEL, 'maybe posted')
        assert len(srv.requests) == 1
        await texts.aclose()
        # what hikari's own path does (rest.py's docstring): a cut answer is aiohttp's error, not retried;
        # a connection closed before any answer is retried, the POST written again
        with pytest.raises(hikari_error):
            await rest.create_message(CHANNEL, 'maybe posted')
        assert len(srv.requests) == 1 + hikari_posts
    assert TOKEN not in caplog.text


async def test_a_kept_connection_closed_before_answering_sends_the_reply_through_hikari_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def race_the_second(srv: Server, body: bytes, writer: asyncio.StreamWriter) -> None:
        if len(srv.requests) == 2:  # the server's keep-alive close as the reply was written: it never read it
            writer.close()
        else:
            writer.write(answer(b'{"id": "%d"}' % len(srv.requests)))

    async with Server(race_the_second) as srv, client(srv.url) as (_, texts):
        assert await texts.post(CHANNEL, 'first') == '1'
        with caplog.at_level(logging.INFO):
            assert await texts.post(CHANNEL, 'raced') == '3'
        assert 'goes through hikari' in caplog.text
        assert [b'raced' in r for r in srv.requests] == [False, True, True]
        assert 'br' in srv.requests[2].decode()  # aiohttp's Accept-Encoding: hikari's path


async def test_settings_the_fast_path_does_not_cover_go_through_hikari(no_aiohttp: list[str]) -> None:
    proxied = hikari.RESTApp(proxy_settings=hikari.impl.ProxySettings(url='http://127.0.0.1:9'))
    from_env = hikari.RESTApp(proxy_settings=hikari.impl.ProxySettings(trust_env=True))
    closing = hikari.RESTApp(http_settings=hikari.impl.HTTPSettings(force_close_transports=True))
    kept = hikari.RESTApp(http_settings=hikari.impl.HTTPSettings(force_close_transports=False))
    for app in (proxied, from_env, closing, kept):
        await app.start()
    try:
        for app in (proxied, from_env, closing):
            async with app.acquire(TOKEN, 'Bot') as rest:
                texts = TextReplies(rest)
                assert texts.connections is None
                with pytest.raises(hikari.HTTPError):  # aiohttp refused, as the fixture makes it
                    await texts.post(CHANNEL, 'x')
        async with kept.acquire(hikari.impl.ClientCredentialsStrategy(client=1, client_secret='s')) as rest:
            assert TextReplies(rest).connections is None  # OAuth2 re-auth on 401 is hikari's
        async with kept.acquire(TOKEN, 'Bot') as rest:
            connections = TextReplies(rest).connections
            assert connections is not None and connections.limit == 100  # hikari's 0 (no limit): aiohttp's default
        kept._http_settings.connection_limit = 7
        async with kept.acquire(TOKEN, 'Bot') as rest:
            connections = TextReplies(rest).connections
            assert connections is not None and connections.limit == 7
    finally:
        for app in (proxied, from_env, closing, kept):
            await app.close()
    assert len(no_aiohttp) >= 3


async def test_with_hikaris_trace_logging_on_replies_go_through_hikari(running: Running, no_aiohttp: list[str]) -> None:
    logger = logging.getLogger('hikari.rest')
    level = logger.level
    logger.setLevel(hikari.internal.ux.TRACE)
    try:
        with pytest.raises(hikari.HTTPError):
            await running.bot.adapter.send_text(KEY, 'traced')
    finally:
        logger.setLevel(level)
    assert no_aiohttp and no_aiohttp[0].startswith('POST')


async def test_the_token_is_never_logged(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    emu = running.emulator
    with caplog.at_level(logging.DEBUG):
        emu.answer_next(POST, 403)
        with pytest.raises(hikari.ForbiddenError):
            await running.bot.adapter.send_text(KEY, 'refused')
        emu.answer_next(POST, 503)
        await running.bot.adapter.send_text(KEY, 'retried')
        await running.bot.adapter.send_text(KEY, 'plain')
    assert emu.token not in caplog.text
    assert 'status 503' in caplog.text


async def test_closing_the_bot_while_a_reply_waits_for_its_bucket_ends_it_without_sending(
    emulator: DiscordEmulator, app: App
) -> None:
    run = await start_bot(emulator, app)
    headers = {'X-RateLimit-Bucket': 'b', 'X-RateLimit-Limit': '1', 'X-RateLimit-Remaining': '0'}
    emulator.answer_next(
        POST,
        200,
        {'id': '1'},
        headers={**headers, 'X-RateLimit-Reset-After': '30', 'X-RateLimit-Reset': f'{time.time() + 30}'},
    )
    await run.bot.adapter.texts.post(CHANNEL, 'first')
    waiting = asyncio.create_task(run.bot.adapter.texts.post(CHANNEL, 'waits for the bucket'))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    connections = run.bot.adapter.texts.connections
    assert connections is not None
    started = time.monotonic()
    await run.bot.close()
    (result,) = await asyncio.wait_for(asyncio.gather(waiting, return_exceptions=True), 5)
    assert time.monotonic() - started < 4
    assert isinstance(result, hikari.ComponentStateConflictError), result  # not a cancellation nobody asked for
    assert 'closed while it waited' in str(result)
    assert len(_posts(emulator)) == 1
    assert not connections.busy and not connections.idle


async def test_a_reply_cancelled_at_any_point_leaves_the_connections_and_bucket_usable(running: Running) -> None:
    emu, texts = running.emulator, running.bot.adapter.texts
    connections = texts.connections
    assert connections is not None
    await texts.post(CHANNEL, 'warm')  # a kept connection
    emu.rest_delay[POST] = 0.3
    for delay in (0, 0.001, 0.01, 0.05, 0.1, 0.2):
        task = asyncio.create_task(texts.post(CHANNEL, f'cancelled after {delay}'))
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not connections.busy and connections._slots._value == connections.limit, delay
    emu.rest_delay.pop(POST)
    message_id = await asyncio.wait_for(texts.post(CHANNEL, 'after'), 5)
    assert emu.messages[int(message_id)]['content'] == 'after'
