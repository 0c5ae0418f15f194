"""JSON lines: one object per line, mapped onto ECS-shaped fields.

Guarantees:

- Never raises. A line that is not a JSON object (invalid JSON, an array, a
  number, a string) is not a structured event: ``JsonFormat.structured``
  returns None and ``head`` explains why, so the line becomes a text record
  with message = the raw text, tag ``parse_failure``, ``error`` = a short
  reason, no timestamp. (A blank line is not a failure, just an empty record.
  A lone surrogate escape, ``"caf\\udce9"``, is not one either: the line is
  read with U+FFFD in its place, see ``json_decode``.)
- Lossless: every key of the object is either mapped or kept under
  ``fields["extra"]``; nothing is dropped.
- Indexable: no value is placed where the index mapping would reject the
  document (``json_fit``; tests/schema/test_json_fit_es.py indexes such
  lines into a real node).

Mapping (the first present key of each list wins; the others go to extra):

    message    message, msg, event (structlog; only when a string); "" if none
    timestamp  @timestamp, timestamp, time, ts, created, asctime
               (the first that parses; ``created`` before ``asctime`` because
               it is zone-independent epoch seconds)
    log.level  log.level (dotted or nested), level, levelname, severity; lower-cased
    log.logger log.logger (dotted or nested), logger, logger_name, name
    error.stack_trace
               error.stack_trace (dotted or nested), exc_info, exception,
               stack_trace (strings only); error.type / error.message are
               read from it when it is a Python traceback and not given.

Keys whose first dotted part is an ECS field set (``log.level``,
``service.name``, ``trace.id``, ``ecs.version``, ``gen_ai.prompt``) and ECS
objects as written by ecs-logging-python (``"log": {...}``, ``"process":
{...}``) pass through into nested fields, as far as the index mapping takes
them (``json_fit``, derived from the schema): a value whose shape the mapping
refuses (a string where it has an object, ``{"http": {"request": {"body":
"x"}}}``; an object in a keyword or text field; a key below a leaf,
``"log.level.x"``; an empty or blank key) goes to extra under its dotted key
(``extra["http.request.body"]``), as an undotted ECS name whose value is not
an object does (``"user": "alice"``); so does a key that collides with one
already placed. Two values for one key of extra are both kept, as a list
(``{"log.offset": 1, "log": {"offset": 2}}``: the line's log.offset and
log.file are set aside for enrichment's, see below, and meet the other
spelling there). Objects nested deeper than a flattened field accepts (extra,
labels, model.prediction, ...: 50 levels) are kept as JSON text from the level
that would exceed it. A payload kept in extra this way is still stripped
(agent/transforms/payloads.py).

Keys that model services commonly log (``model_name``, ``request_id``,
``status_code``, ``latency_ms``, ``prediction``, ...) and the user's
``--map-field`` rules become typed fields (``model.name``,
``http.response.status_code``, ``event.duration`` in ns, ...): the
catalogue and the mapping rules are in ``json_keys``, the units and the
coercers in ``json_coerce``. They are
placed after the loop over the keys, so an ECS key anywhere in the object
wins; a value that does not fit its field stays in extra.

Speed matters here (≥ 200k lines/s of ~300 bytes): one ``orjson.loads``, one
pass over the keys, no copies of nested objects. What each key means is
decided once per key (``_plan``), and what depends on the other keys of the
object (a better key of the same role, a rival of a rule) once per set of
keys in order (``KeyMap.shape``): the lines of one logger share their keys,
so the per-line loop only looks at values, and a rule that nothing can beat
to a two-part field is placed inline. A key set seen often enough gets this
whole function written out for it (``json_shapes``), which the interpreted
path here must equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from agent.events import TAG_PARSE_FAILURE, Line, Record, new
from agent.parsing import json_keys, timestamps, tracebacks
from agent.parsing.json_decode import loads
from agent.parsing.base import LineFormat, TextInfo
from agent.parsing.json_coerce import NO
from agent.parsing.json_apply import _apply, _nested_values
from agent.parsing.json_fit import LEAF_ENTRY, NO_FIT, OBJECT, ROOTS, cap_extra, fit, fit_object, keep
from agent.parsing.json_keys import Rule
from agent.parsing.json_keys import STATUS as STATUS_PLACE
from agent.parsing.json_plans import (_DOTTED, _DOTTED2, _ECS_OBJECT, _EXTRA, _LATE, _MAPPED, _PUT, _PUT2, _ROLE,
                                      _SHAPE_ENV, _TIMESTAMP_KEYS, DEFAULT_KEYS, KeyMap, key_map)

if TYPE_CHECKING:
    from agent.parsing.settings import ParseSettings

_MESSAGE, _TIMESTAMP, _LEVEL, _LOGGER, _STACK = range(5)
_MISSING = object()
_MAX_REASON = 160
_EVENT = ROOTS["event"][1]


def _put(node: dict[str, Any], parts: list[str], value: Any, extra: dict[str, Any], key: str) -> None:
    """Place ``value`` at the nested path ``parts``; on a clash keep it in extra.

    Two objects at the same path are merged key by key (ecs-logging writes
    ``"log.level"`` next to a ``"log": {...}`` object). ``value`` already fits
    the mapping at ``parts`` (``json_fit``).
    """
    for part in parts[:-1]:
        child = node.get(part, _MISSING)  # (a null there is a value: not replaced)
        if child is _MISSING:
            child = node[part] = {}
        elif type(child) is not dict:
            keep(extra, key, value)
            return
        node = child
    last = parts[-1]
    existing = node.get(last, _MISSING)
    if existing is _MISSING:
        node[last] = value
    elif type(existing) is dict and type(value) is dict:
        for sub_key, sub_value in value.items():
            if sub_key in existing:
                _put(existing, [sub_key], sub_value, extra, key + "." + sub_key)
            else:
                existing[sub_key] = sub_value
    else:
        keep(extra, key, value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return str(value)


def _set_leaf(fields: dict[str, Any], root: str, leaf: str, value: Any) -> bool:
    """Set ``root.leaf`` unless an ECS key already did; False if it cannot be placed."""
    node = fields.get(root)
    if node is None:
        fields[root] = {leaf: value}
        return True
    if type(node) is dict and leaf not in node:
        node[leaf] = value
        return True
    return False




def map_object(obj: dict[str, Any], keys: KeyMap = DEFAULT_KEYS) -> tuple[str, float | None, dict[str, Any]]:
    """``(message, timestamp, fields)`` of a parsed JSON object (see module doc).

    Takes ownership of ``obj``: nested objects are moved into ``fields``.
    ``keys``: which keys have a meaning (default: the built-in catalogue).
    A common set of keys is mapped by this function written out for it
    (``json_shapes``); what follows is the reference it must equal.
    """
    names = tuple(obj)
    shaped = keys.compiled.get(names)
    if shaped is not None:
        return shaped(obj, _nested_values(obj, keys.nested) if keys.nested else None)
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    message = ""
    timestamp = None
    stamps: list[tuple[str, Any]] | None = None  # timestamps held back behind a better key
    # Level, logger and stack trace are placed after the loop: an ECS key
    # later in the object ("log": {"level": ...}) takes precedence over them.
    level = logger = stack = None
    ecs_log = False  # an ECS key wrote under "log": check its level and reserved leaves
    # (rank, key, value, object holding it or None for obj, rule): placed after
    # the loop, so that an ECS key anywhere in the object wins over a rule.
    mapped: list[tuple[int, str, Any, dict[str, Any] | None, Rule]] | None = None
    status = None  # an HTTP status placed by a rule: event.outcome at the end
    late_rule = late_key = late_value = None  # a _LATE plan's rule, key and value
    if keys.nested:
        mapped = _nested_values(obj, keys.nested)
    plans = keys.shapes.get(names)
    if plans is None:
        plans = keys.shape(names)
    else:
        keys.seen(names, plans)
    for plan, key, value in zip(plans, names, obj.values()):
        kind = plan[0]
        if kind == _PUT2:  # (first: the most frequent kind on model services' lines)
            # Rule.put of a two-part field (model.name), inlined: no call per key.
            coerced = value if plan[4] and type(value) is str and value else plan[3](value)
            if coerced is NO:
                extra[key] = value
                continue
            node = fields.get(plan[1], _MISSING)
            if node is _MISSING:
                fields[plan[1]] = {plan[2]: coerced}
            elif type(node) is dict and plan[2] not in node:
                node[plan[2]] = coerced
            else:
                extra[key] = value
        elif kind == _PUT:
            result = plan[1](fields, value)
            if result is NO:
                extra[key] = value
            elif plan[2]:
                status = result
        elif kind == _EXTRA:
            extra[key] = value
        elif kind == _ROLE:
            role = plan[1]
            if key == "event" and type(value) is dict:
                fit_object(value, _EVENT, key, extra)  # ECS's event object, not structlog's
                _put(fields, ["event"], value, extra, key)
            elif plan[2] and _better_present(obj, plan[2]):  # rare: two keys of one role
                if role == _TIMESTAMP:  # the better one may not parse: keep as a fallback
                    stamps = [(key, value)] if stamps is None else stamps + [(key, value)]
                else:
                    extra[key] = value
            elif role == _MESSAGE:
                if isinstance(value, str):
                    message = value
                elif value is None:
                    extra[key] = value
                else:
                    message = _text(value)
            elif role == _TIMESTAMP:
                timestamp = timestamps.parse_value(value)
                if timestamp is None:
                    extra[key] = value
            elif role == _LEVEL:
                level = (key, value)
            elif role == _LOGGER:
                logger = (key, value)
            else:
                stack = (key, value)
        elif kind == _DOTTED2:  # the common two-part key: no list, no call
            check = plan[3]  # what the mapping takes there (json_fit); a string fits every leaf
            if check is not None and (check is not LEAF_ENTRY or type(value) is dict or type(value) is list):
                fitted = fit(value, check, key, extra)
                if fitted is NO_FIT:
                    keep(extra, key, value)
                    continue
                value = fitted
            root = plan[1]
            node = fields.get(root)
            if node is None:
                fields[root] = {plan[2]: value}
            elif type(node) is dict and plan[2] not in node:
                node[plan[2]] = value
            else:
                _put(fields, [root, plan[2]], value, extra, key)
            if root == "log":
                ecs_log = True
        elif kind == _DOTTED:
            if plan[2] is not None:
                fitted = fit(value, plan[2], key, extra)
                if fitted is NO_FIT:
                    keep(extra, key, value)
                    continue
                value = fitted
            _put(fields, plan[1], value, extra, key)
            if plan[1][0] == "log":
                ecs_log = True
        elif kind == _MAPPED and not (plan[2] and type(value) is dict):
            fast = plan[4]
            if fast is not None and (fast[0] is None or fast[0].isdisjoint(obj)):
                for name in fast[1]:
                    if type(obj.get(name)) is dict:
                        break  # an ECS object may claim the field: the general path
                else:
                    result = plan[1].put(fields, value)
                    if result is NO:
                        extra[key] = value
                    elif plan[1].place == STATUS_PLACE:
                        status = result
                    continue
            if mapped is None:
                mapped = [(plan[3], key, value, None, plan[1])]
            else:
                mapped.append((plan[3], key, value, None, plan[1]))
        elif kind == _LATE and not (plan[2] and type(value) is dict):
            late_rule, late_key, late_value = plan[1], key, value
        elif type(value) is not dict:  # _ECS_OBJECT: "user": "alice" would clash with the mapping
            extra[key] = value
        else:
            entry = ROOTS.get(key)
            if entry is not None:  # (an object fits every root: only what is inside may move to extra)
                if entry[0] == OBJECT:
                    fit_object(value, entry[1], key, extra)
                else:
                    value = fit(value, entry, key, extra)
            if key in fields:
                _put(fields, [key], value, extra, key)
            else:
                fields[key] = value
            if key == "log":
                ecs_log = True

    if stamps is not None:
        stamps.sort(key=_stamp_rank)
        for key, value in stamps:
            if timestamp is None:
                timestamp = timestamps.parse_value(value)
                if timestamp is not None:
                    continue
            extra[key] = value
    if level is not None or logger is not None:
        # _place_log, inlined for the common case (string values, no ECS
        # "log" object in the way): two calls fewer on nearly every line.
        log = fields.get("log", _MISSING)
        created = log is _MISSING
        if created:
            log = fields["log"] = {}
        if type(log) is dict:
            if level is not None:
                if type(level[1]) is str and "level" not in log:
                    log["level"] = level[1].lower()
                else:
                    _place_log(fields, extra, "level", level)
            if logger is not None:
                if type(logger[1]) is str and "logger" not in log:
                    log["logger"] = logger[1]
                else:
                    _place_log(fields, extra, "logger", logger)
            if created and not log:
                del fields["log"]  # (both went to extra)
        else:
            if level is not None:
                _place_log(fields, extra, "level", level)
            if logger is not None:
                _place_log(fields, extra, "logger", logger)
    if stack is not None and not (isinstance(stack[1], str) and _set_leaf(fields, "error", "stack_trace", stack[1])):
        extra[stack[0]] = stack[1]
    if late_rule is not None:  # what _apply does with one rule and a top-level key
        result = late_rule.put(fields, late_value)
        if result is NO:
            extra[late_key] = late_value
        elif late_rule.place == STATUS_PLACE:
            status = result
    if mapped is not None:
        message, timestamp, deferred_status = _apply(mapped, fields, extra, message, timestamp)
        if deferred_status is not None:
            status = deferred_status
    if status is not None and 100 <= status <= 599:
        # Set only if the line has none (inline: most lines with a mapped key have a status).
        event = fields.get("event", _MISSING)
        if event is _MISSING:
            fields["event"] = {"outcome": json_keys.OUTCOMES[status]}
        elif type(event) is dict and "outcome" not in event:
            event["outcome"] = json_keys.OUTCOMES[status]

    if ecs_log:
        log = fields["log"]
        value = log.get("level")
        if value is not None and not isinstance(value, (dict, list)):
            log["level"] = (value if isinstance(value, str) else _text(value)).lower()
        # Enrichment writes log.file.path and log.offset (where the line was
        # read); a line's own values would be overwritten, so keep them aside.
        # (keep: "log.offset" and "log": {"offset": ...} may both be there)
        if "file" in log:
            keep(extra, "log.file", log.pop("file"))
        if "offset" in log:
            keep(extra, "log.offset", log.pop("offset"))
    if "error" in fields:
        error = fields["error"]
        if type(error) is dict:
            _describe_error(error)
    if extra:
        for value in extra.values():
            if type(value) is dict or type(value) is list:
                cap_extra(extra)  # (flattened: at most 50 objects deep)
                break
        fields["extra"] = extra
    return message, timestamp, fields


def _better_present(obj: dict[str, Any], better: tuple[str, ...]) -> bool:
    for key in better:
        # structlog's "event" is only a message when it is a string.
        if key in obj and (key != "event" or isinstance(obj[key], str)):
            return True
    return False


def _place_log(fields: dict[str, Any], extra: dict[str, Any], leaf: str, item: tuple[str, Any]) -> None:
    """An alias's level or logger, unless an ECS key set it (then: extra)."""
    key, value = item
    if value is None or isinstance(value, (dict, list)):
        extra[key] = value
        return
    text = value if isinstance(value, str) else _text(value)
    if not _set_leaf(fields, "log", leaf, text.lower() if leaf == "level" else text):
        extra[key] = value


