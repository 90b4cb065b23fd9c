"""Test doubles of a channel: adapters that record what the bot sends (or keep nothing), for dialog scripts,
code tests and benchmarks that exercise the engine without Discord or a console.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Sequence

import attrs

from engine.api import Adapter, ConversationKey, Option

__all__ = ['NullAdapter', 'RecordingAdapter', 'Sent', 'shown']


@attrs.frozen
class Sent:
    """One thing the bot sent: ``kind`` is ``text``, ``ask``, ``file`` or ``edit``.

    An edit carries the id of the message it changed; ``options`` are an ask's buttons.
    """

    kind: str
    key: ConversationKey
    text: str
    message_id: str
    options: tuple[Option, ...] = ()
    path: pathlib.Path | None = None
    voice: bool = False

    @property
    def choices(self) -> tuple[str, ...]:
        """Labels of the buttons offered, in order."""
        return tuple(o.label for o in self.options)

    def describe(self) -> str:
        """One line (or an indented block) for a transcript or a failure report."""
        if self.kind == 'file':
            label = 'voice message' if self.voice else 'file'
            return f'[{label} {self.path.name if self.path else "?"}]' + (f' {self.text!r}' if self.text else '')
        if self.kind == 'ask':
            return f'{shown(self.text, "         ")} buttons {list(self.choices)}'
        if self.kind == 'text':
            return shown(self.text, '         ')
        return f'[edit {self.message_id}] {self.text!r}'


class NullAdapter(Adapter):
    """Accepts every message and keeps nothing, for benchmarks that measure the engine rather than I/O.

    :param name: the adapter name, the first part of the conversation keys it serves.
    """

    def __init__(self, name: str = 'test') -> None:
        self.name = name

    async def send_text(self, key: ConversationKey, text: str) -> str:
        return ''

    async def send_file(
        self, key: ConversationKey, path: pathlib.Path, *, text: str | None = None, voice_message: bool = False
    ) -> str:
        return ''

    async def ask(self, key: ConversationKey, text: str, options: Sequence[Option]) -> str:
        return ''

    async def edit_text(self, key: ConversationKey, message_id: str, text: str) -> None:
        return None


class RecordingAdapter(Adapter):
    """Keeps everything the bot sends in :attr:`sent` (and ended conversations in :attr:`closed`), without voice.

    The one test double for a channel: dialog scripts, engine and plugin tests use it. New messages get
    ids ``m1``, ``m2``, ...; :meth:`fetch_text` answers with a message's latest text, as for corrections.

    :param name: the adapter name, the first part of the conversation keys it serves.
    :param delay: seconds each send takes, to expose ordering and overlap (see :attr:`max_active_per_key`).
    :param grants_all: grant every permission, like the console.
    """

    def __init__(self, name: str = 'test', *, delay: float = 0.0, grants_all: bool = False) -> None:
        self.name = name
        self.delay = delay
        self.grants_all_permissions = grants_all
        self.sent: list[Sent] = []
        self.closed: list[ConversationKey] = []
        self.active: dict[ConversationKey, int] = {}
        """Sends under way per conversation."""
        self.max_active_per_key: dict[ConversationKey, int] = {}
        """The most sends ever under way at once per conversation (1 when they were strictly ordered)."""
        self.total_active = 0
        self.max_total_active = 0
        """The most sends ever under way at once over all conversations."""
        self._ids = 0
        self._texts: dict[str, str] = {}

    async def _record(self, sent: Sent) -> str:
        key = sent.key
        self.active[key] = self.active.get(key, 0) + 1
        self.total_active += 1
        self.max_active_per_key[key] = max(self.max_active_per_key.get(key, 0), self.active[key])
        self.max_total_active = max(self.max_total_active, self.total_active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.sent.append(sent)
            self._texts[sent.message_id] = sent.text
        finally:
            self.active[key] -= 1
            self.total_active -= 1
        return sent.message_id

    def _next_id(self) -> str:
        self._ids += 1
        return f'm{self._ids}'

    async def send_text(self, key: ConversationKey, text: str) -> str:
        return await self._record(Sent('text', key, text, self._next_id()))

    async def send_file(
        self, key: ConversationKey, path: pathlib.Path, *, text: str | None = None, voice_message: bool = False
    ) -> str:
        return await self._record(Sent('file', key, text or '', self._next_id(), path=path, voice=voice_message))

    async def ask(self, key: ConversationKey, text: str, options: Sequence[Option]) -> str:
        return await self._record(Sent('ask', key, text, self._next_id(), options=tuple(options)))

    async def edit_text(self, key: ConversationKey, message_id: str, text: str) -> None:
        await self._record(Sent('edit', key, text, message_id))

    async def fetch_text(self, key: ConversationKey, message_id: str) -> str | None:
        return self._texts.get(message_id)

    async def close_conversation(self, key: ConversationKey) -> None:
        self.closed.append(key)

    def texts(self, key: ConversationKey | None = None) -> list[str]:
        """Texts sent (any kind, edits included) to ``key``, in order; ``None``: to every conversation.

        :param key: the conversation, or ``None`` for all.
        """
        return [s.text for s in self.sent if key is None or s.key == key]


def shown(text: str, indent: str = '      ') -> str:
    """A text as a transcript or a failure report shows it: ``repr`` when it is one line (so spaces and escapes
    are visible), else an indented block that keeps its lines readable.

    :param indent: put before each line of a block.
    """
    if '\n' not in text:
        return repr(text)
    return '\n' + '\n'.join(f'{indent}| {line}' for line in text.splitlines())
