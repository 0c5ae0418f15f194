"""Whether a JSON value fits the index mapping where ``parse_json`` places it.

A JSON log line may carry ECS keys (``"log": {...}``, ``"http.request.method"``)
whose values have any shape; Elasticsearch rejects the whole document when
one of them contradicts the mapping. The rules here are derived from the
schema (agent/schema, fields.yml), the single source of the mapping, as a
tree of paths (``ROOTS``), each one of:

    LEAF     a keyword, text, number, date, ip or boolean field: any value but
             an object or a list holding one (bad numbers, dates and
             addresses are ignored by the index, ``ignore_malformed``)
    OBJECT   a parent of fields (``http.request``, ``log.origin.file``): an
             object, whose keys are checked in turn; not a plain value or a list
    FLAT     a flattened field (``labels``, ``extra``, ``model.prediction``):
             an object, nested at most ``FLATTENED_DEPTH_LIMIT`` (50) objects
             deep, the field's own object included
    OPEN     an object whose keys take one type (``model.stats``) or a
             histogram: an object, not looked into
    INSIDE   below a flattened field (``"labels.team"``): any value, capped in depth

A path outside the tree is not mapped (the mapping is ``dynamic: false``):
any value fits there and is not looked into. ``null`` fits everywhere.
Inside a mapped object a key must be a usable field name: each of its
dotted parts non-empty and not only whitespace (``""``, ``" "``, ``"a."``,
``"a..b"`` are rejected or split oddly by Elasticsearch), and a dotted key
(``"origin.file"``) is checked at the path it names.

Guarantees:

- Lossless: a value that does not fit is never dropped; the caller keeps it
  under ``extra`` by its dotted key (``{"http": {"request": {"body": "x"}}}``
  gives ``extra["http.request.body"] = "x"``), with ``keep``: when that key
  is already taken (two spellings of one field, ``"log.offset"`` and
  ``"log": {"offset": ...}``) the values are kept together as a list, never
  overwritten.
- Depth: an object nested deeper than a flattened field accepts is replaced,
  at the first level that would exceed the limit, by its JSON text (orjson,
  keys in order; ``text_of``), so nothing is lost and the levels above stay
  searchable. Lists do not count as levels (as in Elasticsearch).
- ``fit`` changes the value it is given in place (``parse_json`` owns the
  objects it maps) and never raises.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from agent.schema import FIELDS, FLATTENED_DEPTH_LIMIT

LEAF, OBJECT, FLAT, OPEN, INSIDE = range(5)
# An entry: (kind, the entries of the keys below an OBJECT or None, the object
# levels a value may still hold: FLAT and INSIDE only).
Entry = tuple
LEAF_ENTRY: Entry = (LEAF, None, 0)  # one shared object: ``entry is LEAF_ENTRY`` on the hot path
MISFIT: Entry = (-1, None, 0)  # a path no value can take (below a leaf, a bad name)
NO_FIT: Any = object()  # what ``fit`` returns for a value that does not fit
_OPEN_ENTRY: Entry = (OPEN, None, 0)
_FLAT_ENTRY: Entry = (FLAT, None, FLATTENED_DEPTH_LIMIT)
_CONTAINERS = frozenset((dict, list))


def _build() -> dict[str, Entry]:
    roots: dict[str, Entry] = {}
    for name, field in FIELDS.items():
        parts = name.split(".")
        node = roots
        for part in parts[:-1]:
            node = node.setdefault(part, (OBJECT, {}, 0))[1]  # (the schema has no field below a leaf)
        if field.type == "flattened":
            node[parts[-1]] = _FLAT_ENTRY
        elif field.type in ("object", "histogram"):
            node[parts[-1]] = _OPEN_ENTRY
        else:
            node[parts[-1]] = LEAF_ENTRY
    return roots


ROOTS: dict[str, Entry] = _build()


def good_name(part: str) -> bool:
    """A usable field name part: not empty, not only whitespace."""
    return bool(part) and not part.isspace()


def resolve(parts: list[str] | tuple[str, ...], below: dict[str, Entry] = ROOTS) -> Entry | None:
    """The entry of the dotted path ``parts`` (from ``below``): None when it is
    not mapped, ``MISFIT`` when no value can go there."""
    if not all(map(good_name, parts)):
        return MISFIT
    entry: Entry | None = None
    for index, part in enumerate(parts):
        if below is None:
            return None
        entry = below.get(part)
        if entry is None:
            return None
        kind = entry[0]
        rest = len(parts) - index - 1
        if rest and kind != OBJECT:
            if kind == FLAT:  # "labels.team": a key inside the flattened object
                return (INSIDE, None, entry[2] - rest)
            return MISFIT  # below a leaf (or a histogram, or a children object)
        below = entry[1]
    return entry


def keep(extra: dict[str, Any], key: str, value: Any) -> None:
    """``extra[key] = value``, keeping a value already there: both, as a list
    in the order they were set aside."""
    if key in extra:
        extra[key] = [extra[key], value]
    else:
        extra[key] = value


def fit(value: Any, entry: Entry, key: str, extra: dict[str, Any]) -> Any:
    """``value`` ready for the path of ``entry`` (``key``: its dotted name), or
    ``NO_FIT``. Parts of an object that do not fit are moved to ``extra``."""
    if entry is MISFIT:
        return NO_FIT
    if value is None:
        return value
    kind = entry[0]
    kind_of = type(value)
    if kind == LEAF:
        return NO_FIT if kind_of is dict or (kind_of is list and _holds_object(value)) else value
    if kind == OBJECT:
        if kind_of is not dict:
            return NO_FIT
        fit_object(value, entry[1], key, extra)
        return value
    if kind == INSIDE:
        return capped(value, entry[2])
    if kind_of is not dict:  # FLAT, OPEN
        return NO_FIT
    return capped(value, entry[2]) if kind == FLAT else value


def fit_object(node: dict[str, Any], below: dict[str, Entry], prefix: str, extra: dict[str, Any]) -> None:
    """Move the keys of ``node`` (at mapped path ``prefix``) that do not fit to ``extra``."""
    bad = None
    get = below.get
    for key, value in node.items():
        entry = get(key)
        # (ordered by frequency: this runs for every key of every ECS object)
        if entry is LEAF_ENTRY:
            kind_of = type(value)
            if (kind_of is not dict and kind_of is not list) or (kind_of is list and not _holds_object(value)):
                continue
        elif entry is None:
            if "." not in key and key and not key.isspace():
                continue  # not mapped: anything goes
            entry = resolve(key.split("."), below)
            if entry is None:
                continue
            new = fit(value, entry, prefix + "." + key, extra)
            if new is not NO_FIT:
                if new is not value:
                    node[key] = new  # (an existing key: the dict's size does not change)
                continue
        elif entry[0] == OBJECT and type(value) is dict:
            fit_object(value, entry[1], prefix + "." + key, extra)
            continue
        else:
            new = fit(value, entry, prefix + "." + key, extra)
            if new is not NO_FIT:
                if new is not value:
                    node[key] = new
                continue
        bad = [key] if bad is None else bad + [key]
    if bad is not None:
        for key in bad:
            keep(extra, prefix + "." + key, node.pop(key))


def _holds_object(items: list[Any]) -> bool:
    for item in items:
        kind = type(item)
        if kind is dict or (kind is list and _holds_object(item)):
            return True
    return False


def capped(value: Any, room: int) -> Any:
    """``value`` with every object that would be nested more than ``room``
    objects deep (``value`` itself counted) replaced by its JSON text. Changes
    ``value`` in place; returns it, or the text when ``value`` itself is too deep."""
    kind = type(value)
    if kind is dict:
        if room <= 0:
            return text_of(value)
        if _CONTAINERS.isdisjoint(map(type, value.values())):
            return value  # (the usual object: no loop in Python)
        for key, child in value.items():
            if type(child) is dict or type(child) is list:
                new = capped(child, room - 1)
                if new is not child:
                    value[key] = new
    elif kind is list and not _CONTAINERS.isdisjoint(map(type, value)):
        for index, child in enumerate(value):
            if type(child) is dict or type(child) is list:
                new = capped(child, room)
                if new is not child:
                    value[index] = new
    return value


def cap_extra(extra: dict[str, Any]) -> None:
    """Cap the values of the flattened ``extra`` object in place (see ``capped``)."""
    for key, value in extra.items():
        if type(value) is dict or type(value) is list:
            new = capped(value, FLATTENED_DEPTH_LIMIT - 1)
            if new is not value:
                extra[key] = new


def text_of(value: Any) -> str:
    """The JSON text of ``value``; never raises."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # deeper than orjson writes (255), a lone surrogate, an integer over 64 bits
        return _deep_text(value)


def _deep_text(value: Any) -> str:
    """JSON text without recursion: any depth the decoder can produce (1024)."""
    out: list[str] = []
    stack: list[Any] = [value]
    literal = _Literal
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is literal:
            out.append(item)
        elif kind is dict:
            todo: list[Any] = [literal("}")]
            for number, (key, child) in reversed(list(enumerate(item.items()))):
                todo += [child, literal(("," if number else "") + json.dumps(str(key), ensure_ascii=False) + ":")]
            todo.append(literal("{"))
            stack += todo
        elif kind is list:
            todo = [literal("]")]
            for number, child in reversed(list(enumerate(item))):
                todo += [child] if not number else [child, literal(",")]
            todo.append(literal("["))
            stack += todo
        else:
            try:
                out.append(json.dumps(item, ensure_ascii=False, default=str))
            except (TypeError, ValueError):  # (a float that is not finite never comes from the decoder)
                out.append(json.dumps(str(item), ensure_ascii=False))
    return "".join(out)


class _Literal(str):
    """A piece of JSON text already written (as opposed to a string value)."""

    __slots__ = ()