def _stamp_rank(stamp: tuple[str, Any]) -> int:
    return _TIMESTAMP_KEYS.index(stamp[0])


def _describe_error(error: dict[str, Any]) -> None:
    """Fill error.type / error.message from a Python traceback in stack_trace."""
    stack = error.get("stack_trace")
    if not isinstance(stack, str) or "type" in error:
        return
    described = tracebacks.describe(stack.rstrip("\n").splitlines(), require_header=False)
    if described is None or described[0] is None:
        return
    error["type"] = described[0]
    if described[1] is not None and "message" not in error:
        error["message"] = described[1]


def failure_reason(text: str) -> str:
    """Why ``text`` is not a JSON object, in a short sentence."""
    try:
        value = loads(text)
    except orjson.JSONDecodeError as error:
        reason = f"invalid JSON at column {error.colno}: {error.msg}"
        return reason if len(reason) <= _MAX_REASON else reason[:_MAX_REASON - 3] + "..."
    except Exception as error:  # noqa: BLE001 - any failure is a reason, never a crash
        return f"invalid JSON: {type(error).__name__}"
    kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
    return f"JSON value is {kind}, not an object"


_SHAPE_ENV.update(
    NO=NO, _MISSING=_MISSING, STATUS_PLACE=STATUS_PLACE, _put=_put, _text=_text,
    _better_present=_better_present, parse_value=timestamps.parse_value, _stamp_rank=_stamp_rank,
    _place_log=_place_log, _set_leaf=_set_leaf, _apply=_apply, _describe_error=_describe_error,
    OUTCOMES=json_keys.OUTCOMES, keep=keep, fit=fit, fit_object=fit_object, NO_FIT=NO_FIT,
    LEAF_ENTRY=LEAF_ENTRY, ROOTS=ROOTS, cap_extra=cap_extra, _EVENT=_EVENT, OBJECT=OBJECT,
    _EXTRA=_EXTRA, _ROLE=_ROLE, _DOTTED2=_DOTTED2, _DOTTED=_DOTTED, _ECS_OBJECT=_ECS_OBJECT,
    _MAPPED=_MAPPED, _PUT=_PUT, _PUT2=_PUT2, _LATE=_LATE,
    _MESSAGE=_MESSAGE, _TIMESTAMP=_TIMESTAMP, _LEVEL=_LEVEL, _LOGGER=_LOGGER, _STACK=_STACK)


