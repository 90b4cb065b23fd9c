"""Templates and conditions in flows, rendered by Jinja2's sandbox.

The sandbox keeps a flow from reaching Python internals through a template; compiled templates
are cached by source, and strings without template syntax skip Jinja entirely (the hot path).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import babel
import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine import i18n

__all__ = [
    'TemplateError',
    'compile_condition',
    'find_variables',
    'is_template',
    'number',
    'plural',
    'render',
    'render_value',
]

_log = logging.getLogger(__name__)

_env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def plural(value: Any, one: str, other: str, few: str | None = None, many: str | None = None) -> str:
    """``{{ n | plural('пример', 'примера', few='примера', many='примеров') }}`` -> ``5 примеров``.

    The form is chosen by the CLDR plural category of ``n`` in the reply's language (Babel), so a
    flow text can say ``1 пример``, ``2 примера``, ``5 примеров``; a missing category falls back to ``other``.
    """
    try:
        n = int(value)
    except (TypeError, ValueError):
        return f'{value} {other}'
    try:
        category = babel.Locale.parse(i18n.current()).plural_form(abs(n))
    except (ValueError, babel.UnknownLocaleError):
        category = 'one' if abs(n) == 1 else 'other'
    word = {'one': one, 'few': few, 'many': many}.get(category) or other
    return f'{i18n.format_number(n)} {word}'


def number(value: Any, digits: int | None = None) -> str:
    """``{{ x | number }}``: a number written the reply language's way (``1 234,5`` in Russian)."""
    try:
        return i18n.format_number(float(value) if digits is not None or not isinstance(value, int) else value, digits)
    except (TypeError, ValueError):
        return str(value)


_env.filters['plural'] = plural
_env.filters['number'] = number


class TemplateError(Exception):
    """A template failed to parse or render; the message names the template."""


def is_template(text: str) -> bool:
    return '{{' in text or '{%' in text


@functools.lru_cache(maxsize=4096)
def _template(source: str) -> jinja2.Template:
    try:
        return _env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f'template {source!r}: {exc.message} (line {exc.lineno})') from exc


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render ``source``; plain strings come back unchanged without touching Jinja."""
    if not is_template(source):
        return source
    try:
        return _template(source).render(context)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f'template {source!r}: {exc.message}') from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(f'template {source!r}: {exc}') from exc


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render strings inside lists and tables (action arguments).

    A string that is exactly one ``{{ expression }}`` keeps the expression's type, so
    ``count = "{{ options.count }}"`` passes an integer, not its text.
    """
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith('{{') and stripped.endswith('}}') and stripped.count('{{') == 1:
            return compile_condition(stripped[2:-2])(context)
        return render(value, context)
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value


@functools.lru_cache(maxsize=4096)
def compile_condition(expression: str) -> Callable[[Mapping[str, Any]], Any]:
    """Compile a ``choice`` condition (a Jinja expression such as ``answer == "yes"``)."""
    try:
        compiled = _env.compile_expression(expression, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f'expression {expression!r}: {exc.message}') from exc

    def evaluate(context: Mapping[str, Any]) -> Any:
        try:
            return compiled(**context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f'expression {expression!r}: {exc.message}') from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f'expression {expression!r}: {exc}') from exc

    return evaluate


def find_variables(source: str, *, expression: bool = False) -> set[str]:
    """Top-level names a template or expression reads, for lint's unknown-variable check."""
    text = '{{ ' + source + ' }}' if expression else source
    try:
        return set(meta.find_undeclared_variables(_env.parse(text)))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f'{"expression" if expression else "template"} {source!r}: {exc.message}') from exc
