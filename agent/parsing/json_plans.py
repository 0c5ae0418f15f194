"""What each key of a JSON object means to ``parse_json.map_object``: its plan.

A key's plan (what to do with its value: a role such as the message or the
level, a dotted ECS key, a rule of the ``json_keys`` catalogue or of the
user's ``--map-field``, or extra) is decided once per distinct key and cached;
what depends on the other keys of the object (a better key of the same role,
a rival rule, an ECS object that may claim a field) is decided once per set
of keys in order (``KeyMap.shape``), and a set seen often enough gets
``map_object`` compiled for it (``json_shapes``). The lines of one logger
share their keys, so the per-line work is reduced to the values.

Guarantee: a plan depends only on the key (and, for a shape, on the set of
keys present), never on values; ``map_object`` gives the same result whether
plans are cached, decided per line or compiled (tested).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from agent.parsing import json_coerce, json_fit, json_keys, json_shapes
from agent.parsing.json_keys import Rule
from agent.parsing.json_keys import STATUS as STATUS_PLACE


# ECS field sets a log line may legitimately carry (gen_ai: the schema's
# prompts and completions, which payload stripping must find). Left out on purpose:
# "agent" (describes the shipper, set by enrichment), "data_stream" (routing;
# a mismatching value makes Elasticsearch reject the document), "tags" (the
# agent's own tags), "message" and "@timestamp" (mapped by role, below). For the same
# reason log.file and log.offset (set by enrichment) are moved to extra.
ECS_ROOTS = frozenset({
    "as", "client", "cloud", "code_signature", "container", "destination", "device",
    "dll", "dns", "ecs", "elf", "email", "error", "event", "faas", "file", "gen_ai", "geo",
    "group", "hash", "host", "http", "interface", "labels", "log", "macho", "network",
    "observer", "orchestrator", "organization", "os", "package", "pe", "process",
    "registry", "related", "risk", "rule", "server", "service", "source", "span",
    "threat", "tls", "trace", "transaction", "url", "user", "user_agent", "vlan",
    "vulnerability", "x509",
})

# Keys with a meaning, by role, best first: within a role the first present
# key wins and the others are kept in extra (for timestamps: the first that
# parses).
_MESSAGE_KEYS = ("message", "msg", "event")
TIMESTAMP_KEYS = _TIMESTAMP_KEYS = ("@timestamp", "timestamp", "time", "ts", "created", "asctime")
_LEVEL_KEYS = ("level", "levelname", "severity")
_LOGGER_KEYS = ("logger", "logger_name", "name")
_STACK_KEYS = ("exc_info", "exception", "stack_trace")


# What to do with a key, decided once per distinct key and cached: the same
# dozen keys repeat on every line, and one dict lookup is cheaper than
# re-deriving the decision (this loop is most of the per-line budget). The
# plans of a whole key set are cached too (KeyMap.shapes), with the checks
# against the other keys already made.
# Decided for an object's set of keys (KeyMap.shape): _PUT, a rule placed at
# once (_PUT2: one of a two-part field, placed inline); _LATE, the only rule
# of the set that waits for the end of the object.
_EXTRA, _ROLE, _DOTTED2, _DOTTED, _ECS_OBJECT, _MAPPED, _PUT, _PUT2, _LATE = range(9)
_PLANS: dict[str, tuple[Any, ...]] = {}
_MAX_PLANS = 4096  # user keys are unbounded; past this, decide without caching
_EXTRA_PLAN = (_EXTRA, None, None)
# Key sets cached per KeyMap (see KeyMap.shape), and the most keys of a cached
# one (bounds the memory when objects have many or ever-changing keys); past
# these, what depends on the other keys is decided per line.
_MAX_SHAPES = 1024
_MAX_SHAPE_KEYS = 64
# Objects of one shape seen before its loop is compiled: a shape seen once or
# twice (ever-changing keys) is not worth a compile (~0.3 ms).
COMPILE_AFTER = 16


def _plan(key: str, plans: dict[str, tuple[Any, ...]] = _PLANS, keymap: KeyMap | None = None) -> tuple[Any, ...]:
    plan: tuple[Any, ...] = _EXTRA_PLAN
    for role, keys in enumerate((_MESSAGE_KEYS, _TIMESTAMP_KEYS, _LEVEL_KEYS, _LOGGER_KEYS, _STACK_KEYS)):
        if key in keys:
            # (role, the better keys of the same role): a present better key wins.
            plan = (_ROLE, role, keys[:keys.index(key)])
            break
    else:
        rule = json_keys.BUILT_IN.get(key)
        if rule is not None:
            plan = _mapped_plan(key, rule, keymap)
        elif "." in key:
            parts = key.split(".")
            if parts[0] in ECS_ROOTS:
                # (.., what its value must be: json_fit; None: not mapped, anything goes)
                entry = json_fit.resolve(parts)
                if len(parts) == 2 and entry is not json_fit.MISFIT:
                    plan = (_DOTTED2, parts[0], parts[1], entry)
                else:
                    plan = (_DOTTED, parts, entry)
        elif key in ECS_ROOTS:
            plan = (_ECS_OBJECT, None, None)
    if len(plans) < _MAX_PLANS:
        plans[key] = plan
    return plan


class KeyMap:
    """The keys with a meaning for one parser: the built-in catalogue of
    ``json_keys`` and the user's ``--map-field`` rules (which take precedence
    for their keys), with the decision per key cached as for every key."""

    __slots__ = ("plans", "shapes", "nested", "compiled", "compile_after", "_user", "_hits")

    def __init__(self, map_fields: tuple[tuple[str, str], ...] = ()) -> None:
        compiled = json_keys.compile_map_fields(map_fields)  # ValueError if unusable
        self._user: dict[str, Rule] = dict(compiled)
        # Dotted sources may also name a value inside nested objects.
        self.nested = tuple((tuple(source.split(".")), rule) for source, rule in compiled if "." in source)
        self.plans: dict[str, tuple[Any, ...]] = {} if compiled else _PLANS
        self.shapes: dict[tuple[str, ...], tuple[tuple[Any, ...], ...]] = {}
        # Shapes seen COMPILE_AFTER times get their loop compiled (json_shapes);
        # None: never (tests compare both ways).
        self.compiled: dict[tuple[str, ...], Callable[..., tuple[Any, ...]]] = {}
        self.compile_after: int | None = COMPILE_AFTER
        self._hits: dict[tuple[str, ...], int] = {}

    def seen(self, names: tuple[str, ...], plans: tuple[tuple[Any, ...], ...]) -> None:
        """One more object of a cached shape; compiles its loop once it is common."""
        if self.compile_after is None:
            return
        hits = self._hits.get(names, 0) + 1
        if hits < self.compile_after:
            self._hits[names] = hits
            return
        self._hits.pop(names, None)
        self.compiled[names] = json_shapes.compile_shape(names, plans, _SHAPE_ENV)

    def shape(self, names: tuple[str, ...]) -> tuple[tuple[Any, ...], ...]:
        """The plans of an object's keys, in order, with what depends only on
        which keys are present decided once: the better keys of a role that
        are present, and whether a rule can be placed at once (its rivals and
        ECS objects absent). The lines of one logger share their keys and
        their order, so the per-line loop then checks values only."""
        plans = self.plans
        per_key = tuple(plans.get(key) or self.plan(key) for key in names)
        if len(self.shapes) >= _MAX_SHAPES or len(names) > _MAX_SHAPE_KEYS:
            return per_key  # (undecided plans: the loop decides per line, as it can)
        present = frozenset(names)
        decided = [_in_shape(plan, present) for plan in per_key]
        waiting = [index for index, plan in enumerate(decided) if plan[0] == _MAPPED]
        if len(waiting) == 1 and not self.nested:
            plan = decided[waiting[0]]
            if plan[4] is None and plan[1].put is not None:
                # The one rule that waits (url.path from "path": it requires
                # another field) cannot meet another in _apply: placed after
                # the loop without the list, the sort and the call.
                decided[waiting[0]] = (_LATE,) + plan[1:]
        self.shapes[names] = shape = tuple(decided)
        return shape

    def plan(self, key: str) -> tuple[Any, ...]:
        rule = self._user.get(key)
        if rule is None:
            return _plan(key, self.plans, self)
        plan = _mapped_plan(key, rule, self)
        if len(self.plans) < _MAX_PLANS:
            self.plans[key] = plan
        return plan

    def rivals(self, rule: Rule) -> tuple[set[str], set[str]]:
        """Keys of the rules that beat ``rule`` to its field: top-level keys, and
        roots of nested sources (present: the line takes the general path)."""
        target, rank = rule.target, rule.rank
        keys = {key for key, other in json_keys.BUILT_IN.items() if other.target == target and other.rank < rank}
        keys.update(key for key, other in self._user.items() if other.target == target and other.rank < rank)
        roots = {parts[0] for parts, other in self.nested if other.target == target and other.rank <= rank}
        return keys, roots


# What json_shapes needs of this module to write the loop out.
_SHAPE_ENV: dict[str, Any] = {}


def _in_shape(plan: tuple[Any, ...], present: frozenset[str]) -> tuple[Any, ...]:
    """``plan`` for an object whose keys are ``present`` (see ``KeyMap.shape``)."""
    kind = plan[0]
    if kind == _ROLE and plan[2]:
        # Only the better keys that are present can win ("event" also needs a string value).
        return (_ROLE, plan[1], tuple(key for key in plan[2] if key in present))
    if kind == _MAPPED and plan[4] is not None:
        rivals, objects = plan[4]
        if rivals is not None and not rivals.isdisjoint(present):
            return plan[:4] + (None,)  # a rival key is there: wait for the end of the object
        # No rival: only an ECS object under a present key may still claim the field.
        objects = tuple(name for name in objects if name in present)
        if not objects and not plan[2]:
            # Nothing can claim the field, whatever the values: place it now.
            rule = plan[1]
            if len(rule.path) == 2 and not rule.requires and rule.place == json_keys.FIELD:
                return (_PUT2, rule.path[0], rule.path[1], rule.coerce, rule.coerce is json_coerce.keyword)
            return (_PUT, rule.put, rule.place == STATUS_PLACE)
        return plan[:4] + ((None, objects),)
    return plan


def _mapped_plan(key: str, rule: Rule, keymap: KeyMap | None) -> tuple[Any, ...]:
    """``(_MAPPED, rule, an object under this key is ECS's ("process": {...}),
    rank, fast)``. ``fast``: (names or None, objects), or None when the rule always
    waits for the end of the object (it requires another field, or fills the
    timestamp or message). A rule is placed at once, in the loop, when no
    name of ``names`` is a key of the object and no name of ``objects`` holds
    an object there: then no better rule and no ECS key can claim its field
    (ECS keys are only ever written below ECS field sets), and the general
    path, which defers and sorts, is not needed. A test compares both paths
    on random objects."""
    fast = None
    if rule.put is not None and not rule.requires:
        rivals, roots = (keymap or DEFAULT_KEYS).rivals(rule)
        objects: tuple[str, ...] = ()
        if rule.path[0] in ECS_ROOTS:
            # Dotted ECS keys on the way claim with any value ("event.duration": 5,
            # "log.origin": null); the field set's own key only with an object.
            rivals.update(".".join(rule.path[:end]) for end in range(2, len(rule.path) + 1))
            objects = (rule.path[0],)
        fast = (frozenset(rivals | roots) or None, objects)
    return (_MAPPED, rule, key in ECS_ROOTS, rule.rank, fast)


DEFAULT_KEYS = KeyMap()


@lru_cache(maxsize=64)
def key_map(map_fields: tuple[tuple[str, str], ...]) -> KeyMap:
    """The KeyMap of these settings, built once and shared by their parsers."""
    return DEFAULT_KEYS if not map_fields else KeyMap(map_fields)
