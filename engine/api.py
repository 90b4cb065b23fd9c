"""The engine's ports: the events adapters deliver and the one interface every adapter implements.

Adapters (console, Discord, tests) turn their channel's traffic into :class:`Command`,
:class:`Message` and :class:`ChoicePress` events and hand them to ``Engine.dispatch``;
the engine answers only through :class:`Adapter`.
"""

from __future__ import annotations

import abc
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from engine import i18n
from engine.errors import FlowbotError

__all__ = [
    'Adapter',
    'Attachment',
    'ChoicePress',
    'Command',
    'ConversationKey',
    'Event',
    'Message',
    'NotSupportedError',
    'Option',
    'User',
]


class NotSupportedError(FlowbotError):
    """Raised by an adapter for an outgoing operation its channel cannot carry (e.g. voice in a console)."""


@attrs.frozen(cache_hash=True)
class ConversationKey:
    """Who a conversation is with: one per (adapter, channel, user).

    Its hash is cached: every step looks the conversation up by it (about one hash per step otherwise).
    """

    adapter: str
    channel: str
    user: str

    def __str__(self) -> str:
        return f'{self.adapter}:{self.channel}:{self.user}'


@attrs.frozen
class User:
    """The person behind an event, as far as permissions and templates need them."""

    id: str
    name: str = ''
    roles: frozenset[str] = frozenset()
    guild: str | None = None
    """Guild (server) id, ``None`` in direct messages and the console."""


@attrs.frozen
class Attachment:
    """A file that came with an event.

    Adapters either download it to ``path`` before dispatch or leave ``path`` empty and give a ``url``;
    ``name`` is the user's file name, for display only: never use it as a path.
    """

    name: str
    content_type: str = 'application/octet-stream'
    size: int = 0
    path: pathlib.Path | None = None
    url: str | None = None
    duration: float | None = None
    """Seconds, for voice messages."""

    @property
    def is_audio(self) -> bool:
        """Whether the file is sound (a voice message), which speech plugins transcribe."""
        return self.content_type.startswith('audio/') or self.content_type == 'application/ogg'


@attrs.frozen(kw_only=True)
class Event:
    """Base of everything an adapter delivers."""

    key: ConversationKey
    user: User
    locale: str | None = None
    message_id: str | None = None
    is_dm: bool = False


@attrs.frozen(kw_only=True)
class Command(Event):
    """A command (slash or prefix) with its arguments typed, in one form whatever the channel.

    Slash commands arrive typed; an adapter that reads commands as text (``!train data label=x``)
    types them with ``Engine.options``, so the engine and the actions see the same options
    from every adapter.
    """

    name: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    """Typed values by option name (``integer`` an int, ``attachment`` an :class:`Attachment`, ...);
    options left out take their flow defaults."""
    attachments: Sequence[Attachment] = ()
    """Every file that came with the command (also those not bound to an option)."""


@attrs.frozen(kw_only=True)
class Message(Event):
    """A free message: text, attachments or both."""

    text: str = ''
    attachments: Sequence[Attachment] = ()


@attrs.frozen(kw_only=True)
class ChoicePress(Event):
    """A button press (or menu pick) answering an ``ask`` with choices."""

    value: str


@attrs.frozen
class Option:
    """One choice offered by ``Adapter.ask``: ``value`` goes back in :class:`ChoicePress`."""

    value: str
    label: str


class Adapter(abc.ABC):
    """The outgoing half of a channel. Every method may raise; the engine logs and reports it.

    Message ids returned are adapter-specific strings, used later for ``edit_text`` and corrections.
    """

    name: str = 'adapter'
    """Unique adapter name; the first part of every :class:`ConversationKey` it creates."""

    grants_all_permissions: bool = False
    """True for local, trusted channels (the console) where the operator is the only user."""

    prefix: str = '!'
    """How users write commands on this channel; the engine's messages and templates (``bot.prefix``)
    name commands with it, so a Discord bot configured with ``?`` says ``?instruction``."""

    @abc.abstractmethod
    async def send_text(self, key: ConversationKey, text: str) -> str:
        """Send text; long texts are the adapter's to split. Return the (last) message id."""

    @abc.abstractmethod
    async def send_file(
        self, key: ConversationKey, path: pathlib.Path, *, text: str | None = None, voice_message: bool = False
    ) -> str:
        """Send a file, optionally as a voice message (audio/ogg Opus). Return the message id."""

    @abc.abstractmethod
    async def ask(self, key: ConversationKey, text: str, options: Sequence[Option]) -> str:
        """Send a prompt with choices (buttons where the channel has them). Return the message id."""

    @abc.abstractmethod
    async def edit_text(self, key: ConversationKey, message_id: str, text: str) -> None:
        """Replace the text of a message sent earlier (progress updates)."""

    async def send_notice(self, key: ConversationKey, text: str) -> str:
        """Send a reply meant only for the user of ``key`` (a refusal, a stale button): private where the
        channel can (Discord ephemeral answers), else like :meth:`send_text`."""
        return await self.send_text(key, text)

    async def progress(self, key: ConversationKey, text: str, message_id: str | None = None) -> str:
        """Show a running step's progress: send it, or edit ``message_id`` in place. Return the message id.

        Adapters that can may keep one progress message per conversation and let the step's result
        replace it (see :meth:`progress_done`).
        """
        if message_id is None:
            return await self.send_text(key, text)
        await self.edit_text(key, message_id, text)
        return message_id

    def progress_done(self, key: ConversationKey, message_id: str) -> None:  # noqa: B027 - optional hook
        """The step that showed progress in ``message_id`` is over: its result, the next thing sent to the
        conversation, may replace the message (an adapter deletes it when the result cannot be an edit)."""

    async def in_voice(self, key: ConversationKey) -> bool:
        """Whether the user of ``key`` is in a voice channel the bot can speak in (checked before synthesis)."""
        return False

    async def voice_join(self, key: ConversationKey) -> str:
        """Join the voice channel the user of ``key`` is in; return its name."""
        raise NotSupportedError(i18n._('{adapter} has no voice channels').format(adapter=self.name))

    async def voice_leave(self, key: ConversationKey) -> None:
        """Leave the voice channel of the conversation's guild, stopping playback."""
        raise NotSupportedError(i18n._('{adapter} has no voice channels').format(adapter=self.name))

    async def voice_listen(self, key: ConversationKey, streams: Callable[[], Any] | None) -> str:
        """Hear what is said in the voice channel of the conversation's guild (``None``: stop hearing).

        Each utterance comes back as a :class:`Message` from its speaker in the conversation's channel.

        :param streams: makes one live recogniser per speaker (``integrations.speech.stt.SpeechStream``).
        :return: the voice channel's name.
        """
        raise NotSupportedError(i18n._('{adapter} has no voice channels').format(adapter=self.name))

    async def voice_speak(self, key: ConversationKey, audio: pathlib.Path) -> bool:
        """Speak ``audio`` where the user is; return ``False`` when the user is in no voice channel."""
        raise NotSupportedError(i18n._('{adapter} has no voice channels').format(adapter=self.name))

    async def fetch_text(self, key: ConversationKey, message_id: str) -> str | None:
        """The text of an earlier bot message, for corrections; ``None`` when unknown."""
        return None

    def mention(self, user: str) -> str:
        """How to address ``user`` in a message posted outside a conversation (a job's report); '' for none."""
        return ''

    async def close_conversation(self, key: ConversationKey) -> None:  # noqa: B027 - optional hook
        """Called when a conversation ends, to release per-conversation resources."""
