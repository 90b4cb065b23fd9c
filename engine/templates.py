"""Templates and conditions in flows, rendered by Jinja2's sandbox, with bounded cost.

The sandbox keeps a flow from reaching Python internals through a template; on top of it, every
operation whose result can grow without bound is capped, so one flow edit cannot freeze the bot
or fill its memory: ``**`` (exponent and result size), ``*`` and ``+`` on texts and lists (result
length), ``%`` and ``format`` (field widths), ``range`` (length and iterations per render),
padding filters, ``namespace`` values, and the rendered length (checked while rendering). Jinja
never folds these operators at compile time (they are intercepted), so lint cannot hang on
``{{ 9**(9**9) }}``. Compiled templates are cached by source, and strings without template
syntax skip Jinja entirely (the hot path).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import babel
import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as DEFAULT_FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from engine import i18n
from engine.errors import UserError
from engine.i18n import _

__all__ = [
    'MAX_RENDERED_CHARS',
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

MAX_RENDERED_CHARS = 100_000
"""Longest text one template may produce (a Discord message is 2,000; files are sent, not rendered)."""
MAX_VALUE_CHARS = 100_000
"""Longest text or list one operation inside a template may build."""
MAX_RANGE = 10_000
"""Longest ``range`` and most ``range`` steps in one render."""
MAX_EXPONENT_BITS = 4_096
"""Largest number ``**`` may produce, in bits (about 1,200 decimal digits)."""
MAX_WIDTH = 1_000
"""Widest field ``%``, ``format``, ``center``, ``indent`` and ``wordwrap`` may pad to."""

MAX_LOOP_STEPS = 100_000
"""Most ``for`` loop steps in one render, nested loops included."""

_range_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar('range_budget')
_loop_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar('loop_budget')
_WIDTH = re.compile(r'(\d+)')


def _too_big(what: str, size: int, limit: int) -> SecurityError:
    return SecurityError(
        i18n._('{what} would be {size} long; templates are limited to {limit}').format(
            what=what, size=i18n.format_number(size), limit=i18n.format_number(limit)
        )
    )


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


def _check_width(fmt: str) -> None:
    widths = [int(w) for w in _WIDTH.findall(fmt) if len(w) < 12]
    if any(len(w) >= 12 for w in _WIDTH.findall(fmt)) or any(w > MAX_WIDTH for w in widths):
        raise SecurityError(i18n._('a format field is wider than {limit} characters').format(limit=MAX_WIDTH))


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int | float) and isinstance(exponent, int | float) and base != 0:
        bits = abs(math.log2(abs(base)) * float(exponent))  # size of the result, either way from 1
        if bits > MAX_EXPONENT_BITS and (abs(base) > 1) == (exponent > 0):
            raise SecurityError(
                i18n._('{base} ** {exponent} is too large a number for a template').format(
                    base=_short(repr(base)), exponent=_short(repr(exponent))
                )
            )
    return base**exponent


def _times(left: Any, right: Any) -> Any:
    for sequence, count in ((left, right), (right, left)):
        size = _length(sequence)
        if size is not None and isinstance(count, int) and size * count > MAX_VALUE_CHARS:
            raise _too_big(i18n._('a repeated value'), size * count, MAX_VALUE_CHARS)
    return left * right


def _plus(left: Any, right: Any) -> Any:
    a, b = _length(left), _length(right)
    if a is not None and b is not None and a + b > MAX_VALUE_CHARS:
        raise _too_big(i18n._('a joined value'), a + b, MAX_VALUE_CHARS)
    return left + right


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _check_width(left)
    return left % right


def _bounded_range(*args: int) -> range:
    """``range`` with at most :data:`MAX_RANGE` steps, and at most that many over one render."""
    steps = range(*args)
    budget = _range_budget.get(None)
    if len(steps) > MAX_RANGE:
        raise _too_big(i18n._('a range'), len(steps), MAX_RANGE)
    if budget is not None:
        budget[0] -= len(steps)
        if budget[0] < 0:
            raise SecurityError(
                i18n._('the template loops over more than {limit} range steps in all').format(
                    limit=i18n.format_number(MAX_RANGE)
                )
            )
    return steps


def _loop_guard(iterable: Any) -> Iterator[Any]:
    """The items of a template's ``for`` loop, counted against :data:`MAX_LOOP_STEPS` per render."""
    budget = _loop_budget.get(None)
    for item in iterable:
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise SecurityError(
                    i18n._('the template loops more than {limit} times').format(
                        limit=i18n.format_number(MAX_LOOP_STEPS)
                    )
                )
        yield item


class _BoundedNamespace(Namespace):
    """``namespace()`` whose values cannot grow past :data:`MAX_VALUE_CHARS` (``ns.s = ns.s ~ ns.s``)."""

    def __setitem__(self, name: str, value: Any) -> None:
        size = _length(value)
        if size is not None and size > MAX_VALUE_CHARS:
            raise _too_big(i18n._('namespace value {name}').format(name=name), size, MAX_VALUE_CHARS)
        super().__setitem__(name, value)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with the growth of every operation capped (see the module docstring)."""

    intercepted_binops = frozenset({'**', '*', '+', '%'})
    _operations: dict[str, Callable[[Any, Any], Any]] = {'**': _power, '*': _times, '+': _plus, '%': _modulo}

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return self._operations[operator](left, right)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Jinja's parse, with every ``for`` loop's iterable passed through :func:`_loop_guard`."""
        template = super()._parse(source, name, filename)
        for loop in template.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.Name('_loop_guard', 'load'), [loop.iter], [], None, None)
        return template

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_width(value.__self__)
        return wrapped