class JsonFormat(LineFormat):
    """``--format json``: every line should be one JSON object.

    A line that is not one is still grouped like text (so a crash traceback
    written into a JSON log becomes one record with ``error.*``), but nothing
    is read from it: it is tagged ``parse_failure`` with the reason.
    """

    name = "json"

    def __init__(self, settings: ParseSettings) -> None:
        super().__init__(settings)
        self._keys = key_map(settings.map_fields)

    def structured(self, line: Line) -> Record | None:
        try:
            obj = loads(line.text)  # (a lone surrogate escape too: json_decode)
        except Exception:  # noqa: BLE001 - orjson raises JSONDecodeError; anything else is a failure too
            return None
        if type(obj) is not dict:
            return None
        message, timestamp, fields = map_object(obj, self._keys)
        tags = line.tags
        if len(tags) > 1:
            tags = tuple(dict.fromkeys(tags))  # the union promise holds for one line too
        return new(Record, (line.source, line.offset, line.end, message, line.read_time, timestamp, fields,
                            tags, line.text if self.keep_original else None, None, 1))

    def head(self, text: str) -> TextInfo:
        if not text or text.isspace():
            return TextInfo(None, {})
        return TextInfo(None, {}, (TAG_PARSE_FAILURE,), failure_reason(text))
