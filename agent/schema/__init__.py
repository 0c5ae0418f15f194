"""The document schema: every field the agent writes, loaded from fields.yml.

fields.yml (next to this module, shipped as package data) is the single
source of truth; the Elasticsearch mappings (agent/setup/templates.py), the
field reference (docs/fields.md, by scripts/gen_field_docs.py) and the tests
that check parsers all derive from it.

Guarantees:

- The file is read and validated once, at import: a misspelt type, a
  duplicate name, a field below a leaf, an unknown key or an example that
  does not fit its type raises SchemaError, so a broken schema fails every
  test at once instead of producing a half-right mapping.
- ``FIELDS`` maps each dotted name to a frozen ``Field``.
- ``mappings()`` is a pure function of the schema (and of the field types
  the target cluster lacks, see ``FALLBACK_TYPES``); the same schema always
  yields the same mapping.
- The root of the mapping is ``dynamic: false``: a key the schema does not
  define stays in ``_source`` but is never mapped, so no document can grow
  the mapping. (``strict`` would reject such documents, ``true`` or
  ``runtime`` would add one mapped field per unknown key.) Flattened fields
  and ``children`` objects are the only places that take arbitrary keys: a
  flattened field is one mapped field whatever its keys, and a
  ``children`` object maps every key below it with one type and is capped
  by the index setting ``ignore_dynamic_beyond_limit``.

The checks below (``undefined_fields``, ``value_problems``) are for tests and
diagnostics, not for the per-line hot path.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Iterator, Mapping

import yaml

from agent.errors import ModelscribeError

SCHEMA_FILE = "fields.yml"

TYPES = frozenset({"keyword", "text", "match_only_text", "long", "double", "date", "ip",
                   "boolean", "flattened", "object", "constant_keyword", "histogram"})

# Types that live in optional Elasticsearch modules (mapper-extras,
# constant-keyword); minimal distributions such as the integ-test zip lack
# them. Each falls back to a type of the same field_caps family, so
# queries and data views behave the same on either.
FALLBACK_TYPES: Mapping[str, str] = {"match_only_text": "text", "constant_keyword": "keyword",
                                     # x-pack analytics; OpenSearch has none: values/counts stay readable
                                     "histogram": "object"}

# Types whose Elasticsearch family (what _field_caps reports) differs from
# their name.
FAMILY: Mapping[str, str] = {"match_only_text": "text", "constant_keyword": "keyword"}

# ECS's choice for keywords: longer values are kept in _source but not indexed
# (a term over 32,766 bytes would make Elasticsearch reject the whole document).
IGNORE_ABOVE = 1024
# Flattened: objects nested deeper than this are rejected; the default (20)
# is low for predictions and free-form JSON, and the cost of a deeper limit
# is nil.
FLATTENED_DEPTH_LIMIT = 50

_KEYS = frozenset({"name", "type", "description", "example", "ecs", "payload", "allowed",
                   "index", "doc_values", "children"})
_NAME = re.compile(r"(?:@timestamp|[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)")
_CHILD_TYPES = frozenset({"long", "double", "keyword"})

# libyaml when PyYAML was built with it: the schema is read at every start,
# and the pure-Python loader takes about 60 ms for it.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SchemaError(ModelscribeError):
    """fields.yml is malformed; the message names the field and the problem."""


@dataclass(frozen=True)
class Field:
    """One field of the schema (``example`` is a plain JSON value: do not mutate)."""

    name: str
    type: str
    description: str
    example: Any
    ecs: bool = False
    payload: bool = False
    allowed: tuple[str, ...] = ()
    index: bool = True
    doc_values: bool = True
    children: str | None = None  # object fields: the type of every key below

    @property
    def namespace(self) -> str:
        """The first part of the name; "" for a top-level field."""
        return self.name.split(".", 1)[0] if "." in self.name else ""

    @property
    def free_inside(self) -> bool:
        """True when any key below the field is allowed (flattened, children objects)."""
        return self.type in ("flattened", "histogram") or self.children is not None


# ------------------------------------------------------------------ loading

def _read_schema_bytes() -> bytes:
    return resources.files(__name__).joinpath(SCHEMA_FILE).read_bytes()


def _check_example(field: Field) -> str | None:
    """Why ``field.example`` does not fit ``field.type``, or None."""
    if field.type == "object":
        if not isinstance(field.example, dict) or not field.example:
            return "an object field needs a non-empty object as example"
        return _check_children(field.example, field.children) if field.children else None
    if field.type == "flattened":
        ok = isinstance(field.example, dict) and field.example
        return None if ok else "a flattened field takes an object: the example must be a non-empty object"
    values = field.example if isinstance(field.example, list) else [field.example]
    if not values:
        return "the example is an empty list"
    for value in values:
        problem = _leaf_problem(field.type, value)
        if problem:
            return problem
        if field.allowed and value not in field.allowed:
            return f"example {value!r} is not one of the allowed values"
    return None


def _check_children(value: dict, child_type: str) -> str | None:
    for key, child in value.items():
        problem = _leaf_problem(child_type, child)
        if problem:
            return f"{key}: {problem}"
    return None


def _build_field(entry: Any, position: int) -> Field:
    if not isinstance(entry, dict):
        raise SchemaError(f"{SCHEMA_FILE}: entry {position} is not a mapping")
    name = entry.get("name")
    where = f"{SCHEMA_FILE}: field {name!r}" if name else f"{SCHEMA_FILE}: entry {position}"
    unknown = set(entry) - _KEYS
    if unknown:
        raise SchemaError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("name", "type", "description"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise SchemaError(f"{where}: '{key}' must be a non-empty string")
    if "example" not in entry:
        raise SchemaError(f"{where}: 'example' is missing")
    if not _NAME.fullmatch(name):
        raise SchemaError(f"{where}: not a valid dotted name (lower case, digits, _)")
    if entry["type"] not in TYPES:
        raise SchemaError(f"{where}: unknown type {entry['type']!r} (one of {', '.join(sorted(TYPES))})")
    for key in ("ecs", "payload", "index", "doc_values"):
        if key in entry and not isinstance(entry[key], bool):
            raise SchemaError(f"{where}: '{key}' must be true or false")
    allowed = entry.get("allowed", [])
    if not isinstance(allowed, list) or not all(isinstance(v, str) for v in allowed):
        raise SchemaError(f"{where}: 'allowed' must be a list of strings")
    children = entry.get("children")
    if (children is None) != (entry["type"] != "object"):
        raise SchemaError(f"{where}: 'children' is required for, and only for, type object")
    if children is not None and children not in _CHILD_TYPES:
        raise SchemaError(f"{where}: children must be one of {', '.join(sorted(_CHILD_TYPES))}")
    if (entry.get("index") is False or entry.get("doc_values") is False) and entry["type"] != "keyword":
        raise SchemaError(f"{where}: index/doc_values may only be turned off for keyword fields")
    field = Field(name=name, type=entry["type"], description=" ".join(entry["description"].split()),
                  example=entry["example"], ecs=entry.get("ecs", False),
                  payload=entry.get("payload", False), allowed=tuple(allowed),
                  index=entry.get("index", True), doc_values=entry.get("doc_values", True),
                  children=children)
    problem = _check_example(field)
    if problem:
        raise SchemaError(f"{where}: bad example: {problem}")
    return field


def parse_schema(raw: bytes) -> dict[str, Field]:
    """Parse and validate a schema file's bytes; raises SchemaError naming the problem."""
    try:
        # bandit B506 wants yaml.safe_load; this is the same loader, in C when available.
        data = yaml.load(raw, Loader=_SafeLoader)  # nosec B506
    except yaml.YAMLError as error:
        raise SchemaError(f"{SCHEMA_FILE} is not valid YAML: {error}") from error
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("fields"), list):
        raise SchemaError(f"{SCHEMA_FILE}: expected 'version: 1' and a 'fields' list")
    fields: dict[str, Field] = {}
    for position, entry in enumerate(data["fields"], 1):
        field = _build_field(entry, position)
        if field.name in fields:
            raise SchemaError(f"{SCHEMA_FILE}: field {field.name!r} is defined twice")
        fields[field.name] = field
    # A field below another field would need that one to be an object and a
    # leaf at once, which no mapping can express.
    for name in fields:
        parts = name.split(".")
        for end in range(1, len(parts)):
            parent = ".".join(parts[:end])
            if parent in fields:
                raise SchemaError(f"{SCHEMA_FILE}: field {name!r} is below field {parent!r}, "
                                  f"which is a {fields[parent].type}, not a parent object")
    return dict(sorted(fields.items()))


