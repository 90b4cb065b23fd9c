"""Text replies through hikari's ``_request`` (:mod:`integrations.discord.rest`): the same request as
``create_message``, hikari's rate limiting, retries and errors, and a failure when hikari's internals change shape."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import Any

import hikari
import pytest
from hikari.internal import routes

from engine.api import ConversationKey
from integrations.discord.rest import post_text, text_body

from .conftest import CHANNEL, GUILD, Running
from .emulator import DiscordEmulator, RestCall

ANN = 11
KEY = ConversationKey('discord', str(CHANNEL), str(ANN))
POST = rf'POST /channels/{CHANNEL}/messages'
TEXTS = ['Hi, ann!', '<@11> and <@&12> and @everyone @here', 'ünïcødé ✓ \u200b', '', '"quotes" \\ and\nlines']


def _posts(emu: DiscordEmulator) -> list[RestCall]:
    return emu.calls_to('POST', rf'/channels/{CHANNEL}/messages')


def _request_shape(call: RestCall) -> tuple[Any, ...]:
    headers = {k.lower(): v for k, v in call.headers.items()}
    return call.method, call.path, call.query, call.json, headers['authorization'], headers['content-type']


def test_hikari_private_request_still_has_the_shape_post_text_uses() -> None:
    """hikari is pinned ~=2.6.0: an upgrade that renames ``_request``, its parameters or the route fails here."""
    params = inspect.signature(hikari.impl.RESTClientImpl._request).parameters
    assert list(params)[:2] == ['self', 'compiled_route']
    assert params['json'].kind is inspect.Parameter.KEYWORD_ONLY
    route = routes.POST_CHANNEL_MESSAGES.compile(channel=CHANNEL)
    assert (route.method, route.compiled_path) == ('POST', f'/channels/{CHANNEL}/messages')


@pytest.mark.parametrize('text', TEXTS)
def test_text_body_is_what_create_message_builds_for_text_alone(text: str) -> None:
    rest = hikari.impl.RESTClientImpl.__new__(hikari.impl.RESTClientImpl)  # the builder reads no state
    body, form = rest._build_message_payload(content=text)
    assert form is None
    assert text_body(text) == body


async def test_post_text_sends_the_request_create_message_sends(running: Running) -> None:
    emu, rest = running.emulator, running.bot.bot.rest
    for text in TEXTS:
        created = await rest.create_message(CHANNEL, text)
        message_id = await post_text(rest, CHANNEL, text)
        hikaris, ours = _posts(emu)[-2:]
        assert _request_shape(ours) == _request_shape(hikaris)
        assert int(message_id) in emu.messages and int(message_id) != created.id


async def test_rate_limited_reply_waits_and_is_sent_once(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    emu = running.emulator
    emu.rate_limit_next(POST, 0.3)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger='hikari'):
        message_id = await running.bot.adapter.send_text(KEY, 'after the wait')
    assert time.monotonic() - started >= 0.3
    first, second = _posts(emu)
    assert first.content == second.content == 'after the wait'
    assert emu.messages[int(message_id)]['content'] == 'after the wait'
    assert 'rate limited' in caplog.text


async def test_too_long_rate_limit_is_hikaris_error(running: Running) -> None:
    running.emulator.rate_limit_next(POST, 3600.0)
    with pytest.raises(hikari.RateLimitTooLongError):
        await running.bot.adapter.send_text(KEY, 'not now')


@pytest.mark.parametrize(
    ('status', 'error'), [(403, hikari.ForbiddenError), (404, hikari.NotFoundError), (401, hikari.UnauthorizedError)]
)
async def test_refused_reply_raises_hikaris_error_and_is_logged(
    running: Running, caplog: pytest.LogCaptureFixture, status: int, error: type[Exception]
) -> None:
    running.emulator.answer_next(POST, status)
    with caplog.at_level(logging.ERROR, logger='integrations.discord.adapter'), pytest.raises(error):
        await running.bot.adapter.send_text(KEY, 'nobody sees this')
    assert f'sending 16 characters to {KEY} failed' in caplog.text
    assert len(_posts(running.emulator)) == 1  # refusals are not retried


async def test_server_error_is_retried_by_hikari(running: Running) -> None:
    emu = running.emulator
    emu.answer_next(POST, 502)
    message_id = await running.bot.adapter.send_text(KEY, 'second try')
    assert [c.content for c in _posts(emu)] == ['second try', 'second try']
    assert emu.messages[int(message_id)]['content'] == 'second try'


async def test_answer_without_an_id_fails_as_create_message_fails(running: Running) -> None:
    rest = running.bot.bot.rest
    for send in (rest.create_message, functools.partial(post_text, rest)):
        running.emulator.answer_next(POST, 200, {'content': 'no id'})
        with pytest.raises(KeyError):
            await send(CHANNEL, 'x')


async def test_a_refused_reply_to_a_command_is_reported_and_the_next_one_answered(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    emu = running.emulator
    emu.answer_next(POST, 403)
    with caplog.at_level(logging.ERROR):
        await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN, 'ann'), content='!hi')
        refused, notice = await emu.wait_for_call('POST', rf'/channels/{CHANNEL}/messages', count=2)
        await emu.message_create(channel_id=CHANNEL, guild_id=GUILD, author=emu.user(ANN, 'ann'), content='!hi')
        replies = await emu.wait_for_call('POST', rf'/channels/{CHANNEL}/messages', count=3)
    assert refused.content is not None and refused.content.startswith('Hi, ann!')
    assert notice.content == 'Something went wrong: an internal error (logged)'
    assert replies[2].content == refused.content
    assert any(isinstance(r.exc_info and r.exc_info[1], hikari.ForbiddenError) for r in caplog.records)


async def test_another_rest_client_gets_create_message() -> None:
    class Rest:
        async def create_message(self, channel: int, content: str) -> Any:
            self.sent = (channel, content)
            return type('Created', (), {'id': 42})()

    rest = Rest()
    assert await post_text(rest, 7, 'hi') == '42'  # type: ignore[arg-type]
    assert rest.sent == (7, 'hi')
