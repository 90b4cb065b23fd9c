"""One catalog for every message built in Python: gettext, managed with Babel.

Messages are marked with :func:`_` (or :func:`N_` where only the msgid is stored, translated
later) and :func:`ngettext` for plural forms. ``pybabel extract -F babel.cfg`` collects them into
``engine/locale/flowbot.pot``; each language has ``engine/locale/LANG/LC_MESSAGES/flowbot.po``
(committed, shipped as package data). The ``.po`` is compiled in memory with Babel the first time
a language is used, so a checkout and an installed wheel behave the same and no build step can be
forgotten.

The language of a message is the one of the reply being built: the engine sets it per event
(:func:`use`), from the user's locale, else the guild's, else ``bot.language``; tasks started
while handling the event (actions, training jobs) inherit it, as asyncio copies context variables.
"""

from __future__ import annotations

import contextvars
import datetime
import functools
import gettext
import io
import logging
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import babel
import babel.dates
import babel.numbers
from babel.messages import mofile, pofile

__all__ = [
    'DOMAIN',
    'LOCALE_DIR',
    'N_',
    '_',
    'available',
    'carried',
    'current',
    'enter',
    'environment_language',
    'format_date',
    'format_datetime',
    'format_number',
    'format_percent',
    'gettext_for',
    'language_of',
    'ngettext',
    'restore',
    'set_default',
    'switch',
    'use',
]

_log = logging.getLogger(__name__)

T = TypeVar('T')

DOMAIN = 'flowbot'
LOCALE_DIR = pathlib.Path(__file__).resolve().parent / 'locale'

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar('flowbot_language', default=None)
_default = ['en']
"""The language outside any event (``bot.language``), set by the engine."""


def set_default(locale: str | None) -> None:
    """Use ``locale``'s language where no event chose one (start-up, restored timers, the console)."""
    _default[0] = language_of(locale)


@functools.lru_cache(maxsize=1024)
def language_of(locale: str | None, default: str = 'en') -> str:
    """``ru-RU``, ``ru_RU``, ``ru`` -> ``ru``; empty, or no language code (1-8 ASCII letters) -> ``default``.

    Locales come from outside (a server's settings, a terminal); the code names a catalog's folder, so anything
    else (``../x``, 300 letters: a file error on every message) reads as no locale.
    """
    lang = (locale or '').replace('_', '-').split('-')[0].strip().lower()
    return lang if 0 < len(lang) <= 8 and lang.isascii() and lang.isalpha() else default


def environment_language(environ: Mapping[str, str] | None = None) -> str | None:
    """The terminal's language for ``flowbot`` commands: the first of ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``
    and ``LANG`` (gettext's order) that names one; ``C`` and ``POSIX`` (containers, services) name none.

    :param environ: the variables to read (default: the process environment).
    """
    env = os.environ if environ is None else environ
    for name in ('LANGUAGE', 'LC_ALL', 'LC_MESSAGES', 'LANG'):
        value = env.get(name, '').split(':')[0].split('.')[0].split('@')[0]
        lang = language_of(value, default='')
        if lang and lang not in ('c', 'posix'):
            return lang
    return None


def available() -> list[str]:
    """Languages with a catalog, plus ``en`` (the msgids themselves)."""
    found = {p.parent.parent.name for p in LOCALE_DIR.glob(f'*/LC_MESSAGES/{DOMAIN}.po')}
    return sorted(found | {'en'})


@functools.cache
def gettext_for(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of ``lang`` (no catalog: the English msgids). Fuzzy entries are not used."""
    path = LOCALE_DIR / lang / 'LC_MESSAGES' / f'{DOMAIN}.po'
    if not path.is_file():
        return gettext.NullTranslations()
    try:
        with path.open('rb') as po:
            catalog = pofile.read_po(po, locale=lang, domain=DOMAIN)
        compiled = io.BytesIO()
        mofile.write_mo(compiled, catalog, use_fuzzy=False)
        compiled.seek(0)
        return gettext.GNUTranslations(compiled)
    except Exception:
        _log.exception('i18n: the catalog %s cannot be read; messages stay in English', path)
        return gettext.NullTranslations()


def current() -> str:
    """The language of the reply being built."""
    return _current.get() or _default[0]


class use:
    """Build messages in ``locale``'s language inside the block; no locale: ``default``, else the language in use.

    A class rather than a generator-based context manager: it is entered for every event the engine handles.
    """

    __slots__ = ('_lang', '_token')

    def __init__(self, locale: str | None, default: str | None = None) -> None:
        self._lang = language_of(locale) if locale else language_of(default) if default else current()

    def __enter__(self) -> str:
        self._token = _current.set(self._lang)
        return self._lang

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)


def switch(locale: str | None, default: str | None = None) -> contextvars.Token[str | None] | None:
    """Build messages in ``locale``'s language (as :class:`use` chooses it) until :func:`restore` is given the token.

    :class:`use` without a ``with`` block, for the engine's dispatch (once per event). ``None`` when that language
    is in use already (most events): nothing is written, as setting a context variable copies the context's map.
    """
    lang = language_of(locale) if locale else language_of(default) if default else current()
    return None if lang == (_current.get() or _default[0]) else _current.set(lang)


def restore(token: contextvars.Token[str | None] | None) -> None:
    """Go back to the language in use before :func:`switch` returned ``token`` (``None``: it changed nothing)."""
    if token is not None:
        _current.reset(token)


def enter(locale: str | None) -> str:
    """Build messages in ``locale``'s language for the rest of the current task (an event handler, which runs as
    a task of its own, so nothing leaks to other events); no locale: the language stays as it is."""
    if locale:
        _current.set(language_of(locale))
    return current()


def carried(fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    """``fn(*args)`` bound to the current language, for ``loop.run_in_executor`` (which, unlike
    ``asyncio.to_thread``, runs it without the caller's context: its messages would be in the default language)."""
    context = contextvars.copy_context()
    return lambda: context.run(fn, *args)


def _(message: str) -> str:
    """``message`` in the current language."""
    return gettext_for(current()).gettext(message)


def N_(message: str) -> str:
    """Mark ``message`` for extraction only; it is translated where it is shown (with :func:`_`)."""
    return message


def ngettext(singular: str, plural: str, n: int) -> str:
    """The plural form for ``n`` in the current language (ru: 1 пример, 2 примера, 5 примеров)."""
    return gettext_for(current()).ngettext(singular, plural, n)


def _babel_locale() -> babel.Locale:
    try:
        return babel.Locale.parse(current())
    except (ValueError, babel.UnknownLocaleError):
        return babel.Locale.parse('en')


def format_number(value: float, digits: int | None = None) -> str:
    """``value`` written the current language's way (``1,234.5`` / ``1 234,5``); ``digits`` fixes the decimals."""
    pattern = None if digits is None else '#,##0.' + '0' * digits if digits else '#,##0'
    return babel.numbers.format_decimal(value, format=pattern, locale=_babel_locale())


def format_percent(value: float, digits: int = 1) -> str:
    """A fraction as a percentage the current language's way (``93.5%`` / ``93,5 %``)."""
    return babel.numbers.format_percent(value, format='#,##0.' + '0' * digits + '%', locale=_babel_locale())


def format_date(value: datetime.date) -> str:
    """A date the current language's way (``Nov 29, 2026``, ``29 нояб. 2026 г.``)."""
    return babel.dates.format_date(value, format='medium', locale=_babel_locale())


def format_datetime(value: datetime.datetime) -> str:
    """A date and time the current language's way, in the value's own time zone."""
    return babel.dates.format_datetime(value, format='short', tzinfo=value.tzinfo, locale=_babel_locale())
