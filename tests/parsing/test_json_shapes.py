"""json_shapes: the loop of map_object compiled per key set gives exactly what
the interpreted loop gives, for any object, key map and key text."""

from __future__ import annotations

import copy

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.parsing.json_plans import KeyMap
from agent.parsing.parse_json import map_object

_KEYS = st.sampled_from([
    # roles, best first within each, and structlog's "event"
    "message", "msg", "event", "@timestamp", "timestamp", "time", "ts", "created", "asctime",
    "level", "levelname", "severity", "logger", "logger_name", "name", "exc_info", "exception", "stack_trace",
    # the catalogue and its rivals
    "latency_ms", "duration_ms", "latency", "status", "status_code", "model", "model_name", "model_version",
    "method", "path", "url", "process", "lineno", "filename", "funcName", "trace_id", "request_id",
    "prediction", "batch_size", "my_ms",
    # ECS objects and dotted ECS keys
    "log", "http", "error", "user", "service", "log.level", "log.logger", "log.file", "log.offset",
    "event.duration", "http.response.status_code", "log.origin.function", "service.name", "error.stack_trace",
    # nothing special
    "version", "client", "meta", "extra",
]) | st.text(max_size=8)  # any text: quotes, newlines, backslashes never reach the generated source
_LEAF = st.none() | st.booleans() | st.integers(-5, 700) | st.floats(allow_nan=False, max_value=1e6) | st.sampled_from(
    ["", "INFO", "GET", "/p", "abc", "12ms", "2026-11-27T12:00:00.004Z", "1764244800.5", "10.0.0.1",
     'Traceback (most recent call last):\n  File "x.py", line 1, in f\nValueError: bad'])
_INNER = st.sampled_from(["duration", "outcome", "status_code", "response", "request", "method", "level",
                          "logger", "file", "offset", "stack_trace", "type", "origin", "function", "took"])
_VALUES = _LEAF | st.dictionaries(_INNER, _LEAF | st.dictionaries(_INNER, _LEAF, max_size=2), max_size=3) \
    | st.lists(_LEAF, max_size=2)
_RULES = st.sampled_from([
    (),
    (("my_ms", "event.duration:ms"), ("meta.took", "event.duration:ms")),
    (("client", "client.ip"), ("version", "model.version")),
])


def _both(obj: dict, rules: tuple) -> tuple[bytes, bytes]:
    interpreted, compiled = KeyMap(rules + (("zz", "labels.zz"),)), KeyMap(rules + (("zz", "labels.zz"),))
    interpreted.compile_after = None
    compiled.compile_after = 1  # compiled on the second object of a shape
    expected = orjson.dumps(map_object(copy.deepcopy(obj), interpreted), option=orjson.OPT_NON_STR_KEYS)
    for _ in range(2):  # the shape is decided, then compiled
        assert orjson.dumps(map_object(copy.deepcopy(obj), compiled), option=orjson.OPT_NON_STR_KEYS) == expected
    assert tuple(obj) in compiled.compiled
    return expected, orjson.dumps(map_object(copy.deepcopy(obj), compiled), option=orjson.OPT_NON_STR_KEYS)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=12), _RULES)
def test_a_compiled_shape_gives_what_the_interpreted_loop_gives(items: list, rules: tuple) -> None:
    expected, got = _both(dict(items), rules)
    assert got == expected  # same fields, same order, same extra, message and timestamp


# One object per branch of the loop, so that each written-out block is checked
# even where random objects seldom go.
_BRANCHES = [
    {"status": 200, "http": "not an object", "message": "rule placed at once, an ECS key could have claimed it"},
    {"status": 503, "http": {"request": {"method": "GET"}}, "path": "/p"},  # a rule waits; url.path requires http
    {"status_code": 200, "status": 404},  # rivals: both wait for the end of the object
    {"path": "/x", "method": "POST"},  # the one late rule
    {"@timestamp": "bad", "timestamp": "2026-11-27T12:00:00.004Z", "time": 5},  # better timestamps held back
    {"msg": "a", "message": "b", "event": "c"},  # better messages present
    {"event": {"duration": 5}, "message": "ECS's event object"},
    {"event": 7, "msg": "structlog's event, not a string"},
    {"log.level": "WARN", "log": {"logger": "x", "file": "f", "offset": 3}, "level": "info"},
    {"log.origin.function": "f", "log.origin.file.line": 3, "service.name": "s"},
    {"process": {"pid": 1}, "user": "alice", "error": {"stack_trace": "Traceback (most recent call last):\nE: x"}},
    {"exc_info": "Traceback (most recent call last):\nValueError: v", "message": 3.5, "level": None},
    {"model": 5, "model_name": "m", "latency_ms": "fast", "duration_ms": 12, "request_id": ""},
    {"ts": 1764244800, "time": 1764244801, "@timestamp": "not a time"},  # held back, then ranked
]


def test_every_branch_of_the_loop() -> None:
    for obj in _BRANCHES:
        expected, got = _both(obj, ())
        assert got == expected, obj
    # A user rule on an ECS field set's key: an object there is still ECS's.
    for value in ({"level": "WARN", "offset": 5}, "plain"):
        expected, got = _both({"log": value, "message": "m"}, (("log", "labels.log"),))
        assert got == expected, value


def test_a_typical_model_service_line() -> None:
    obj = {"timestamp": "2026-11-27T12:00:00.004Z", "level": "INFO", "logger": "model_server.handler",
           "message": "served", "model": "resnet50", "version": "v3", "latency_ms": 31.113, "status": 200,
           "request_id": "abc", "client": "10.0.0.12", "path": "/predictions/model", "batch_size": 30}
    expected, got = _both(obj, ())
    assert got == expected
    assert orjson.loads(got)[2]["model"] == {"name": "resnet50", "request_id": "abc", "batch_size": 30}


def test_rare_shapes_are_not_compiled() -> None:
    keys = KeyMap((("zz", "labels.zz"),))
    for number in range(40):
        map_object({f"key{number}": 1, "message": "m"}, keys)
    assert not keys.compiled  # each shape seen once: never worth a compile


def test_an_object_emptied_by_a_mapped_nested_key_is_not_left_in_extra():
    keys = KeyMap((("meta.took", "event.duration:ms"), ("a.b.c", "labels.c")))
    _, _, fields = map_object({"meta": {"took": 7}, "kept": {}, "a": {"b": {"c": "x"}}}, keys)
    assert fields["event"]["duration"] == 7_000_000 and fields["labels"]["c"] == "x"
    assert fields["extra"] == {"kept": {}}  # an object empty in the log stays
    _, _, fields = map_object({"meta": {"took": 7, "host": "h"}}, keys)
    assert fields["extra"] == {"meta": {"host": "h"}}
