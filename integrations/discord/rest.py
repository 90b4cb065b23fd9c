"""Text replies to a channel through hikari's own request machinery, without building the created ``Message``.

``RESTClient.create_message`` builds its body with a general payload builder (attachments, embeds, components,
stickers, polls, mentions) and turns Discord's answer into a ``hikari.Message`` (author, mentions, timestamps);
the adapter reads only the new message's id. Those two steps were about a twentieth of the bot's CPU per command
(``benchmarks/discord.py``). For the common reply, text alone, :func:`post_text` sends the body hikari would send
on the route hikari would compile, through ``RESTClientImpl._request``: rate-limit buckets, 429 and 5xx retries,
the auth header and the error types (``ForbiddenError``, ``NotFoundError``, ...) stay hikari's.

``_request`` is private API of hikari (pinned ``~=2.6.0``); ``tests/integrations/discord/test_rest.py`` fails when
its shape or the body ``create_message`` sends changes, so an upgrade cannot silently alter what the bot sends.
"""

from __future__ import annotations

import functools

import hikari
from hikari.internal import data_binding, routes

__all__ = ['post_text', 'text_body']


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
