"""``cancel``, ``back`` and ``help``: the words that work in every dialog, whatever its flow says.

They arrive as commands (``!cancel``, ``/cancel``) or typed as a message (``cancel``), in English or in the
words of any language's catalog (``отмена``, ``!отмена``: :data:`engine.messages.INTERRUPT_WORDS`). Inside a
question they stop the dialog, go back to the previous question or show the question's help;
outside one they get a short answer (:func:`outside_dialog`). The engine calls :func:`interrupt`
through the same narrow port as the state handlers, so this module needs nothing of the runtime.
"""

from __future__ import annotations

import functools
import sys
import types
import unicodedata
from collections.abc import Iterator, Mapping

from engine import i18n
from engine.api import Command, Event, Message
from engine.conversation import Conversation
from engine.messages import interrupt_words
from engine.states import kinds
from engine.states.handlers import handler_for, question
from engine.states.port import Runtime

__all__ = [
    'all_words',
    'as_command',
    'interrupt',
    'interrupt_named',
    'outside_dialog',
    'stopped_message',
    'typed_interrupt',
]


_longest = [sys.maxsize]
"""The longest word of any language after a one-character mark (``/``), known once :func:`_words` has read the
catalogs (until then no message is cut short); the prefix's length is added to it."""

_tables: dict[tuple[str, str], Mapping[str, str]] = {}
"""The typed spellings per (prefix, language) (:func:`_spellings`): a plain dict, read once per message."""

_MAX_TABLES = 256


def typed_interrupt(event: Event, prefix: str, language: str | None = None) -> str | None:
    """The interrupt a message is when it is only an interrupt's word, after at most one mark (``!cancel``,
    ``/cancel``, ``Отмена``; any case).

    The words are the English ones and every catalog's translation (:func:`all_words`), the conversation's
    language first where two languages' words collide: a team mixing languages types its own words whatever
    the conversation's language (Discord gives a typed message the server's locale, not the user's).

    :param prefix: the adapter's command prefix; ``/`` is accepted too, as on every adapter.
    :param language: the conversation's language; by default the language in use (:func:`engine.i18n.current`),
        which the engine sets to the event's while handling it. Looked up only for a message short enough.
    :return: the interrupt's name, or ``None`` for any other message (a question for the chat model).
    """
    if not isinstance(event, Message) or event.attachments:
        return None
    text = event.text
    if len(text) > _longest[0] + len(prefix) and not (text[0].isspace() or text[-1].isspace()):
        return None  # longer than any spelling, nothing to strip (lowercasing never shortens): most answers
    if language is None:
        language = i18n.current()
    spellings = _tables.get((prefix, language)) or _spellings(prefix, language)
    typed = text.strip().lower()
    found = spellings.get(typed)
    if found is None and not typed.isascii():  # ！отмена, ｃａｎｃｅｌ, отмена + U+200B: the user sees the word
        found = spellings.get(_visible(typed))
    return found


def _visible(text: str) -> str:
    """``text`` as its reader sees it: invisible format characters (zero-width space, soft hyphen, BOM) left out,
    full-width and other compatibility forms as the plain characters (NFKC), lowercase."""
    shown = ''.join(char for char in text if unicodedata.category(char) != 'Cf')
    return unicodedata.normalize('NFKC', shown).strip().lower()


def interrupt_named(name: str, language: str) -> str | None:
    """The interrupt a command named ``name`` is (``!отмена``, which adapters pass on as the command
    ``отмена``), ``None`` for any other name; the same words as :func:`typed_interrupt`.

    :param name: the command's name as the adapter gives it (lowercased).
    """
    return _words(language).get(name.lower())


def all_words() -> dict[str, str]:
    """Every word that is an interrupt in some language, with the interrupt (the English ones first); what a
    flow's command may not be called."""
    return dict(_words('en'))


def _spellings(prefix: str, language: str) -> Mapping[str, str]:
    """Every lowercased text :func:`typed_interrupt` takes as an interrupt, with the interrupt: one look-up per
    message. A text is an interrupt's word, after at most one mark (the prefix, else ``/``) is taken off."""
    found: dict[str, str] = {}
    for word, name in _words(language).items():
        for text in (word, prefix + word, '/' + word):
            rest = text
            for mark in (prefix, '/'):
                if mark and rest.startswith(mark):
                    rest = rest[len(mark) :]
                    break
            if rest == word:
                found.setdefault(text, name)
    table = types.MappingProxyType(found)
    if len(_tables) >= _MAX_TABLES:  # languages come from users' locales: never let them grow it without bound
        _tables.clear()
    _tables[prefix, language] = table
    return table


@functools.lru_cache(maxsize=64)
def _words(language: str) -> Mapping[str, str]:
    """Every interrupt word with its interrupt, the words of ``language`` first, then English's, then the other
    catalogs' (the first language to use a word keeps it), each in the forms a user's keyboard may give it."""
    languages = [language, 'en', *(lang for lang in i18n.available() if lang not in (language, 'en'))]
    found: dict[str, str] = {}
    for lang in languages:
        for name, word in interrupt_words(lang).items():
            for form in _forms(word):
                found.setdefault(form, name)
    _longest[0] = 1 + max(len(word) for word in found)
    return types.MappingProxyType(found)


def _forms(word: str) -> Iterator[str]:
    """``word`` composed (NFC) and decomposed (NFD, a ``ё`` as ``е`` and a diaeresis), and with ``е`` for ``ё``,
    as Russian is commonly typed; all lowercase."""
    for text in (word, word.replace('ё', 'е')):
        for form in ('NFC', 'NFD'):
            yield unicodedata.normalize(form, text).lower()


def as_command(event: Message, name: str) -> Command:
    """A typed word taken as the command ``name`` (``help`` outside a dialog runs the help flow)."""
    return Command(
        key=event.key, user=event.user, locale=event.locale, message_id=event.message_id, is_dm=event.is_dm, name=name
    )


def outside_dialog(name: str) -> str:
    """The engine message answering the interrupt ``name`` when no dialog is open."""
    return {'cancel': 'nothing_to_cancel', 'back': 'no_back'}.get(name, 'no_dialog_help')


def stopped_message(conv: Conversation, message: str) -> str:
    """``message``, or ``stopped_waiting`` when leaving the state does not stop its work (a ``wait``'s
    training job goes on), so the user is not told it was cancelled."""
    if conv.spec is not None and handler_for(conv.spec).work_outlives_state:
        return 'stopped_waiting'
    return message


async def interrupt(engine: Runtime, conv: Conversation, name: str) -> None:
    """Do what the interrupt ``name`` means in ``conv``'s current state.

    :param name: ``cancel``, ``back`` or ``help`` (:data:`engine.flows.model.INTERRUPTS`).
    """
    spec = question(conv.spec)
    if name == 'cancel':
        await engine.reply(conv, engine.text(stopped_message(conv, 'cancelled'), conv, flow=conv.compiled.name))
        await engine.finish(conv)
    elif spec is None:
        await engine.reply(conv, engine.text('busy', conv, flow=conv.compiled.name))
    elif name == 'help':
        text = kinds.render_text(engine, conv, spec.help or spec.prompt)
        hint = engine.text('interrupts', conv)
        await kinds.prompt(engine, conv, spec, f'{text}\n{hint}')  # with its choices, so they can be pressed again
    elif not conv.history:
        await engine.reply(conv, engine.text('no_back', conv))
        await kinds.prompt(engine, conv, spec)
    else:
        await engine.move(conv, f'back_{conv.history.pop()}')
