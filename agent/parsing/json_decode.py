"""Decoding one JSON line: orjson, and a retry for lone UTF-16 surrogates.

Python's ``json.dumps`` writes a string holding a lone surrogate as an
escape (``"caf\\udce9.bin"``): that is how a file name that is not UTF-8,
read with ``surrogateescape``, reaches a JSON log. orjson refuses the whole
line for it. ``loads`` reads such a line anyway, so its fields are kept.

Guarantees of ``loads(text)``:

- For every line orjson reads, the same value (orjson is tried first: the
  fast path is unchanged).
- A line orjson refuses, that holds a surrogate escape and no surrogate
  character, is read by ``json.loads`` with each lone surrogate, in keys and
  values, replaced by U+FFFD. Numbers are read as orjson reads them:
  integers beyond 64 bits become floats, NaN, Infinity and overflowing
  floats are refused, as is nesting deeper than orjson allows.
- Anything else refused raises orjson's own error, so callers that catch
  ``orjson.JSONDecodeError`` need no change.

Every place that asks "is this line a JSON object" uses this function, so
the agent's parsers and the raw parser (``--parse-at elasticsearch``) group
the same lines.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

# An escape of a high or low surrogate. Only a line with one is retried: any
# other line orjson refuses is not JSON. (A surrogate character in the text
# itself is not retried: the reader never makes one, as it replaces the
# bytes it cannot decode.)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # after json.loads, a paired one is one character
_REPLACEMENT = "\ufffd"
_MAX_DEPTH = 1024  # orjson's depth limit
_LONG_MIN = -(1 << 63)
_ULONG_MAX = (1 << 64) - 1
_TOO_DEEP = object()


def _integer(text: str) -> int | float:
    # As orjson: an int within i64 / u64, else a float (also for digit runs
    # too long for int(), which a float reads without a limit).
    if len(text) <= 20:
        number = int(text)
        if _LONG_MIN <= number <= _ULONG_MAX:
            return number
    return _finite(text)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("number is infinity when parsed as double")
    return number


def _refuse(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


def _repair(text: str) -> str:
    return _SURROGATE.sub(_REPLACEMENT, text) if _SURROGATE.search(text) else text


def _repaired(value: Any) -> Any:
    """``value`` with lone surrogates replaced, containers changed in place
    (without recursion: the depth is up to 1024); ``_TOO_DEEP`` beyond
    orjson's limit."""
    if type(value) is str:
        return _repair(value)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return _TOO_DEEP
        if type(node) is dict:
            items = list(node.items())
            node.clear()
            for key, item in items:
                if type(item) is str:
                    item = _repair(item)
                elif type(item) in (dict, list):
                    stack.append((item, depth + 1))
                node[_repair(key)] = item  # (two keys made equal: the last wins, as for duplicates)
        elif type(node) is list:
            for index, item in enumerate(node):
                if type(item) is str:
                    node[index] = _repair(item)
                elif type(item) in (dict, list):
                    stack.append((item, depth + 1))
    return value


def loads(text: str | bytes) -> Any:
    """The value of one JSON text: see the module's guarantees."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        if type(text) is not str or _SURROGATE_ESCAPE.search(text) is None or _SURROGATE.search(text):
            raise
        refused = error
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_finite, parse_constant=_refuse)
    except (ValueError, RecursionError):
        raise refused from None
    repaired = _repaired(value)
    if repaired is _TOO_DEEP:
        raise refused
    return repaired
