"""Typed command arguments from text: one parser for prefix commands on every adapter.

``!train data/reviews label=positive`` and ``/train data/reviews positive`` both become
``{'path': 'data/reviews', 'label': 'positive'}`` checked against the trigger's options.
"""

from __future__ import annotations

import io
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from engine.api import Attachment
from engine.errors import UserError
from engine.flows import model
from engine.flows.loader import did_you_mean
from engine.i18n import N_, _

__all__ = ['UsageError', 'convert', 'finite_float', 'parse_arguments', 'parse_bool', 'split_command', 'usage']

MAX_ARGUMENT_CHARS = 4000

_OPTION_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')
_TYPE_NAMES = {
    'string': N_('string'),
    'integer': N_('integer'),
    'number': N_('number'),
    'boolean': N_('boolean'),
    'attachment': N_('attachment'),
    'user': N_('user'),
    'channel': N_('channel'),
}
"""The kinds of arguments as usage lines name them, in the user's language (option names stay as typed)."""
_MENTION = re.compile(r'^<[@#][!&]?(\d+)>$')
_TRUE = frozenset({'true', 'yes', 'y', 'on', '1', 'да', 'д'})
_FALSE = frozenset({'false', 'no', 'n', 'off', '0', 'нет', 'н'})


def finite_float(text: str) -> float:
    """A number a person typed; ``nan`` and infinities (``1e999``) are not answers, and the store
    cannot keep them (JSON has no such numbers).

    :raises ValueError: not a finite number.
    """
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def parse_bool(text: str) -> bool | None:
    """``yes``/``no`` and their usual spellings (English and Russian); ``None`` for anything else."""
    lowered = text.strip().lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


class UsageError(UserError, ValueError):
    """The arguments do not fit the command; the message includes the usage line."""


def split_command(text: str, prefixes: Sequence[str]) -> tuple[str, str] | None:
    """``('train', 'rest of line')`` if ``text`` starts with a prefix and a name, else ``None``."""
    for prefix in prefixes:
        if text.startswith(prefix) and len(text) > len(prefix) and not text[len(prefix)].isspace():
            name, *rest = text[len(prefix) :].split(None, 1)  # a line break ends the name too
            return name.lower(), rest[0].strip() if rest else ''
    return None


def usage(name: str, trigger: model.Trigger, *, prefix: str) -> str:
    """The usage line of a command (``!train <path:string> [label:string]``), shown with argument errors
    and in the command list.

    :param prefix: how commands are written on the user's adapter (:attr:`engine.api.Adapter.prefix`).
    """
    parts = [f'{prefix}{name}']
    for option in trigger.options:
        kind = _(_TYPE_NAMES[option.type]) if option.type in _TYPE_NAMES else option.type
        label = f'{option.name}:{kind}'
        if option.choices:
            label += '=' + '|'.join(map(str, option.choices))
        parts.append(f'<{label}>' if option.is_required else f'[{label}]')
    return ' '.join(parts)


def convert(option: model.OptionSpec, raw: str) -> Any:
    """Convert one argument to the option's type; ``ValueError`` says what was expected."""
    value: Any
    if option.type == 'integer':
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(
                _('{name} must be a whole number, not "{raw}"').format(name=option.name, raw=raw)
            ) from None
    elif option.type == 'number':
        try:
            value = finite_float(raw)
        except ValueError:
            raise ValueError(_('{name} must be a number, not "{raw}"').format(name=option.name, raw=raw)) from None
    elif option.type == 'boolean':
        value = parse_bool(raw)
        if value is None:
            raise ValueError(_('{name} must be yes or no, not "{raw}"').format(name=option.name, raw=raw))
    elif option.type in ('user', 'channel'):
        match = _MENTION.match(raw)
        value = match.group(1) if match else raw
        if not value.isdigit():
            what = (
                _('{name} must be a user mention or id, not "{raw}"')
                if option.type == 'user'
                else _('{name} must be a channel mention or id, not "{raw}"')
            )
            raise ValueError(what.format(name=option.name, raw=raw))
    else:
        value = raw
    if option.choices and value not in option.choices:
        raise ValueError(
            _('{name} must be one of {choices}, not "{raw}"').format(
                name=option.name, choices=', '.join(map(str, option.choices)), raw=raw
            )
        )
    return value


