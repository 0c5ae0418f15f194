"""The field names the transforms may set or act on, with their index types,
derived from the schema (agent/schema/fields.yml). ``field_type`` is what start-up checks
use: a value given for a ``long`` field must be an integer, a hash cannot go
into an ``ip`` field, a path template may only fill string fields. Names
under an open object (``labels.*``, ``extra.*``, the flattened ``model.*``
objects) are accepted with that object's type.
"""

from __future__ import annotations

import re

from agent.parsing.json_plans import ECS_ROOTS
from agent.schema import FIELDS, payload_fields

KEYWORD, TEXT, LONG, DOUBLE, IP, DATE, FLATTENED, OBJECT = (
    "keyword", "text", "long", "double", "ip", "date", "flattened", "object")
STRING_TYPES = frozenset({KEYWORD, TEXT})

# The schema's types folded into what the transforms check values against.
_SIMPLE = {"match_only_text": TEXT, "wildcard": KEYWORD, "constant_keyword": KEYWORD, "boolean": KEYWORD}

# Every leaf field of agent/schema/fields.yml, the one source of truth.
FIELD_TYPES: dict[str, str] = {name: _SIMPLE.get(field.type, field.type) for name, field in FIELDS.items()
                               if field.type not in (FLATTENED, OBJECT)}

# Open objects: any name below them is accepted, with this type (labels take
# strings although they are stored flattened; model.stats children are doubles).
OPEN_OBJECTS: dict[str, str] = {name: (KEYWORD if name == "labels" else field.children or FLATTENED)
                                for name, field in FIELDS.items() if field.type in (FLATTENED, OBJECT)}

# The schema's payload fields: removed unless --keep-payloads.
PAYLOAD_FIELDS: tuple[str, ...] = tuple(sorted(payload_fields()))

# The dotted keys under which a parser keeps a payload that did not fit its
# field in ``extra`` (``{"http": {"request": {"body": "..."}}}`` gives
# ``extra["http.request.body"]``, see agent/parsing/json_fit): the payload
# fields and each parent all of whose fields are payloads (the body objects).
PAYLOAD_KEYS: frozenset[str] = frozenset(PAYLOAD_FIELDS) | frozenset(
    parent for name in PAYLOAD_FIELDS for parent in (name.rsplit(".", i)[0] for i in range(1, name.count(".")))
    if all(FIELDS[other].payload for other in FIELDS if other.startswith(parent + ".")))

# Set by the agent itself; configuration may neither overwrite nor redact them.
PROTECTED: frozenset[str] = frozenset({"@timestamp", "message", "tags", "log.file.path", "log.offset",
                                       "agent", "model.sample_rate"})

# Roots a configured name may start with: ECS field sets (which JSON logs pass
# through) and the project's own. Anything else is most likely a typo.
KNOWN_ROOTS: frozenset[str] = ECS_ROOTS | {"model", "gen_ai", "kubernetes", "extra", "labels", "message",
                                           "@timestamp", "tags", "agent"}

_NAME = re.compile(r"[A-Za-z0-9_@-]+(?:\.[A-Za-z0-9_@-]+)*\Z")
_PREFIXES = frozenset(name.rsplit(".", i)[0] for name in FIELD_TYPES
                      for i in range(1, name.count(".") + 1))


def valid_name(name: str) -> bool:
    """A dotted field name: no empty parts, no spaces."""
    return bool(_NAME.match(name))


def field_type(name: str) -> str | None:
    """The index type of ``name``; ``object`` for a known parent; None if unknown."""
    known = FIELD_TYPES.get(name)
    if known is not None:
        return known
    for prefix, kind in OPEN_OBJECTS.items():
        if name.startswith(prefix + "."):
            return kind
    if name in OPEN_OBJECTS or name in _PREFIXES:
        return OBJECT
    return None


# What --redact-field / --hash-field may not touch: the document's identity and order.
UNREDACTABLE: frozenset[str] = frozenset({"@timestamp", "tags", "log.offset", "agent", "model.sample_rate"})


def is_protected(name: str) -> bool:
    return name in PROTECTED or name.split(".", 1)[0] in ("agent", "tags")


def is_unredactable(name: str) -> bool:
    return name in UNREDACTABLE or name.split(".", 1)[0] in ("agent", "tags")


def clashes(name: str) -> str | None:
    """A known leaf that is a proper prefix of ``name`` (``message.x``), if any."""
    parts = name.split(".")
    for end in range(1, len(parts)):
        prefix = ".".join(parts[:end])
        if prefix in FIELD_TYPES:
            return prefix
    return None


def known_root(name: str) -> bool:
    return name.split(".", 1)[0] in KNOWN_ROOTS
