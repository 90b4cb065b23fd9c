"""Text replies to a channel through hikari's own request machinery, without building the created ``Message``.

``RESTClient.create_message`` builds its body with a general payload builder (attachments, embeds, components,
stickers, polls, mentions) and turns Discord's answer into a ``hikari.Message`` (author, mentions, timestamps);
the adapter reads only the new message's id. Those two steps were about a twentieth of the bot's CPU per command
(``benchmarks/discord.py``). For the common reply, text alone, :func:`post_text` sends the body hikari would send
on the route hikari would compile, through ``RESTClientImpl._request``: rate-limit buckets, 429 and 5xx retries,
the auth header and the error types (``ForbiddenError``, ``NotFoundError``, ...) stay hikari's.

``_request`` is private API of hikari (pinned ``~=2.6.0``); ``tests/integrations/discord/test_rest.py`` fails when
its shape or the body ``create_message`` sends changes, so an upgrade cannot silently alter what the bot sends.

:class:`TextReplies` goes one step further: aiohttp's client request around that POST was a quarter of the CPU per
command, so the same bytes are written on a kept connection of our own (:mod:`integrations.discord.keepalive`)
while the rest stays hikari's: its rate-limit bucket is held around the exchange, the answer's rate-limit headers go
to hikari's ``_parse_ratelimits`` and an error answer to hikari's ``generate_error_response``, so the bot sees the
same errors. Whatever is not the plain case goes through :func:`post_text` (hikari's path): a proxy, a token
strategy or a token that is not printable ASCII (CR/LF would inject a header; aiohttp refuses it), hikari's trace
logging, connections not kept (``reuse_connections = false``), a connection that cannot be
opened, a kept connection that Discord closed before answering (the keep-alive race), a 429 (after hikari's wait),
a 5xx that hikari retries (after its first back-off) or a 307/308 redirect (hikari follows it; other redirects may
answer a POST that was acted on, so they are hikari's error, as with ``max_redirects=None``).

A POST is sent again only when Discord almost surely did not read it: a kept connection closed before a single
byte of the answer came (:class:`~integrations.discord.keepalive.Unanswered`: Discord's keep-alive close crossed
the request) goes once through hikari's path, as hikari with aiohttp would send it again. Any other drop after the
request was written (a new connection closed, a partial answer, the total time-out) raises ``hikari.HTTPError``
and the reply is not sent again: Discord may have posted it. hikari with aiohttp would back off and send it again
(its ``_request`` retries every connection error and time-out, the POST included), which posts the reply twice
when Discord had received it; ours loses it when Discord had not.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re

import hikari
import yarl
from hikari import errors
from hikari.impl import rate_limits
from hikari.impl import rest as hikari_rest
from hikari.internal import data_binding, net, routes, ux

from .keepalive import Connections, Lost, NotSent, Unanswered

__all__ = ['TextReplies', 'post_text', 'text_body']

_log = logging.getLogger(__name__)
_hikari_log = hikari_rest._LOGGER
"""hikari's REST logger (``hikari.rest``): at its TRACE level hikari logs each exchange, which the fast path does not."""


@functools.lru_cache(maxsize=1024)
def _route(channel: int) -> routes.CompiledRoute:
    """The compiled ``POST /channels/{channel}/messages`` (compiling it was a hundredth of the CPU per command)."""
    return routes.POST_CHANNEL_MESSAGES.compile(channel=channel)


def text_body(content: str) -> data_binding.JSONObjectBuilder:
    """The body ``create_message(channel, content)`` sends: the text, and hikari's default allowed mentions
    (nobody is pinged by ``@everyone``, user or role mentions)."""
    body = data_binding.JSONObjectBuilder()
    body['content'] = content
    body['allowed_mentions'] = {'parse': []}
    return body


async def post_text(rest: hikari.api.RESTClient, channel: int, content: str) -> str:
    """Send ``content`` to ``channel`` as ``rest.create_message(channel, content)`` does; the new message's id.

    :param rest: hikari's REST client; another implementation (none in the bot) gets ``create_message``.
    :raises hikari.HikariError: what ``create_message`` raises (``ForbiddenError``, ``RateLimitTooLongError``, ...).
    :raises KeyError: Discord's answer has no message id (``create_message`` raises it too).
    """
    if not isinstance(rest, hikari.impl.RESTClientImpl):
        return str((await rest.create_message(channel, content)).id)
    response = await rest._request(_route(channel), json=text_body(content))
    assert isinstance(response, dict)  # as in create_message: Discord answers with the message object
    return str(response['id'])  # an answer without it is a KeyError, as create_message's entity building raises


@functools.lru_cache(maxsize=1024)
def _head(rest_url: str, auth: str, channel: int) -> bytes:
    """The request head of a text reply to ``channel`` up to its length: the headers aiohttp writes for hikari's
    ``_request``, in its order (``Accept-Encoding`` offers what :mod:`~integrations.discord.keepalive` decodes)."""
    url = _url(rest_url, channel)
    return (
        f'POST {url.raw_path_qs} HTTP/1.1\r\n'
        f'Host: {url.host_port_subcomponent}\r\n'
        f'User-Agent: {hikari_rest._HTTP_USER_AGENT}\r\n'
        f'Authorization: {auth}\r\n'
        'Accept: */*\r\n'
        'Accept-Encoding: gzip, deflate\r\n'
        'Content-Length: '
    ).encode('latin-1')


