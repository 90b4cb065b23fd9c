"""JSON for hikari: orjson, given to ``hikari.GatewayBot`` as its ``dumps``/``loads``.

Every gateway event and REST call of the bot goes through these two functions, and the standard library's
``json`` was a tenth of the bot's CPU per command (``benchmarks/discord.py``). hikari would pick orjson by itself
when it is importable; passing it explicitly makes the choice ours and visible, and keeps it if hikari's
fallback changes.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ['dumps', 'loads']

_OPTIONS = orjson.OPT_NON_STR_KEYS
"""hikari builds some payloads with integer keys (snowflakes); JSON keys are strings, so they are written as such."""


def dumps(obj: Any) -> bytes:
    """Encode a payload hikari sends (gateway frames, REST bodies) as UTF-8 JSON bytes, as hikari expects.

    :param obj: a JSON object or array as hikari builds it (str subclasses and enums included).
    :raises orjson.JSONEncodeError: a value JSON cannot carry (hikari reports it as a failed request).
    """
    return orjson.dumps(obj, option=_OPTIONS)


def loads(data: str | bytes) -> Any:
    """Decode what Discord sent: hikari passes gateway frames as bytes (after decompression) and REST bodies as
    bytes or str.

    :raises orjson.JSONDecodeError: not JSON (a ``ValueError``, as ``json.loads`` raises).
    """
    return orjson.loads(data)
