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

``cut_key_paths`` fits the keys inside flattened fields (``extra``,
``labels``, ``model.prediction``, ...: every ``flattened`` field of the
schema). The index makes one term of a key's dotted path (lists do not
count) and its value: Elasticsearch refuses a document whose
``path + "\\0" + value`` exceeds 32,766 bytes, OpenSearch's ``flat_object``
one whose ``field.field.path=value`` does, that is from a path of about 717
bytes with a value at the 32,000-byte cap (measured on Elasticsearch 8.19.8
and 9.2.8 and OpenSearch 2.19.1; README, "Enrichment and privacy"). So a key
whose path is longer than ``KEY_PATH_MAX`` (512) UTF-8 bytes is renamed
``HEAD~HASH``: HASH is the first 8 hex digits of the SHA-256 of the full
path (UTF-8), HEAD the longest head of that path, on a character boundary,
that leaves room for the hash and for the longest path below the key's own
value (so an object under a long key keeps its keys). The new key goes
where HEAD ends, which is the key's own place unless the keys above it fill
the budget: then it goes to the nearest object above whose path HEAD still
passes through (the flattened field itself at worst), with its dotted rest.
Guarantees: every key path below a flattened field is at most the limit;
no value is dropped (two keys that meet after a cut are kept as a list,
the first one's value first, as ``json_fit.keep`` does); the same path
always becomes the same key (the hash, not a counter, tells apart two keys
with one head: a counter would depend on the other keys of the line, and
one key would get different names in different documents); the caller
tags the document ``key_truncated`` (``agent.enrich``).

``sanitise`` makes any document serialisable by orjson: strings with lone
surrogates are repaired, integers beyond 64 bits become strings, non-string
keys become strings, nesting deeper than ``MAX_DEPTH`` is replaced.

Both build copies along changed paths only and never change their input.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from agent.schema import FIELDS
from agent.transforms.redact import DEPTH_MARKER, MAX_DEPTH

_EXEMPT_TOP = frozenset({"message"})
KEY_PATH_MAX = 512  # bytes of a key path below a flattened field (see the module docstring)
TAG_KEY_TRUNCATED = "key_truncated"
_HASH_CHARS = 8
_SUFFIX = 1 + _HASH_CHARS  # "~" and the hash
# Where the flattened fields are, as paths of the document: (("extra",), ("model", "prediction"), ...).
FLATTENED = tuple(tuple(name.split(".")) for name, field in FIELDS.items() if field.type == "flattened")
_CONTAINERS = frozenset((dict, list))
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


# -- key paths below flattened fields -----------------------------------------------


def cut_key_paths(doc: dict[str, Any], limit: int = KEY_PATH_MAX) -> tuple[dict[str, Any], int]:
    """``doc`` with every key path below its flattened fields at most ``limit``
    bytes, and how many keys were renamed (see the module docstring). Copies
    the flattened values it changes, and their parents; ``doc`` is not changed."""
    count = 0
    for path, node in _found(doc, _WHERE, ()):
        try:  # the usual object at once, in C: no key path is longer than the JSON text
            if len(orjson.dumps(node)) <= limit:
                continue
        except TypeError:  # (what orjson cannot write is looked at key by key)
            pass
        if not _over(node, 0, limit, 0):
            continue
        fitter = _KeyFitter(limit)
        doc = _replaced(doc, path, fitter.walk(node, [], [], []))
        count += fitter.count
    return doc, count


def key_path_problem(name: str) -> str | None:
    """Why a field the configuration names (``--label``, ``--field``,
    ``--map-field``'s target) cannot be written, its key path below a
    flattened field being over ``KEY_PATH_MAX`` bytes; None when it can.
    Refused rather than cut: the user chose the name, and can choose another."""
    for path in FLATTENED:
        prefix = ".".join(path) + "."
        if name.startswith(prefix):
            size = _size(name[len(prefix):])
            if size > KEY_PATH_MAX:
                return (f"the key below {prefix[:-1]} is {size} bytes, over {KEY_PATH_MAX} (a key path that "
                        "long is cut in a document's own keys, so it cannot be a configured name)")
    return None


def _tree() -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in FLATTENED:
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = None
    return tree


_WHERE = _tree()  # FLATTENED as a tree: {"extra": None, "model": {"prediction": None, ...}, ...}


def _found(doc: dict[str, Any], where: dict[str, Any], at: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    """``(path, object)`` of each of ``where``'s flattened fields that holds a non-empty object in ``doc``."""
    found = []
    for key, below in where.items():
        value = doc.get(key)
        if type(value) is dict and value:
            if below is None:
                found.append((at + (key,), value))
            else:
                found += _found(value, below, at + (key,))
    return found


def _replaced(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with ``value`` at ``path`` (its parents copied too)."""
    if len(path) == 1:
        return {**doc, path[0]: value}
    return {**doc, path[0]: _replaced(doc[path[0]], path[1:], value)}


def _size(key: str) -> int:
    return len(key.encode("utf-8", "surrogatepass"))


def _over(node: dict[str, Any], used: int, limit: int, depth: int) -> bool:
    """Whether a key path below ``node`` (whose own path takes ``used`` bytes
    and a dot, or nothing at the top) is longer than ``limit`` bytes."""
    if depth > MAX_DEPTH:
        return False
    base = used + 1 if depth else 0
    if node and _CONTAINERS.isdisjoint(map(type, node.values())):  # keys with plain values: no loop in Python
        return base + 4 * max(map(len, node)) > limit and any(base + _size(key) > limit for key in node)
    for key, value in node.items():
        size = base + len(key)  # (at most 4 bytes a character: encode only the doubtful keys)
        if size > limit or (base + 4 * len(key) > limit and base + _size(key) > limit):
            return True
        if type(value) is dict or type(value) is list:
            if _over_value(value, base + _size(key), limit, depth + 1):
                return True
    return False


def _over_value(value: Any, used: int, limit: int, depth: int) -> bool:
    if type(value) is dict:
        return _over(value, used, limit, depth)
    if type(value) is list and depth <= MAX_DEPTH:
        return any(_over_value(item, used, limit, depth + 1) for item in value)
    return False


def _below(value: Any, depth: int = 0) -> int:
    """Bytes of the longest key path inside ``value``, its leading dot included (0: none)."""
    if depth > MAX_DEPTH:
        return 0
    if type(value) is dict:
        return max((1 + _size(key) + _below(item, depth + 1) for key, item in value.items()), default=0)
    if type(value) is list:
        return max((_below(item, depth + 1) for item in value), default=0)
    return 0


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """``out[key] = value``, keeping a value already there (both, as a list)."""
    out[key] = [out[key], value] if key in out else value


class _KeyFitter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def walk(self, node: dict[str, Any], parts: list[str], sizes: list[int],
             outs: list[dict[str, Any]]) -> dict[str, Any]:
        """A copy of ``node`` (at the path ``parts``, whose heads take
        ``sizes`` bytes; ``outs``: the copies of the objects above, being
        built) with its keys fitted; keys it moves up go into ``outs``."""
        out: dict[str, Any] = {}
        if len(outs) > MAX_DEPTH:  # (as the truncation: deeper is left alone)
            out.update(node)
            return out
        outs = outs + [out]
        base = sizes[-1] + 1 if parts else 0
        for key, value in node.items():
            size = base + _size(key)
            if size <= self.limit:
                _put(out, key, self.value(value, parts + [key], sizes + [size], outs))
                continue
            self.count += 1
            full = ".".join(parts + [key])
            head = cut_utf8(full, max(0, self.limit - _SUFFIX - _below(value)))
            new = head + "~" + hashlib.sha256(full.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
            # The deepest object whose path and a dot begin HEAD: the key's own unless HEAD ends before it.
            room = _size(head)
            level = len(parts)
            while level and sizes[level - 1] + 1 > room:
                level -= 1
            rest = new[len(".".join(parts[:level])) + 1:] if level else new
            new_parts = parts[:level] + [rest]
            new_sizes = sizes[:level] + [_size(new)]
            _put(outs[level], rest, self.value(value, new_parts, new_sizes, outs[:level + 1]))
        return out

    def value(self, value: Any, parts: list[str], sizes: list[int], outs: list[dict[str, Any]]) -> Any:
        if type(value) is dict:
            return self.walk(value, parts, sizes, outs)
        if type(value) is list:  # (lists are not levels of a key path)
            return [self.value(item, parts, sizes, outs) for item in value]
        return value