@cache
def load() -> dict[str, Field]:
    """The schema, parsed and validated once."""
    return parse_schema(_read_schema_bytes())


@cache
def schema_hash() -> str:
    """sha256 (hex) of fields.yml as shipped: changes whenever the schema does."""
    return hashlib.sha256(_read_schema_bytes()).hexdigest()


def payload_fields() -> tuple[str, ...]:
    """Names of the payload fields (request/response bodies, prompts, completions)."""
    return tuple(name for name, field in FIELDS.items() if field.payload)


def effective_type(field: Field, unsupported: frozenset[str] | set[str] = frozenset()) -> str:
    """The type the field gets on a cluster lacking the types in `unsupported`."""
    if field.type in unsupported and field.type in FALLBACK_TYPES:
        return FALLBACK_TYPES[field.type]
    return field.type


def family(type_name: str) -> str:
    """The type ``_field_caps`` reports for a field mapped as `type_name`."""
    return FAMILY.get(type_name, type_name)


# ------------------------------------------------------------------ mappings

def _leaf_mapping(field: Field, type_name: str) -> dict[str, Any]:
    if type_name == "keyword":
        if not field.index and not field.doc_values:
            return {"type": "keyword", "index": False, "doc_values": False}
        return {"type": "keyword", "ignore_above": IGNORE_ABOVE}
    if type_name == "flattened":
        return {"type": "flattened", "ignore_above": IGNORE_ABOVE, "depth_limit": FLATTENED_DEPTH_LIMIT}
    if type_name == "text" and field.type == "match_only_text":
        # The fallback keeps positions (phrase queries work as with
        # match_only_text) but drops norms, which only serve scoring.
        return {"type": "text", "norms": False}
    if type_name == "object":
        # subobjects: false makes {"a": {"b": 1}} below it the leaf "a.b",
        # so nested statistics never create objects that the type cannot map.
        return {"type": "object", "dynamic": True, "subobjects": False}
    return {"type": type_name}


