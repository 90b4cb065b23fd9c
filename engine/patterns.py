"""Regular expressions from flows (``ask`` ``pattern``, trigger ``filter.pattern``), run in linear time.

Python's ``re`` backtracks: ``(a+)+$`` takes seconds on a 30-character answer. Flows' patterns run
on RE2 (the ``google-re2`` binding) instead, whose matching time is linear in the text; what RE2
cannot do in linear time (backreferences, lookaround) is refused at lint with RE2's reason. Texts
longer than :data:`MAX_MATCH_CHARS` are never matched.
"""

from __future__ import annotations

import functools
from typing import Any

import re2

from engine.errors import FlowbotError
from engine.i18n import _

__all__ = ['MAX_MATCH_CHARS', 'MAX_PATTERN_CHARS', 'PatternError', 'compile_pattern', 'fullmatch', 'search']

MAX_MATCH_CHARS = 4_000
"""Longest text a flow pattern is matched against (an answer, a message); longer never matches."""
MAX_PATTERN_CHARS = 1_000
_MAX_MEM = 8 << 20
"""Memory RE2 may use for one compiled pattern; a bigger automaton is refused, not built."""

_options = re2.Options()
_options.log_errors = False
_options.max_mem = _MAX_MEM


class PatternError(FlowbotError, ValueError):
    """A pattern RE2 cannot run; the message says why in words for the maintainer."""


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern.

    :raises PatternError: too long, or a construct RE2 does not support (backreferences, lookaround).
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(
            _('the pattern is {length} characters long; the limit is {limit}').format(
                length=len(pattern), limit=MAX_PATTERN_CHARS
            )
        )
    try:
        return re2.compile(pattern, options=_options)
    except re2.error as exc:
        reason = exc.args[0].decode('utf-8', 'replace') if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(
            _('{reason} (patterns run on RE2 in linear time: no backreferences or lookaround)').format(reason=reason)
        ) from None


def fullmatch(pattern: str, text: str) -> bool:
    """Whether all of ``text`` matches; ``False`` for texts over :data:`MAX_MATCH_CHARS`."""
    return len(text) <= MAX_MATCH_CHARS and compile_pattern(pattern).fullmatch(text) is not None


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` occurs in ``text``; ``False`` for texts over :data:`MAX_MATCH_CHARS`."""
    return len(text) <= MAX_MATCH_CHARS and compile_pattern(pattern).search(text) is not None
