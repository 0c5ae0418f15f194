"""json_fit: an ECS value whose shape the mapping refuses is kept in extra by
its dotted key, objects too deep for a flattened field become JSON text, two
spellings of log.offset / log.file keep both values, gen_ai keys are ECS
keys; the compiled loop (json_shapes) gives what the interpreted one gives
on such objects. (Indexing into the real node: tests/schema/test_json_fit_es.py.)"""

from __future__ import annotations

import copy
import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.parsing import json_fit
from agent.parsing.json_plans import KeyMap
from agent.parsing.parse_json import map_object
from agent.schema import FLATTENED_DEPTH_LIMIT


def _fields(obj: dict, rules: tuple = (), whole: bool = False) -> dict:
    """map_object's fields (``whole``: message, timestamp and fields), checked
    equal on the interpreted and the compiled loop."""
    interpreted, compiled = KeyMap(rules + (("zz", "labels.zz"),)), KeyMap(rules + (("zz", "labels.zz"),))
    interpreted.compile_after = None
    compiled.compile_after = 1
    expected = map_object(copy.deepcopy(obj), interpreted)
    for _ in range(3):
        got = map_object(copy.deepcopy(obj), compiled)
        assert orjson.dumps(got, option=orjson.OPT_NON_STR_KEYS) == orjson.dumps(
            expected, option=orjson.OPT_NON_STR_KEYS), obj
    assert tuple(obj) in compiled.compiled
    return expected if whole else expected[2]