def _next_word(text: str, position: int) -> int:
    """Where the next word starts at or after ``position`` (``len(text)`` when none is left)."""
    rest = text[position:]
    return position + len(rest) - len(rest.lstrip())


def _is_named(rest: str, by_name: Mapping[str, model.OptionSpec]) -> bool:
    key, sep, _rest = rest.split(None, 1)[0].partition('=')
    return bool(sep) and key in by_name


def _lexer(stream: io.StringIO) -> shlex.shlex:
    """Words split on spaces, quotes group them; a backslash is an ordinary character (``..\\x`` stays as typed,
    as Windows paths and regular expressions need)."""
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ''
    lexer.escape = ''
    return lexer


def _free_text(rest: str) -> str:
    """The rest of the line as typed (apostrophes, quotes, line breaks kept); one quoted word is unquoted."""
    rest = rest.strip()
    try:
        words = list(_lexer(io.StringIO(rest)))
    except ValueError:
        return rest
    return words[0] if len(words) == 1 else rest


def parse_arguments(
    name: str, trigger: model.Trigger, text: str, attachments: Sequence[Attachment] = (), *, prefix: str
) -> dict[str, Any]:
    """Typed options from the text after the command name (positional or ``name=value``).

    :param attachments: bound in order to the ``attachment`` options not given by name.
    :param prefix: the adapter's command prefix, for the usage line in errors.
    :raises UsageError: the text does not fit; the message ends with the usage line.
    """
    if not attachments and len(text) <= MAX_ARGUMENT_CHARS and not text.strip():  # a bare command: no lexer
        return _completed(name, trigger, {}, prefix)
    line = usage(name, trigger, prefix=prefix)
    if len(text) > MAX_ARGUMENT_CHARS:
        raise UsageError(
            _('Arguments are too long ({length} characters, at most {limit}).\nUsage: {line}').format(
                length=len(text), limit=MAX_ARGUMENT_CHARS, line=line
            )
        )
    by_name = {o.name: o for o in trigger.options}
    values: dict[str, Any] = {}
    positional = [o for o in trigger.options if o.type != 'attachment']
    tail = positional[-1] if positional and positional[-1].type == 'string' and not positional[-1].choices else None
    files = list(attachments)
    stream = io.StringIO(text)
    lexer = _lexer(stream)
    try:
        while True:
            start = _next_word(text, stream.tell())
            if start == len(text):
                break
            option = next((o for o in positional if o.name not in values), None)
            if option is not None and option is tail and not _is_named(text[start:], by_name):
                values[option.name] = _free_text(text[start:])
                break
            try:
                word = lexer.get_token()
            except ValueError as exc:
                raise UsageError(
                    _('Cannot read the arguments: {error}.\nUsage: {line}').format(error=exc, line=line)
                ) from None
            if word is None:
                break
            key, sep, raw = word.partition('=')
            if sep and key in by_name:
                if key in values:
                    raise ValueError(_('{name} is given twice').format(name=key))
                values[key] = convert(by_name[key], raw)
                continue
            if sep and _OPTION_NAME.fullmatch(key) and (hint := did_you_mean(key, by_name)):
                raise ValueError(_('unknown option "{name}"{hint}').format(name=key, hint=hint))  # a typo, not a value
            if option is None:
                raise ValueError(_('too many arguments (unexpected "{word}")').format(word=word))
            values[option.name] = convert(option, word)
        for option in trigger.options:
            if option.type == 'attachment' and option.name not in values and files:
                values[option.name] = files.pop(0)
    except UsageError:
        raise
    except ValueError as exc:
        raise UsageError(_('{error}.\nUsage: {line}').format(error=exc, line=line)) from None
    return _completed(name, trigger, values, prefix)


def _completed(name: str, trigger: model.Trigger, values: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``values`` with every option not given at its default; an error naming the required ones missing."""
    missing = [o.name for o in trigger.options if o.is_required and o.name not in values]
    if missing:
        line = usage(name, trigger, prefix=prefix)
        raise UsageError(_('Missing {names}.\nUsage: {line}').format(names=', '.join(missing), line=line))
    for option in trigger.options:
        values.setdefault(option.name, option.default)
    return values
