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
- No key holds a NUL character: an escaped NUL in a key (``"a\\u0000b"``)
  becomes U+FFFD. Elasticsearch refuses a document with a NUL in a key
  below a flattened field (``extra``, ``labels``, ``model.prediction``...:
  "failed to parse field [extra] of type [flattened]"), and it reserves
  that byte to separate a key from its value. Values keep their NULs
  (they are accepted). Two keys made equal keep the last value, as for
  duplicates. Only a text with the escape is walked: a NUL can reach a
  decoded key no other way (the tailer leaves NUL bytes out of lines).

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
_NUL_ESCAPE = "\\u0000"
_NUL_ESCAPE_BYTES = b"\\u0000"
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


def _nul_free(value: Any) -> Any:
    """``value`` with NUL in its keys replaced, containers changed in place
    (without recursion: orjson decoded it, so it is at most 1024 deep)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            if any("\0" in key for key in node):
                items = list(node.items())
                node.clear()
                for key, item in items:
                    node[key.replace("\0", _REPLACEMENT)] = item
            stack.extend(item for item in node.values() if type(item) is dict or type(item) is list)
        else:
            stack.extend(item for item in node if type(item) is dict or type(item) is list)
    return value


def loads(text: str | bytes) -> Any:
    """The value of one JSON text: see the module's guarantees."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        if type(text) is not str or _SURROGATE_ESCAPE.search(text) is None or _SURROGATE.search(text):
            raise
        refused = error
    else:
        # (A one-character search first: 30 ns a line, where the escape's search costs 150.)
        if type(text) is str:
            if "\\" in text and _NUL_ESCAPE in text and type(value) in (dict, list):
                return _nul_free(value)
        elif _NUL_ESCAPE_BYTES in text and type(value) in (dict, list):
            return _nul_free(value)
        return value
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_finite, parse_constant=_refuse)
    except (ValueError, RecursionError):
        raise refused from None
    repaired = _repaired(value)
    if repaired is _TOO_DEEP:
        raise refused
    if _NUL_ESCAPE in text and type(repaired) in (dict, list):
        return _nul_free(repaired)
    return repaired