def mappings(unsupported: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The ``mappings`` body of an index: dynamic false, dynamic templates, properties.

    `unsupported` names the types the target cluster lacks; they are mapped
    with their FALLBACK_TYPES instead.
    """
    properties: dict[str, Any] = {}
    dynamic_templates = []
    for field in FIELDS.values():
        node = properties
        parts = field.name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[parts[-1]] = _leaf_mapping(field, effective_type(field, unsupported))
        if field.children:
            child = Field(field.name + ".*", field.children, "", None)
            dynamic_templates.append({field.name.replace(".", "_") + "_children": {
                "path_match": field.name + ".*",
                # Only leaves: with subobjects false an object below is split
                # into dotted leaves, and must not itself match.
                "unmatch_mapping_type": "object",
                "mapping": _leaf_mapping(child, effective_type(child, unsupported)),
            }})
    return {
        "dynamic": False,
        # A date-looking string under a children object must get the
        # children's type, not a date.
        "date_detection": False,
        "dynamic_templates": dynamic_templates,
        "properties": properties,
    }


# ------------------------------------------------------------------ documents

def _walk(node: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every key of one object level."""
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        yield path, value


def undefined_fields(document: Mapping[str, Any]) -> list[str]:
    """Dotted paths in `document` that the schema does not define, sorted.

    Keys may be nested objects or dotted (``"log.level"``), as Elasticsearch
    accepts both. Anything below a flattened field or a children object is
    free. A path whose parent is undefined is reported once, at the highest
    undefined level.
    """
    found: set[str] = set()
    _collect_undefined(document, "", found)
    return sorted(found)


def _collect_undefined(node: Mapping[str, Any], prefix: str, found: set[str]) -> None:
    for path, value in _walk(node, prefix):
        field = FIELDS.get(path)
        if field is not None:
            if not field.free_inside and isinstance(value, dict):
                found.update(f"{path}.{key}" for key in value)
            continue
        if not _is_parent(path):
            found.add(path)
            continue
        for item in (value if isinstance(value, list) else [value]):
            if isinstance(item, dict):
                _collect_undefined(item, path, found)


@cache
def _parents() -> frozenset[str]:
    parents = set()
    for name in FIELDS:
        parts = name.split(".")
        parents.update(".".join(parts[:end]) for end in range(1, len(parts)))
    return frozenset(parents)


def _is_parent(path: str) -> bool:
    return path in _parents()


def value_problems(document: Mapping[str, Any]) -> list[str]:
    """``"path: reason"`` for each value Elasticsearch would reject or ignore.

    Checks defined fields only (see ``undefined_fields`` for the others):
    a flattened field that is not an object, a string where a number is
    declared, an invalid IP literal, a value outside ``allowed``, an object
    where a leaf is declared and a leaf where an object is.
    """
    problems: list[str] = []
    _collect_problems(document, "", problems)
    return problems


def _collect_problems(node: Mapping[str, Any], prefix: str, problems: list[str]) -> None:
    for path, value in _walk(node, prefix):
        field = FIELDS.get(path)
        if field is None:
            if _is_parent(path):
                items = value if isinstance(value, list) else [value]
                for item in items:
                    if isinstance(item, dict):
                        _collect_problems(item, path, problems)
                    elif item is not None:
                        problems.append(f"{path}: {item!r} where an object is declared")
            continue
        if value is None:
            continue
        if field.type == "flattened" or field.type == "object":
            if not isinstance(value, dict):
                problems.append(f"{path}: a {field.type} field takes an object, not {type(value).__name__} "
                                f"(put a bare value under a key, e.g. {{\"value\": ...}})")
            elif field.children:
                problem = _check_children(_flatten(value), field.children)
                if problem:
                    problems.append(f"{path}.{problem}")
            continue
        for item in (value if isinstance(value, list) else [value]):
            problem = _leaf_problem(field.type, item)
            if problem is None and field.allowed and item not in field.allowed:
                problem = f"{item!r} is not one of {', '.join(field.allowed)}"
            if problem:
                problems.append(f"{path}: {problem}")
                break


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, child in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(child, dict):
            out.update(_flatten(child, path))
        else:
            out[path] = child
    return out


def _leaf_problem(type_name: str, value: Any) -> str | None:
    """Why `value` cannot be a `type_name` leaf, or None. Lists are element-wise."""
    if isinstance(value, list):
        for item in value:
            problem = _leaf_problem(type_name, item)
            if problem:
                return problem
        return None
    if type_name == "histogram":
        return _histogram_problem(value)
    if isinstance(value, dict):
        return f"an object where a {type_name} is declared"
    if type_name in ("keyword", "constant_keyword", "text", "match_only_text"):
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if type_name == "long":
        return None if isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63 \
            else f"{value!r} is not an integer"
    if type_name == "double":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else f"{value!r} is not a finite number"
    if type_name == "boolean":
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    if type_name == "date":
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        return None if isinstance(value, str) and _ISO_DATE.fullmatch(value) else \
            f"{value!r} is not an ISO 8601 date"
    if type_name == "ip":
        try:
            ipaddress.ip_address(value if isinstance(value, str) else "")
        except ValueError:
            return f"{value!r} is not an IPv4 or IPv6 literal"
        return None
    return None


def _histogram_problem(value: Any) -> str | None:
    """Elasticsearch's histogram field: {"values": ascending numbers, "counts": non-negative integers}."""
    if not isinstance(value, dict) or set(value) != {"values", "counts"}:
        return f"{value!r} is not a histogram ({{\"values\": [...], \"counts\": [...]}})"
    values, counts = value["values"], value["counts"]
    if not isinstance(values, list) or not isinstance(counts, list) or len(values) != len(counts):
        return "a histogram needs lists of values and counts of the same length"
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values) \
            or any(b <= a for a, b in zip(values, values[1:])):
        return "a histogram's values must be finite numbers in ascending order"
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
        return "a histogram's counts must be non-negative integers"
    return None


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?"
                       r"(?:Z|[+-]\d{2}:?\d{2})?)?")


def example_document() -> dict[str, Any]:
    """A nested document holding every field of the schema with its example value."""
    document: dict[str, Any] = {}
    for field in FIELDS.values():
        node = document
        parts = field.name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = copy.deepcopy(field.example)
    return document


# Last, so that every validation helper above exists: a broken fields.yml
# raises SchemaError here, when the module is imported.
FIELDS: Mapping[str, Field] = load()
