"""``cancel``, ``back`` and ``help``: the words that work in every dialog, whatever its flow says.

They arrive as commands (``!cancel``, ``/cancel``) or typed as a message (``cancel``). Inside a
question they stop the dialog, go back to the previous question or show the question's help;
outside one they get a short answer (:func:`outside_dialog`). The engine calls :func:`interrupt`
through the same narrow port as the state handlers, so this module needs nothing of the runtime.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping

from engine.api import Command, Event, Message
from engine.conversation import Conversation
from engine.flows import model
from engine.states import kinds
from engine.states.handlers import handler_for, question
from engine.states.port import Runtime

__all__ = ['as_command', 'interrupt', 'outside_dialog', 'stopped_message', 'typed_interrupt']


_LONGEST = 1 + max(len(name) for name in model.INTERRUPTS)
"""The longest interrupt's name after a one-character mark (``/``); the prefix's length is added to it."""


def typed_interrupt(event: Event, prefix: str) -> str | None:
    """The interrupt a message is when it is only ``cancel``, ``!cancel`` or ``/cancel`` (any case).

    :param prefix: the adapter's command prefix; ``/`` is accepted too, as on every adapter.
    :return: the interrupt's name, or ``None`` for any other message (a question for the chat model).
    """
    if not isinstance(event, Message) or event.attachments:
        return None
    text = event.text
    if len(text) > _LONGEST + len(prefix) and not (text[0].isspace() or text[-1].isspace()):
        return None  # longer than any spelling, nothing to strip (lowercasing never shortens): most answers
    return _spellings(prefix).get(text.strip().lower())


@functools.lru_cache(maxsize=64)
def _spellings(prefix: str) -> Mapping[str, str]:
    """Every lowercased text :func:`typed_interrupt` takes as an interrupt, with the interrupt: one look-up per
    message. A text is an interrupt's name, after at most one mark (the prefix, else ``/``) is taken off."""
    found = {}
    for name in model.INTERRUPTS:
        for text in (name, prefix + name, '/' + name):
            rest = text
            for mark in (prefix, '/'):
                if mark and rest.startswith(mark):
                    rest = rest[len(mark) :]
                    break
            if rest == name:
                found[text] = name
    return types.MappingProxyType(found)


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
