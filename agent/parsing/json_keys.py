"""What the common keys of model services' JSON logs mean, and the user's own
mappings (``--map-field SOURCE=TARGET``): each as a ``Rule`` that turns a
key's value into a typed schema field.

Guarantees:

- Deterministic and total: a rule's ``coerce`` (``json_coerce``) never
  raises; when it returns ``NO`` (the value does not fit the target) the
  JSON mapping keeps the key in ``extra``, as it was, so a stray
  ``"latency_ms": "abc"`` can never cause a mapping conflict in Elasticsearch.
- A rule only fills a field the line did not set otherwise: ECS keys
  (``"event": {"duration": ...}``, ``"http.response.status_code"``) win over
  every rule, the user's rules over the built-in ones, and within one target
  the first key of the list below that holds a usable value wins. A key that
  loses stays in ``extra``.
- Every target is a field of agent/schema/fields.yml (checked at import: a
  renamed field fails every test instead of writing an undefined field).

The built-in catalogue (``CATALOGUE``), target: keys, best first::

    model.name             model_name, model, model_id (a string or number; an object stays in extra)
    model.version          model_version
    model.request_id       request_id, requestId, req_id
    trace.id / span.id     trace_id, traceId, otelTraceID / span_id, spanId, otelSpanID
                           (strings; an all-zero id means "no trace" and stays in extra)
    service.name           service_name, otelServiceName
    http.request.method    http_method, request_method, method (only an HTTP method:
                           GET, post, ...; "predict_proba" stays in extra)
    http.response.status_code
                           status_code, http_status, http_status_code, statusCode, status
                           (an integer or digit string from 100 to 599; "ok" or a gRPC
                           code stays in extra); also sets event.outcome when the line
                           has none: success below 400, failure from 500, else unknown
    url.original           url (a string; an object is ECS's url)
    url.path               url_path, request_path; and path, route, endpoint only when the
                           line also has an HTTP method or status code (otherwise "path" is
                           as likely a file path); the value must start with "/"
    user_agent.original    user_agent (a string; an object is ECS's user_agent)
    client.ip              client_ip, remote_addr (an IP literal only)
    event.duration         in nanoseconds, converted exactly (json_coerce), from
                           STEM_ns, STEM_us, STEM_ms, STEM_s, STEM_sec, STEM_seconds for the
                           stems duration, latency, elapsed, response_time, took (in that
                           order); the bare stems only with a unit in the value ("12.5ms")
    model.batch_size       batch_size (a non-negative integer)
    gen_ai.usage.input_tokens / output_tokens
                           prompt_tokens, input_tokens / completion_tokens, output_tokens
    model.prediction       prediction, predictions
    model.input.features   features, input_features
    model.target           ground_truth
                           (flattened: an object as it is, any other value under "value")
    log.origin.function    funcName          Python's LogRecord attributes, as
    log.origin.file.line   lineno            python-json-logger writes them
    log.origin.file.name   filename (only with lineno: alone it may name any file)
    process.pid            process (an integer; an object is ECS's process)
    process.name           processName
    process.thread.id      thread
    process.thread.name    threadName

Left in ``extra`` on purpose: a bare ``duration``/``latency`` number (seconds
or milliseconds? guessing wrong is a factor of 1000 in every average; map it
with ``--map-field latency=event.duration:ms``), ``inputs`` (in the KServe v2
protocol the raw tensors, a payload), ``user_id`` (personal data, and no
schema field), ``version`` (of what?), ``target`` and ``label`` (too
ambiguous), and every key not named here.

User mappings (``ParseSettings.map_fields``: ``(SOURCE, TARGET)`` pairs,
``compile_map_fields``): SOURCE is a top-level key, or a dotted path into
nested objects (``meta.latency``: a literal key ``"meta.latency"`` or
``{"meta": {"latency": ...}}``; the mapped value is moved out of its
object). TARGET is a leaf field of the schema, or a name below a flattened
field or a ``children`` object (``model.prediction.score``, ``labels.team``,
``model.stats.queue_ms``); the value is coerced to the field's type
(keyword: strings and numbers; long: integers, integral floats, digit
strings; double: finite numbers and numeric strings; boolean: true/false;
ip: an IP literal; flattened: as above; ``@timestamp``: any timestamp the
JSON mapping reads; ``message``: text). ``event.duration`` takes a unit
suffix, ``event.duration:ms`` (ns, us, ms, s; default ns). Fields the agent
sets itself (``tags``, ``agent.*``, ``log.file.path``, ``log.offset``,
``event.original``, ``data_stream.*``, ``model.server``,
``model.sample_rate``, ``extra``, ``labels`` as a whole) are refused.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, NamedTuple

from agent.parsing.json_coerce import (_UNITS, NO, boolean, count, double, flattened, inside_flattened, ip, keyword,
                                       long, nanos, text, timestamp)
from agent.schema import FIELDS

_SPEC_UNITS = ("ns", "us", "ms", "s")
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


class Rule(NamedTuple):
    """How one key's value becomes one field.

    ``path``: the target split on dots (``("event", "duration")``; ``("@timestamp",)``
    and ``("message",)`` fill the record's timestamp and message). ``rank``:
    lower is tried first (user rules before built-in ones, then catalogue
    order). ``requires``: fields of which one must be present in the line's
    fields for this rule to apply. ``place``: FIELD, TIMESTAMP, MESSAGE or
    STATUS (a field that also gives event.outcome), decided once here rather
    than by comparing names per line.
    """

    target: str
    path: tuple[str, ...]
    coerce: Callable[[Any], Any]
    rank: int
    requires: tuple[tuple[str, ...], ...] = ()
    place: int = 0
    # ``put(fields, value)``: coerce and place in one call (the per-line code);
    # returns the placed value, or NO when it does not coerce or the field
    # is taken. None for @timestamp and message, which are not fields.
    put: Callable[[dict[str, Any], Any], Any] | None = None


FIELD, STATUS, TIMESTAMP, MESSAGE = range(4)  # where a rule puts its value (Rule.place)


def make_rule(target: str, coerce: Callable[[Any], Any], rank: int,
              requires: tuple[tuple[str, ...], ...] = ()) -> Rule:
    place = {"@timestamp": TIMESTAMP, "message": MESSAGE, "http.response.status_code": STATUS}.get(target, FIELD)
    path = tuple(target.split("."))
    put = None if place in (TIMESTAMP, MESSAGE) else _putter(coerce, path, requires)
    return Rule(target, path, coerce, rank, requires, place, put)


def _putter(coerce: Callable[[Any], Any], path: tuple[str, ...],
            requires: tuple[tuple[str, ...], ...]) -> Callable[[dict[str, Any], Any], Any]:
    """``put`` of a field rule, specialised for the common two-part path."""
    if len(path) == 2 and not requires:
        parent, leaf = path
        strings = coerce is keyword  # most keys with a meaning hold strings: no call for those

        def put_two(fields: dict[str, Any], value: Any) -> Any:
            coerced = value if strings and type(value) is str and value else coerce(value)
            if coerced is NO:
                return NO
            node = fields.get(parent, NO)
            if node is NO:
                fields[parent] = {leaf: coerced}
                return coerced
            if type(node) is dict and leaf not in node:
                node[leaf] = coerced
                return coerced
            return NO

        return put_two

    if len(path) == 3 and not requires:  # http.response.status_code, log.origin.function, ...
        top, middle, leaf3 = path

        def put_three(fields: dict[str, Any], value: Any) -> Any:
            coerced = coerce(value)
            if coerced is NO:
                return NO
            node = fields.get(top, NO)
            if node is NO:
                fields[top] = {middle: {leaf3: coerced}}
                return coerced
            if type(node) is not dict:
                return NO
            child = node.get(middle, NO)
            if child is NO:
                node[middle] = {leaf3: coerced}
                return coerced
            if type(child) is dict and leaf3 not in child:
                child[leaf3] = coerced
                return coerced
            return NO

        return put_three

    if len(path) == 2 and all(len(need) == 3 for need in requires):  # url.path from "path"
        parent, leaf = path

        def put_two_required(fields: dict[str, Any], value: Any) -> Any:
            for top, middle, last in requires:  # _present, inlined: this runs on most access lines
                node = fields.get(top)
                if type(node) is dict:
                    node = node.get(middle)
                    if type(node) is dict and last in node:
                        break
            else:
                return NO
            coerced = coerce(value)
            if coerced is NO:
                return NO
            node = fields.get(parent, NO)
            if node is NO:
                fields[parent] = {leaf: coerced}
                return coerced
            if type(node) is dict and leaf not in node:
                node[leaf] = coerced
                return coerced
            return NO

        return put_two_required

    def put(fields: dict[str, Any], value: Any) -> Any:
        if requires and not any(_present(fields, need) for need in requires):
            return NO
        coerced = coerce(value)
        if coerced is NO:
            return NO
        node = fields
        for part in path[:-1]:
            child = node.get(part, NO)  # (a null there is a value: not replaced)
            if child is NO:
                child = node[part] = {}
            elif type(child) is not dict:
                return NO
            node = child
        if path[-1] in node:
            return NO
        node[path[-1]] = coerced
        return coerced

    return put


def _present(fields: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = fields
    for part in path:
        if type(node) is not dict or part not in node:
            return False
        node = node[part]
    return True


# -- coercers of the catalogue alone (the general ones are in json_coerce) ----------


def _http_method(value: Any) -> Any:
    return value if type(value) is str and value.upper() in _HTTP_METHODS else NO


def _status_code(value: Any) -> Any:
    if type(value) is int:  # the usual value: no call
        return value if 100 <= value <= 599 else NO
    number = long(value)
    return number if number is not NO and 100 <= number <= 599 else NO


def _url_path(value: Any) -> Any:
    return value if type(value) is str and value[:1] == "/" else NO


def _trace_id(value: Any) -> Any:
    if type(value) is not str or not value or not value.strip("0"):
        return NO
    return value


def outcome(status: int) -> str:
    """event.outcome of an HTTP status, as the access-log formats derive it."""
    if status >= 500:
        return "failure"
    return "success" if status < 400 else "unknown"


OUTCOMES = tuple(outcome(status) for status in range(600))  # by status: a lookup per line, not a call


# -- the built-in catalogue -------------------------------------------------------

_DURATION_STEMS = ("duration", "latency", "elapsed", "response_time", "took")
_DURATION_SUFFIXES = ("ns", "us", "ms", "s", "sec", "seconds")
# The keys event.duration is read from with their unit: one left in extra holds a value the
# mapping refused ("NaN", -5, "abc"); model health counts it as an unusable latency.
DURATION_KEYS = tuple(f"{stem}_{suffix}" for stem in _DURATION_STEMS for suffix in _DURATION_SUFFIXES)
_HAS_HTTP = (("http", "request", "method"), ("http", "response", "status_code"))

# (target, coercer, keys best first, requires). Data, not code: the module
# docstring and the README list the same table.
CATALOGUE: tuple[tuple[str, Callable[[Any], Any], tuple[str, ...], tuple[tuple[str, ...], ...]], ...] = (
    ("model.name", keyword, ("model_name", "model", "model_id"), ()),
    ("model.version", keyword, ("model_version",), ()),
    ("model.request_id", keyword, ("request_id", "requestId", "req_id"), ()),
    ("trace.id", _trace_id, ("trace_id", "traceId", "otelTraceID"), ()),
    ("span.id", _trace_id, ("span_id", "spanId", "otelSpanID"), ()),
    ("service.name", keyword, ("service_name", "otelServiceName"), ()),
    ("http.request.method", _http_method, ("http_method", "request_method", "method"), ()),
    ("http.response.status_code", _status_code,
     ("status_code", "http_status", "http_status_code", "statusCode", "status"), ()),
    ("url.original", keyword, ("url",), ()),
    ("url.path", _url_path, ("url_path", "request_path"), ()),
    ("url.path", _url_path, ("path", "route", "endpoint"), _HAS_HTTP),
    ("user_agent.original", keyword, ("user_agent",), ()),
    ("client.ip", ip, ("client_ip", "remote_addr"), ()),
    *(("event.duration", nanos(_UNITS[suffix]), (f"{stem}_{suffix}",), ())
      for stem in _DURATION_STEMS for suffix in _DURATION_SUFFIXES),
    ("event.duration", nanos(1, unit_required=True), _DURATION_STEMS, ()),
    ("model.batch_size", count, ("batch_size",), ()),
    ("gen_ai.usage.input_tokens", count, ("prompt_tokens", "input_tokens"), ()),
    ("gen_ai.usage.output_tokens", count, ("completion_tokens", "output_tokens"), ()),
    ("model.prediction", flattened, ("prediction", "predictions"), ()),
    ("model.input.features", flattened, ("features", "input_features"), ()),
    ("model.target", flattened, ("ground_truth",), ()),
    ("log.origin.function", keyword, ("funcName",), ()),
    ("log.origin.file.line", count, ("lineno",), ()),
    ("log.origin.file.name", keyword, ("filename",), (("log", "origin", "file", "line"),)),
    ("process.pid", count, ("process",), ()),
    ("process.name", keyword, ("processName",), ()),
    ("process.thread.id", count, ("thread",), ()),
    ("process.thread.name", keyword, ("threadName",), ()),
)


def _built_in() -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    rank = 0
    for target, coerce, keys, requires in CATALOGUE:
        if target not in FIELDS:
            raise RuntimeError(f"json_keys: {target!r} is not a field of the schema")
        for key in keys:
            if key in rules:
                raise RuntimeError(f"json_keys: key {key!r} is in the catalogue twice")
            rules[key] = make_rule(target, coerce, rank, requires)
            rank += 1
    return rules


BUILT_IN: dict[str, Rule] = _built_in()


# -- user mappings (--map-field) ------------------------------------------------------

# Set by the agent (enrichment, routing, the formats); a mapping may not write them.
_REFUSED = ("tags", "agent", "data_stream", "log.file.path", "log.offset", "event.original", "model.server",
            "model.sample_rate", "extra", "labels")
_SOURCE = re.compile(r"[^.\s]+(?:\.[^.\s]+)*\Z")
_USER_RANK = -1_000_000  # before every built-in rule


def _coercer(target: str) -> Callable[[Any], Any]:
    """The coercer of a TARGET (``name`` or ``name:unit``); ValueError with the reason."""
    name, _, unit = target.partition(":")
    if unit and name != "event.duration":
        raise ValueError(f"a unit suffix (:{unit}) is only accepted on event.duration")
    if name == "event.duration":
        if unit and unit not in _SPEC_UNITS:
            raise ValueError(f"unknown unit {unit!r} for event.duration (one of: {', '.join(_SPEC_UNITS)})")
        return nanos(_UNITS[unit or "ns"])
    for refused in _REFUSED:
        below = name.startswith(refused + ".") and refused != "labels"  # labels.KEY is the user's
        if name == refused or below:
            raise ValueError(f"{name} is set by the agent itself and cannot be a mapping's target")
    field = FIELDS.get(name)
    if field is not None:
        if field.type == "object":
            raise ValueError(f"{name} is an object, not a leaf field (map to {name}.NAME)")
        if field.type == "date" and name != "@timestamp":
            raise ValueError(f"{name}: date fields other than @timestamp cannot be mapped")
        coerce = _BY_TYPE.get(field.type)
        if coerce is None:
            raise ValueError(f"{name} is a {field.type} field, which a mapping cannot fill")
        if field.allowed:
            return _one_of(coerce, frozenset(field.allowed))
        return coerce
    for parent, parent_field in FIELDS.items():
        if name.startswith(parent + "."):
            if parent_field.children:
                return _BY_TYPE[parent_field.children]
            if parent_field.type == "flattened":
                from agent.transforms.truncate import key_path_problem  # (agent.transforms imports this module)
                problem = key_path_problem(name)
                if problem is not None:
                    raise ValueError(f"{name[:60]}...: {problem}")
                return keyword if parent == "labels" else inside_flattened(name.count(".") - parent.count("."))
            raise ValueError(f"{name} is below {parent}, a {parent_field.type} field, not an object")
    if any(other.startswith(name + ".") for other in FIELDS):
        raise ValueError(f"{name} is an object, not a leaf field")
    raise ValueError(f"{name} is not a field of the schema (see docs/fields.md)")


def _one_of(coerce: Callable[[Any], Any], allowed: frozenset[str]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        result = coerce(value)
        return result if result in allowed else NO
    return check


_BY_TYPE: dict[str, Callable[[Any], Any]] = {
    "keyword": keyword, "text": text, "match_only_text": text, "long": long, "double": double,
    "boolean": boolean, "ip": ip, "flattened": flattened, "date": timestamp,
}


def parse_map_field(raw: str) -> tuple[str, str]:
    """``SOURCE=TARGET`` as a checked pair; ValueError with the reason."""
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r}: expected SOURCE=TARGET")
    source, sep, target = raw.partition("=")
    source, target = source.strip(), target.strip()
    if not sep or not source or not target:
        raise ValueError(f"{raw!r}: expected SOURCE=TARGET, e.g. latency=event.duration:ms")
    try:
        check_rule(source, target)
    except ValueError as error:
        raise ValueError(f"{raw!r}: {error}") from None
    return source, target


def check_rule(source: Any, target: Any) -> None:
    """ValueError with the reason if ``(source, target)`` cannot be a mapping."""
    if not isinstance(source, str) or not _SOURCE.match(source):
        raise ValueError(f"source {source!r} must be a key or a dotted path of keys (no empty parts)")
    if not isinstance(target, str) or not target:
        raise ValueError(f"target {target!r} must be a field name")
    _coercer(target)


@lru_cache(maxsize=64)
def compile_map_fields(map_fields: tuple[tuple[str, str], ...]) -> tuple[tuple[str, Rule], ...]:
    """``(source, rule)`` per user mapping, in the order given; ValueError naming
    the mapping and the reason. Cached: every parser of the same settings
    shares one compiled list."""
    compiled: list[tuple[str, Rule]] = []
    seen: set[str] = set()
    if not isinstance(map_fields, tuple):
        raise ValueError(f"map_fields must be a tuple of (SOURCE, TARGET) pairs, got {map_fields!r}")
    for rank, pair in enumerate(map_fields):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"{pair!r}: expected a (SOURCE, TARGET) pair")
        source, target = pair
        try:
            check_rule(source, target)
        except ValueError as error:
            raise ValueError(f"{source}={target}: {error}") from None
        if source in seen:
            raise ValueError(f"{source}={target}: {source} is mapped twice")
        seen.add(source)
        coerce = _coercer(target)
        name = target.partition(":")[0]
        compiled.append((source, make_rule(name, coerce, _USER_RANK + rank)))
    return tuple(compiled)