def _deep(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _depth(value) -> int:
    """Objects nested in ``value``, itself included (lists do not count)."""
    if isinstance(value, dict):
        return 1 + max((_depth(child) for child in value.values()), default=0)
    if isinstance(value, list):
        return max((_depth(child) for child in value), default=0)
    return 0


def test_a_value_of_the_wrong_shape_goes_to_extra_by_its_dotted_key():
    cases = [
        ({"http": {"request": {"method": "POST", "body": "{\"x\":1}"}}},
         {"http": {"request": {"method": "POST"}}, "extra": {"http.request.body": "{\"x\":1}"}}),
        ({"url": {"path": "/p", "query": {"a": "1"}}}, {"url": {"path": "/p"}, "extra": {"url.query": {"a": "1"}}}),
        ({"process": {"thread": "MainThread"}}, {"process": {}, "extra": {"process.thread": "MainThread"}}),
        ({"log": {"origin": {"file": "a.py", "line": 3}}},
         {"log": {"origin": {"line": 3}}, "extra": {"log.origin.file": "a.py"}}),
        ({"host": {"os": "linux"}}, {"host": {}, "extra": {"host.os": "linux"}}),
        ({"log.level": {"name": "INFO"}}, {"extra": {"log.level": {"name": "INFO"}}}),
        ({"error": {"message": {"code": 1}}}, {"error": {}, "extra": {"error.message": {"code": 1}}}),
        ({"log": {"level.x": 1}}, {"log": {}, "extra": {"log.level.x": 1}}),
        ({"log.level.x": 1}, {"extra": {"log.level.x": 1}}),
        ({"log": {"": 1}}, {"log": {}, "extra": {"log.": 1}}),
        ({"process": {" ": 1, "pid": 5}}, {"process": {"pid": 5}, "extra": {"process. ": 1}}),
        ({"log": {"a.": 1}}, {"log": {}, "extra": {"log.a.": 1}}),
        ({"http": {"request": [1, 2]}}, {"http": {}, "extra": {"http.request": [1, 2]}}),
        ({"url": {"query": [{"a": 1}]}}, {"url": {}, "extra": {"url.query": [{"a": 1}]}}),
        ({"log": {"origin.file": {"line": 3}, "origin.function": {"x": 1}}},
         {"log": {"origin.file": {"line": 3}}, "extra": {"log.origin.function": {"x": 1}}}),
        ({"event": {"duration": {"x": 1}, "kind": "k"}, "msg": "m"},
         {"event": {"kind": "k"}, "extra": {"event.duration": {"x": 1}}}),
    ]
    for obj, fields in cases:
        assert _fields(obj) == fields, obj


def test_values_that_fit_are_untouched():
    obj = {"log": {"level": "WARN", "origin": {"file": {"line": 3, "name": "a.py"}, "function": "f"}},
           "process": {"pid": 1, "thread": {"id": 2, "name": "Main"}}, "user": {"": {"deep": [1]}},
           "labels.team": "search", "url.query": ["a", ["b"]], "http.request.method": None, "log.custom": {"x": 1}}
    fields = _fields(copy.deepcopy(obj))
    assert "extra" not in fields
    assert fields["log"]["origin"] == obj["log"]["origin"]
    assert fields["user"] == obj["user"]  # not mapped: anything goes
    assert fields["labels"] == {"team": "search"}


def test_two_spellings_of_log_offset_keep_both_values():
    # (in the order they were set aside: the value that lost the field first)
    assert _fields({"log.offset": 1, "log": {"offset": 2}})["extra"] == {"log.offset": [2, 1]}
    assert _fields({"log": {"offset": 2}, "log.offset": 1})["extra"] == {"log.offset": [1, 2]}
    assert _fields({"log.file": "f", "log": {"file": {"path": "p"}}})["extra"] == {"log.file": ["f", {"path": "p"}]}
    assert _fields({"http.request.body": "x", "http": {"request": {"body": "y"}}})["extra"] == {
        "http.request.body": ["x", "y"]}


def test_gen_ai_keys_are_ecs_keys():
    assert _fields({"gen_ai.prompt": "p"}) == {"gen_ai": {"prompt": "p"}}
    assert _fields({"gen_ai": {"prompt": "p", "completion": "c"}}) == {"gen_ai": {"prompt": "p", "completion": "c"}}
    assert _fields({"gen_ai": {"prompt": {"t": "p"}}}) == {"gen_ai": {}, "extra": {"gen_ai.prompt": {"t": "p"}}}


def test_objects_too_deep_for_a_flattened_field_become_json_text():
    limit = FLATTENED_DEPTH_LIMIT
    fields = _fields({"payload": _deep(60), "shallow": _deep(limit - 1), "deep_list": [[_deep(55)]]})
    extra = fields["extra"]
    assert _depth(extra) == limit
    assert extra["shallow"] == _deep(limit - 1)  # exactly at the limit: as it was
    node = extra["payload"]
    for _ in range(limit - 2):
        node = node["a"]
    assert isinstance(node["a"], str) and json.loads(node["a"]) == _deep(60 - limit + 1)
    assert _depth(_fields({"labels": _deep(70)})["labels"]) == limit
    assert _depth(_fields({"prediction": _deep(70)})["model"]["prediction"]) == limit
    assert _depth(_fields({"p": _deep(70)}, (("p", "model.prediction.a.b"),))["model"]["prediction"]) == limit


def test_json_text_of_any_depth_is_exact():
    deep = _deep(1000)
    text = json_fit.text_of(deep)  # past orjson's 255 levels: written without recursion
    assert text == '{"a":' * 999 + '{"leaf":1}' + "}" * 999
    odd = {"k": [1, 2**70, "caf\udce9", None, True, {"x": [[]]}], 3: "int key"}
    assert json.loads(json_fit._deep_text(odd)) == {"k": [1, 2**70, "caf\udce9", None, True, {"x": [[]]}],
                                                    "3": "int key"}


_KEYS = st.sampled_from([
    "message", "level", "log", "log.level", "log.offset", "log.file", "log.origin", "log.level.x", "log.", "log..a",
    "http", "http.request", "http.request.body", "url", "url.query", "process", "event", "labels", "labels.a",
    "gen_ai", "gen_ai.prompt", "error", "host", "user", "status", "prediction", "payload", "zz"])
_INNER = st.sampled_from(["level", "offset", "file", "origin", "request", "body", "query", "thread", "prompt",
                          "message", "", " ", "a.", "level.x", "origin.file", "pid", "x"])
_LEAF = st.none() | st.integers(-3, 600) | st.sampled_from(["INFO", "/p", "x"])
_VALUE = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(_INNER, inner, max_size=3),
                      max_leaves=8) | st.integers(48, 53).map(_deep)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _VALUE, max_size=6))
def test_compiled_and_interpreted_agree_on_values_that_do_not_fit(obj):
    message, _, fields = _fields(obj, whole=True)
    # Lossless: every leaf value of the line is still somewhere (log.level lower-cased).
    assert _leaves([message, fields]) >= _leaves(obj) - {"null"}


def _leaves(value) -> set:
    if isinstance(value, dict):
        return set().union(*(_leaves(child) for child in value.values()))
    if isinstance(value, list):
        return set().union(*(_leaves(child) for child in value))
    if isinstance(value, str) and value[:1] in ("{", "["):  # an object kept as JSON text
        return _leaves(json.loads(value))
    return {value.lower() if isinstance(value, str) else json.dumps(value)}  # (a message may be a number's text)