@functools.lru_cache(maxsize=1024)
def _url(rest_url: str, channel: int) -> yarl.URL:
    """The reply's URL, as hikari's errors name it."""
    return yarl.URL(_route(channel).create_url(rest_url))


_CONNECTION_LIMIT = 100
"""Connections when hikari's ``connection_limit`` is 0, its default, which leaves aiohttp's connector unbounded: the
fast path stays bounded anyway, at aiohttp's own default (Discord's global limit of 50 requests a second needs far
fewer)."""


_PLAIN_TOKEN = re.compile(r'[\x20-\x7e]*')
"""A token written into the head as it is: printable ASCII (Discord's tokens are base64 and dots)."""


def _connections(rest: hikari.api.RESTClient) -> Connections | None:
    """Kept connections for ``rest`` when its settings are the plain case the fast path covers, else ``None``."""
    if not isinstance(rest, hikari.impl.RESTClientImpl) or not isinstance(rest._token, str):
        return None  # another client, or a token strategy (OAuth2 re-auth on 401 is hikari's)
    if not _PLAIN_TOKEN.fullmatch(rest._token):
        return None  # CR/LF would inject a header: aiohttp refuses control characters, and encodes the rest as UTF-8
    proxy, http = rest._proxy_settings, rest.http_settings
    if proxy.url is not None or proxy.trust_env or http.force_close_transports:
        return None
    try:
        return Connections(
            rest._rest_url,
            ssl=http.ssl,
            connect_timeout=http.timeouts.acquire_and_connect or http.timeouts.total,
            limit=http.connection_limit or _CONNECTION_LIMIT,
        )
    except ValueError:
        return None  # not an http(s) URL: aiohttp's to refuse


class TextReplies:
    """Text replies of one hikari REST client, on kept connections of their own when its settings allow it.

    :param rest: the bot's REST client; its settings are read once (a bot does not change them while running).
    """

    def __init__(self, rest: hikari.api.RESTClient) -> None:
        self.rest = rest
        self.connections = _connections(rest)

    async def post(self, channel: int, content: str) -> str:
        """Send ``content`` to ``channel`` as ``rest.create_message(channel, content)`` does; the new message's id.

        :raises hikari.HikariError: what ``create_message`` raises (``ForbiddenError``, ``RateLimitTooLongError``,
            ``HTTPError`` for a connection lost after Discord may have read the request, ...).
        :raises KeyError: Discord's answer has no message id.
        """
        rest, connections = self.rest, self.connections
        if (
            connections is None
            or not isinstance(rest, hikari.impl.RESTClientImpl)
            or not rest.is_alive  # hikari's path raises its error for a closed client
            or _hikari_log.isEnabledFor(ux.TRACE)  # hikari logs the exchange (token redacted)
        ):
            return await post_text(rest, channel, content)
        auth = rest._token
        assert isinstance(auth, str)  # else no connections (_connections)
        route = _route(channel)
        body = rest._dumps(text_body(content))
        request = b'%s%d\r\nContent-Type: application/json\r\n\r\n%s' % (
            _head(rest._rest_url, auth, channel),
            len(body),
            body,
        )
        try:
            async with rest._bucket_manager.acquire_bucket(route, auth):
                answer = await connections.exchange(
                    request, rest.http_settings.timeouts.total, _url(rest._rest_url, channel)
                )
                retry_after = await rest._parse_ratelimits(route, auth, answer)  # type: ignore[arg-type]
        except (NotSent, Unanswered) as exc:  # not written, or not read: hikari's path opens its own connection
            _log.info('reply to channel %s goes through hikari: %s', channel, exc)
            return await post_text(rest, channel, content)
        except Lost as exc:
            raise errors.HTTPError(f'reply to channel {channel} not confirmed, not sent again: {exc}') from exc
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            # not this task's cancellation: hikari closing its buckets cancels the waits on them; the caller is told
            # the client closed (hikari's error), not cancelled, which would end it silently
            raise errors.ComponentStateConflictError(
                f'reply to channel {channel} not sent: the REST client closed while it waited for its rate limit'
            ) from None
        status = answer.status
        if retry_after is not None:  # a 429: Discord did not take it; hikari waits and sends it again
            await asyncio.sleep(retry_after)
            return await post_text(rest, channel, content)
        if 200 <= status < 300:
            if status != 204 and answer.content_type == 'application/json':
                created = rest._loads(answer.body)
                assert isinstance(created, dict)  # as in create_message: Discord answers with the message object
                return str(created['id'])  # KeyError without it, as create_message raises
            raise errors.HTTPError(f'Expected JSON [{status=}, content_type={answer.content_type!r}]')
        if status in (307, 308) and rest.http_settings.max_redirects is not None:
            # "send this request there", not acted on: hikari's path sends it again and follows, as hikari would;
            # other redirects may answer a POST that was acted on (303), so they stay errors, as without redirects
            _log.warning('reply to channel %s: redirected (%s), sending it again through hikari', channel, status)
            return await post_text(rest, channel, content)
        if status in hikari_rest._RETRY_ERROR_CODES:  # hikari backs off and sends it again, and so do we
            sleep = next(rate_limits.ExponentialBackOff(maximum=hikari_rest._MAX_BACKOFF_DURATION))
            _log.warning(
                'reply to channel %s: status %s, sending it again through hikari in %.2f s', channel, status, sleep
            )
            await asyncio.sleep(sleep)
            return await post_text(rest, channel, content)
        raise await net.generate_error_response(answer)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        """Close the kept connections (a reply in flight fails with ``hikari.HTTPError``)."""
        if self.connections is not None:
            await self.connections.aclose()
