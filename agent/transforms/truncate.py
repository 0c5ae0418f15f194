"""Oversized fields and unserialisable values.

``truncate_fields`` cuts every string leaf longer than ``max_bytes`` UTF-8
bytes, on a character boundary, keeping its head. ``message`` and
``event.original`` are left alone: they already obey --max-line-bytes and
--multiline-max-bytes, which the user chose for them. (For a traceback the
full text therefore survives in ``message`` even when ``error.stack_trace``
is cut.)

Why a cap at all: Elasticsearch rejects a whole document whose keyword or
flattened value exceeds Lucene's 32,766-byte term limit; the default cap
(32,000) stays below it with room for a flattened field's key path.

``sanitise`` makes any document serialisable by orjson: strings with lone
surrogates are repaired, integers beyond 64 bits become strings, non-string
keys become strings, nesting deeper than ``MAX_DEPTH`` is replaced.

Both build copies along changed paths only and never change their input.
"""

from __future__ import annotations

from typing import Any

from agent.transforms.redact import DEPTH_MARKER, MAX_DEPTH

_EXEMPT_TOP = frozenset({"message"})
_INT64 = (-(2 ** 63), 2 ** 64 - 1)


def cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits ``max_bytes``."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    # "ignore" drops only the partial character at the cut.
    return data[:max_bytes].decode("utf-8", "ignore")


class _Truncator:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.quick = max_bytes // 4  # a string this short cannot exceed the cap (<= 4 bytes/char)
        self.count = 0

    def value(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            if len(value) <= self.quick:
                return None
            new = cut_utf8(value, self.max_bytes)
            if new is value:
                return None
            self.count += 1
            return new
        if kind is dict:
            return self.node(value, depth + 1)
        if kind is list or kind is tuple:
            copy = None
            for index, item in enumerate(value):
                new = self.value(item, depth + 1)
                if new is not None:
                    if copy is None:
                        copy = list(value)
                    copy[index] = new
            return copy
        return None

    def node(self, node: dict[str, Any], depth: int, top: bool = False) -> dict[str, Any] | None:
        if depth > MAX_DEPTH:
            return None
        copy = None
        for key, value in node.items():
            if top and key in _EXEMPT_TOP:
                continue
            if top and key == "event" and type(value) is dict and "original" in value:
                others = {k: v for k, v in value.items() if k != "original"}
                changed = self.node(others, depth + 1)
                new = None if changed is None else {**changed, "original": value["original"]}
            else:
                new = self.value(value, depth)
            if new is not None:
                if copy is None:
                    copy = dict(node)
                copy[key] = new
        return copy


def truncate_fields(doc: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], int]:
    """``doc`` with oversized string leaves cut, and how many were cut."""
    truncator = _Truncator(max_bytes)
    new = truncator.node(doc, 0, top=True)
    return (new if new is not None else doc), truncator.count


def sanitise(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that orjson can serialise (see the module docstring)."""
    kind = type(value)
    if kind is str:
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
    if kind is int:
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if kind is dict or kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            return DEPTH_MARKER
        if kind is dict:
            return {(sanitise(key, depth + 1) if type(key) is str else str(key)): sanitise(item, depth + 1)
                    for key, item in value.items()}
        return [sanitise(item, depth + 1) for item in value]
    if isinstance(value, (float, bool, type(None))):
        return value
    try:
        text = str(value)
    except Exception:  # a broken __str__ must not stop the agent
        text = f"<{type(value).__name__}>"
    return sanitise(text, depth)
