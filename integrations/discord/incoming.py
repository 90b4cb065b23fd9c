"""A typed message read straight from the gateway's MESSAGE_CREATE payload, without hikari's entities.

hikari turns every MESSAGE_CREATE into a ``Message`` with its author, member, embeds, stickers, timestamps and
mentions; the bot reads six fields of it. Building those entities was a fifth of the bot's CPU per command
(``benchmarks/discord.py``), so the bot takes the raw payload (``hikari.ShardPayloadEvent``) and reads only what
it needs here. Attachments, rare and needing hikari's ``Attachment`` for the download, are still built by hikari
(:meth:`IncomingMessage.remote_files`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import hikari

from engine.api import User

__all__ = ['IncomingMessage', 'read_message']


@attrs.frozen
class IncomingMessage:
    """What the bot reads of a new message: who sent it where, its text, whether a human sent it."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    user: User
    is_human: bool
    """Not a bot account and not a webhook (hikari's ``MessageCreateEvent.is_human``)."""
    content: str
    payload: Mapping[str, Any] = attrs.field(repr=False)
    """The raw message, for its attachments."""

    @property
    def has_attachments(self) -> bool:
        """Whether the message carries files (read from the payload, nothing built)."""
        return bool(self.payload.get('attachments'))

    def remote_files(self, entities: hikari.api.EntityFactory) -> Sequence[hikari.Attachment]:
        """The message's attachments as hikari builds them (an empty tuple, and nothing built, when none)."""
        if not self.has_attachments:
            return ()
        return entities.deserialize_message(dict(self.payload)).attachments


def read_message(payload: Mapping[str, Any]) -> IncomingMessage:
    """The fields of a MESSAGE_CREATE payload the bot uses.

    :raises KeyError: a payload without an id, channel or author (not a message Discord sends).
    """
    author: Mapping[str, Any] = payload['author']
    member: Mapping[str, Any] | None = payload.get('member')
    guild_id = int(payload['guild_id']) if payload.get('guild_id') else None
    name = (member.get('nick') if member else None) or author.get('global_name') or author.get('username') or ''
    roles = frozenset(str(r) for r in member.get('roles') or ()) if member else frozenset[str]()
    return IncomingMessage(
        id=int(payload['id']),
        channel_id=int(payload['channel_id']),
        guild_id=guild_id,
        author_id=int(author['id']),
        user=User(id=str(author['id']), name=name, roles=roles, guild=str(guild_id) if guild_id else None),
        is_human=not author.get('bot') and not payload.get('webhook_id'),
        content=payload.get('content') or '',
        payload=payload,
    )