def _bounded_filter(name: str, *width_args: int) -> Callable[..., Any]:
    original = DEFAULT_FILTERS[name]

    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        for i in width_args:
            width = args[i] if len(args) > i else None
            if isinstance(width, int) and abs(width) > MAX_WIDTH:
                raise SecurityError(
                    i18n._('{name} is limited to a width of {limit}').format(name=name, limit=MAX_WIDTH)
                )
        if name == 'format' and isinstance(value, str):
            _check_width(value)
        return original(value, *args, **kwargs)

    return bounded


_env = _BoundedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
_env.globals.update(range=_bounded_range, namespace=_BoundedNamespace, _loop_guard=_loop_guard)
_env.filters.update(
    center=_bounded_filter('center', 0),
    indent=_bounded_filter('indent', 0),
    wordwrap=_bounded_filter('wordwrap', 0),
    format=_bounded_filter('format'),
)


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


class TemplateError(UserError):
    """A template failed to parse or render; the message names the template."""


@functools.lru_cache(maxsize=4096)
def is_template(text: str) -> bool:
    """Whether ``text`` holds Jinja markup; plain text is used as it is, without compiling a template.

    Cached (flow texts are few and asked on every step): a hit is one C call, no Python frame."""
    return '{{' in text or '{%' in text


@functools.lru_cache(maxsize=4096)
def _template(source: str) -> jinja2.Template:
    try:
        template = _env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            _('template {source}: {error} (line {line})').format(
                source=_short(source), error=exc.message, line=exc.lineno
            )
        ) from None
    except RecursionError:
        raise TemplateError(_('template {source}: nested too deeply').format(source=_short(source))) from None
    # Jinja keeps a template's globals as a ChainMap over the environment's and copies them into every render's
    # context; one plain dict (the environment's globals are all set at import) makes that copy 3x cheaper.
    template.globals = dict(template.globals)
    return template


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render ``source``; plain strings come back unchanged without touching Jinja."""
    if not is_template(source):
        return source
    budget = _range_budget.set([MAX_RANGE])
    loops = _loop_budget.set([MAX_LOOP_STEPS])
    try:
        parts: list[str] = []
        size = 0
        for chunk in _template(source).generate(context):  # checked while rendering, not after
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise TemplateError(
                    _('template {source}: the text would be longer than {limit} characters').format(
                        source=_short(source), limit=i18n.format_number(MAX_RENDERED_CHARS)
                    )
                )
            parts.append(chunk)
        return ''.join(parts)
    except jinja2.UndefinedError as exc:
        raise TemplateError(_('template {source}: {error}').format(source=_short(source), error=exc.message)) from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(_('template {source}: {error}').format(source=_short(source), error=exc)) from exc
    except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise TemplateError(
            _('template {source}: {error}').format(source=_short(source), error=f'{exc.__class__.__name__}: {exc}')
        ) from None
    finally:
        _range_budget.reset(budget)
        _loop_budget.reset(loops)


def _short(source: str) -> str:
    return repr(source if len(source) <= 120 else source[:117] + '...')


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
        raise TemplateError(
            _('expression {source}: {error}').format(source=_short(expression), error=exc.message)
        ) from None
    except RecursionError:
        raise TemplateError(_('expression {source}: nested too deeply').format(source=_short(expression))) from None

    def evaluate(context: Mapping[str, Any]) -> Any:
        budget = _range_budget.set([MAX_RANGE])
        try:
            return compiled(**context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                _('expression {source}: {error}').format(source=_short(expression), error=exc.message)
            ) from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(_('expression {source}: {error}').format(source=_short(expression), error=exc)) from exc
        except (ArithmeticError, ValueError, TypeError, RecursionError, MemoryError) as exc:
            raise TemplateError(
                _('expression {source}: {error}').format(
                    source=_short(expression), error=f'{exc.__class__.__name__}: {exc}'
                )
            ) from None
        finally:
            _range_budget.reset(budget)

    return evaluate


_SIMPLE_TEMPLATE = re.compile(r'(?:[^{%#]|\{(?![{%#])|\{\{\s*[A-Za-z_][A-Za-z0-9_.]*\s*\}\})*')
_SIMPLE_NAME = re.compile(r'\{\{\s*([A-Za-z_][A-Za-z0-9_]*)')


@functools.lru_cache(maxsize=4096)
def find_variables(source: str, *, expression: bool = False) -> frozenset[str]:
    """Top-level names a template or expression reads, for lint's unknown-variable check.

    Plain substitutions (``Hello {{ user.name }}``, most templates) are read without Jinja's parser,
    so linting a flow of ten thousand states stays well under a second for this step.
    """
    if not expression and _SIMPLE_TEMPLATE.fullmatch(source):
        return frozenset(_SIMPLE_NAME.findall(source))
    text = '{{ ' + source + ' }}' if expression else source
    try:
        return frozenset(meta.find_undeclared_variables(_env.parse(text)))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            (_('expression {source}: {error}') if expression else _('template {source}: {error}')).format(
                source=_short(source), error=exc.message
            )
        ) from None
    except RecursionError:
        raise TemplateError(
            (
                _('expression {source}: nested too deeply') if expression else _('template {source}: nested too deeply')
            ).format(source=_short(source))
        ) from None
