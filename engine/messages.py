"""The engine's own messages (refusals, "Cancelled.", timeouts), one table in every language.

The engine speaks to users with a few fixed texts besides the flows' own. They live here, marked
for translation, so a translator finds them in one place and the runtime and the state handlers
render them the same way: in the conversation's language, with commands written in the prefix
of the adapter the user is on (a Discord bot configured with ``?`` says ``?instruction``).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from typing import Any

from engine import i18n
from engine.i18n import N_

__all__ = ['DEFAULT_PREFIX', 'INTERRUPT_WORDS', 'MESSAGES', 'interrupt_words', 'render']

DEFAULT_PREFIX = '!'
"""How commands are written when no adapter says otherwise (:attr:`engine.api.Adapter.prefix`)."""

MESSAGES: dict[str, str] = {
    'unknown_command': N_('Unknown command "{name}"{hint}. Try {prefix}instruction for the list.'),
    'denied': N_('Sorry, {prefix}{name} is only for the "{group}" group.'),
    'no_dm': N_('{prefix}{name} does not work in direct messages.'),
    'cancelled': N_('Cancelled.'),
    'nothing_to_cancel': N_('There is nothing to cancel.'),
    'no_back': N_('There is no earlier question to go back to.'),
    'no_dialog_help': N_('No question is open. Type {prefix}instruction to see the commands.'),
    'busy': N_('Still working on {flow}; I will read your message when it is done. Type {cancel} to stop it.'),
    'interrupts': N_('During a question you can answer it, or type {cancel}, {back} or {help}.'),
    'too_many_attempts': N_('Too many invalid answers; stopping here.'),
    'timeout': N_('No answer in time; stopping here.'),
    'error': N_('Something went wrong: {error}'),
    'stale_choice': N_('That question is no longer open.'),
    'stopped': N_('Stopped {flow}.'),
    'stopped_waiting': N_(
        'Stopped waiting in {flow}; the work it started goes on and posts its result here when it ends.'
    ),
    'flow_removed': N_('The {flow} dialog was removed by the maintainers, so it ends here.'),
}
"""Every engine message by name, in English (the msgid); :func:`render` translates them."""

INTERRUPT_WORDS: dict[str, str] = {'cancel': N_('cancel'), 'back': N_('back'), 'help': N_('help')}
"""The word a user types for each interrupt (:data:`engine.flows.model.INTERRUPTS`), in English (the msgid).

A language's catalog translates each to one lowercase word (ru: ``отмена``, ``назад``, ``помощь``), which
:mod:`engine.interrupts` takes besides the English one; texts telling users what to type name it
(``{cancel}``, ``{back}``, ``{help}``), so they always name a word that works.
"""


@functools.cache
def interrupt_words(lang: str) -> Mapping[str, str]:
    """Each interrupt's word in ``lang`` (no catalog, or no translation: the English word), stripped and lowercased.

    :param lang: a language code (``ru``), as :func:`engine.i18n.language_of` gives it.
    """
    catalog = i18n.gettext_for(lang)
    words = {name: catalog.gettext(word).strip().lower() or word for name, word in INTERRUPT_WORDS.items()}
    return types.MappingProxyType(words)


def render(message: str, locale: str | None, default: str, *, prefix: str, **values: Any) -> str:
    """The engine message ``message`` in ``locale``'s language, its values filled in.

    :param locale: the user's locale; ``None`` or empty uses ``default``.
    :param default: the bot's language (``bot.language``).
    :param prefix: how commands are written on the user's adapter (``{prefix}`` in the texts).
    """
    lang = i18n.language_of(locale, default)
    return i18n.gettext_for(lang).gettext(MESSAGES[message]).format(prefix=prefix, **interrupt_words(lang), **values)
