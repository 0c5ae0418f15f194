"""JSON keys with a meaning (agent.parsing.json_keys): the built-in catalogue,
unit conversion, the user's --map-field rules, and what never happens (a
value of the wrong type in a typed field, a lost key, an exception)."""

from __future__ import annotations

import copy
from decimal import Decimal
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.events import Line, Record, Source
from agent.parsing import ParseSettings, json_plans, make_parser, validate_settings
from agent.parsing.json_keys import BUILT_IN, CATALOGUE, compile_map_fields, parse_map_field
from agent.parsing.json_plans import (_LEVEL_KEYS, _LOGGER_KEYS, _MESSAGE_KEYS, _STACK_KEYS, _TIMESTAMP_KEYS,
                                      ECS_ROOTS, KeyMap)
from agent.parsing.parse_json import map_object
from agent.schema import FIELDS, undefined_fields, value_problems

SOURCE = Source("json-keys", "/var/log/model.jsonl")


def fields_of(obj: dict, map_fields: tuple[tuple[str, str], ...] = ()) -> dict:
    _, _, fields = map_object(orjson.loads(orjson.dumps(obj)), KeyMap(map_fields))
    assert undefined_fields(fields) == [], fields
    assert value_problems(fields) == [], fields
    return fields


def record_of(obj: dict, fmt: str = "json", **options: object) -> Record:
    text = orjson.dumps(obj).decode()
    parser = make_parser(ParseSettings(format=fmt, **options), SOURCE)
    [record] = parser.feed(Line(SOURCE, 0, len(text) + 1, text, 1.0)) + parser.flush()
    return record


# -- the built-in catalogue --------------------------------------------------------


def test_a_typical_model_service_line() -> None:
    fields = fields_of({
        "message": "prediction served", "model_name": "churn", "model_version": 3, "request_id": "r-1",
        "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331", "method": "POST",
        "path": "/v1/predict", "status_code": 200, "latency_ms": 12.5, "batch_size": 8,
        "prediction": {"label": "churn", "score": 0.93}, "features": {"tenure": 17}, "user_id": "u-9",
    })
    assert fields == {
        "model": {"name": "churn", "version": "3", "request_id": "r-1", "batch_size": 8,
                  "prediction": {"label": "churn", "score": 0.93}, "input": {"features": {"tenure": 17}}},
        "trace": {"id": "0af7651916cd43dd8448eb211c80319c"}, "span": {"id": "b7ad6b7169203331"},
        "http": {"request": {"method": "POST"}, "response": {"status_code": 200}},
        "url": {"path": "/v1/predict"},
        "event": {"duration": 12_500_000, "outcome": "success"},
        "extra": {"user_id": "u-9"},  # personal data without a schema field: not mapped
    }


@pytest.mark.parametrize(("key", "value", "nanos"), [
    ("latency_ms", 3.2, 3_200_000),  # not 3200000.0000000005
    ("latency_ms", 12, 12_000_000),
    ("duration_ms", 0.001, 1_000),
    ("elapsed_ms", "7.25", 7_250_000),  # a numeric string
    ("response_time_ms", 1e-7, 0),  # 0.1 ns rounds to 0
    ("took_ms", 0.0000015, 2),  # 1.5 ns: half to even
    ("took_ms", 0.0000025, 2),  # 2.5 ns: half to even
    ("latency_ms", 1099511.6275, 1_099_511_627_500),  # beyond the float fast path: decimal
    ("duration_s", 1.5, 1_500_000_000),
    ("latency_seconds", 0.1, 100_000_000),
    ("duration_sec", 2, 2_000_000_000),
    ("elapsed_us", 250, 250_000),
    ("duration_ns", 42, 42),
    ("duration_ns", 42.0, 42),
    ("latency", "12.5ms", 12_500_000),  # a bare stem only with a unit in the value
    ("duration", "1.5 s", 1_500_000_000),
    ("elapsed", "300us", 300_000),
    ("latency_ms", "2s", 2_000_000_000),  # the value's own unit wins over the key's
    ("duration_s", 9_223_372_036, 9_223_372_036_000_000_000),  # just below a long's maximum
])
def test_durations_become_exact_nanoseconds(key: str, value: object, nanos: int) -> None:
    assert fields_of({key: value}) == {"event": {"duration": nanos}}


@pytest.mark.parametrize(("key", "value"), [
    ("latency_ms", "abc"), ("latency_ms", -1), ("latency_ms", True), ("latency_ms", None), ("latency_ms", [1]),
    ("latency_ms", {"p50": 1}), ("duration_s", 9_223_372_037), ("latency_ms", "1e999"), ("latency_ms", "12 parsecs"),
    ("duration", 12.5), ("latency", 40), ("duration", "12.5"),  # a bare stem without a unit: ms or s?
])
def test_unusable_durations_stay_in_extra_as_they_were(key: str, value: object) -> None:
    assert fields_of({key: value}) == {"extra": {key: value}}


def test_the_first_usable_duration_key_wins_and_the_others_stay() -> None:
    fields = fields_of({"elapsed_ms": 7, "latency_ms": 5, "duration_ms": "n/a"})
    assert fields == {"event": {"duration": 5_000_000}, "extra": {"elapsed_ms": 7, "duration_ms": "n/a"}}
    # duration_* is listed before latency_*: the order of keys in the line does not matter.
    assert fields_of({"latency_ms": 5, "duration_ms": 6})["event"] == {"duration": 6_000_000}
    assert fields_of({"duration_ms": 6, "latency_ms": 5})["event"] == {"duration": 6_000_000}


def test_ecs_keys_keep_winning_over_every_alias() -> None:
    fields = fields_of({"latency_ms": 5, "event": {"duration": 1}, "status_code": 500,
                        "http.response.status_code": 200, "model_name": "a", "trace_id": "x", "trace.id": "y"})
    assert fields["event"] == {"duration": 1}  # no outcome derived from the losing status either
    assert fields["http"] == {"response": {"status_code": 200}}
    assert fields["trace"] == {"id": "y"}
    assert fields["model"] == {"name": "a"}
    assert fields["extra"] == {"latency_ms": 5, "status_code": 500, "trace_id": "x"}
    # the same with the ECS key last in the object
    assert fields_of({"event.duration": 9, "duration_ms": 1}) == {"event": {"duration": 9},
                                                                  "extra": {"duration_ms": 1}}


@pytest.mark.parametrize(("value", "code", "outcome"), [
    (200, 200, "success"), ("404", 404, "unknown"), (503, 503, "failure"), (302.0, 302, "success"),
])
def test_status_codes(value: object, code: int, outcome: str) -> None:
    assert fields_of({"status": value}) == {"http": {"response": {"status_code": code}},
                                           "event": {"outcome": outcome}}


@pytest.mark.parametrize("value", ["ok", "error", 0, 14, 600, -200, True, "200 OK", 200.5])
def test_a_status_that_is_not_an_http_code_stays_in_extra(value: object) -> None:
    assert fields_of({"status": value}) == {"extra": {"status": value}}


def test_a_given_outcome_is_not_overwritten() -> None:
    assert fields_of({"status_code": 500, "event.outcome": "success"})["event"] == {"outcome": "success"}


def test_method_only_when_it_is_an_http_method() -> None:
    assert fields_of({"method": "get"}) == {"http": {"request": {"method": "get"}}}
    assert fields_of({"method": "predict_proba"}) == {"extra": {"method": "predict_proba"}}


def test_path_route_endpoint_only_on_http_lines() -> None:
    assert fields_of({"path": "/data/model.pkl"}) == {"extra": {"path": "/data/model.pkl"}}
    assert fields_of({"endpoint": "/v1/predict", "http_method": "POST"})["url"] == {"path": "/v1/predict"}
    assert fields_of({"route": "/predict", "status": 200})["url"] == {"path": "/predict"}
    assert fields_of({"url_path": "/a"}) == {"url": {"path": "/a"}}  # unambiguous alone
    assert fields_of({"path": "relative", "method": "GET"})["extra"] == {"path": "relative"}


def test_ecs_roots_as_strings_or_numbers_map_and_as_objects_stay_ecs() -> None:
    assert fields_of({"url": "https://api/v1/x?q=1", "user_agent": "curl/8.5", "process": 42}) == {
        "url": {"original": "https://api/v1/x?q=1"}, "user_agent": {"original": "curl/8.5"}, "process": {"pid": 42}}
    assert fields_of({"process": {"pid": 1, "name": "main"}}) == {"process": {"pid": 1, "name": "main"}}
    assert fields_of({"process": "worker-1"}) == {"extra": {"process": "worker-1"}}


def test_python_logrecord_attributes() -> None:
    fields = fields_of({"funcName": "predict", "lineno": 51, "filename": "api.py", "processName": "MainProcess",
                        "thread": 140245367895872, "threadName": "MainThread"})
    assert fields == {"log": {"origin": {"function": "predict", "file": {"line": 51, "name": "api.py"}}},
                      "process": {"name": "MainProcess", "thread": {"id": 140245367895872, "name": "MainThread"}}}
    # alone, "filename" may name any file
    assert fields_of({"filename": "upload.csv"}) == {"extra": {"filename": "upload.csv"}}


def test_names_ids_and_counts() -> None:
    assert fields_of({"model": "xgb", "model_id": "m-1"}) == {"model": {"name": "xgb"}, "extra": {"model_id": "m-1"}}
    assert fields_of({"model": {"name": "x"}}) == {"extra": {"model": {"name": "x"}}}  # an object: no guess
    assert fields_of({"model_version": 1.5}) == {"model": {"version": "1.5"}}
    assert fields_of({"requestId": 77}) == {"model": {"request_id": "77"}}
    assert fields_of({"otelTraceID": "0" * 32, "otelSpanID": "0" * 16}) == {
        "extra": {"otelTraceID": "0" * 32, "otelSpanID": "0" * 16}}  # OpenTelemetry's "no span"
    assert fields_of({"prompt_tokens": 12, "completion_tokens": "30"}) == {
        "gen_ai": {"usage": {"input_tokens": 12, "output_tokens": 30}}}
    assert fields_of({"batch_size": -1}) == {"extra": {"batch_size": -1}}
    assert fields_of({"client_ip": "10.0.0.1", "remote_addr": "10.0.0.2"}) == {
        "client": {"ip": "10.0.0.1"}, "extra": {"remote_addr": "10.0.0.2"}}
    assert fields_of({"client_ip": "10.0.0.1:80"}) == {"extra": {"client_ip": "10.0.0.1:80"}}
    assert fields_of({"service_name": "ranker"}) == {"service": {"name": "ranker"}}


def test_predictions_and_targets_are_objects() -> None:
    assert fields_of({"prediction": 0.93}) == {"model": {"prediction": {"value": 0.93}}}
    assert fields_of({"predictions": [1, 0]}) == {"model": {"prediction": {"value": [1, 0]}}}
    assert fields_of({"ground_truth": "cat"}) == {"model": {"target": {"value": "cat"}}}
    assert fields_of({"inputs": [[1, 2]]}) == {"extra": {"inputs": [[1, 2]]}}  # a payload, not features


def test_every_catalogue_target_is_a_schema_field() -> None:
    assert all(target in FIELDS for target, *_ in CATALOGUE)
    assert BUILT_IN["latency_ms"].target == "event.duration"


# -- --map-field ----------------------------------------------------------------


def test_user_mappings_with_types_from_the_schema() -> None:
    rules = (("meta.took", "event.duration:ms"), ("code", "http.response.status_code"),
             ("tenant", "labels.tenant"), ("score", "model.prediction.score"), ("queue", "model.stats.queue_ms"),
             ("ok", "event.outcome"), ("served_at", "@timestamp"), ("text", "message"))
    obj = {"meta": {"took": 1.25, "node": "a"}, "code": "201", "tenant": 7, "score": 0.5, "queue": "3.5",
           "ok": "success", "served_at": "2024-05-01T12:00:00Z", "text": "done"}
    message, timestamp, fields = map_object(obj, KeyMap(rules))
    assert message == "done"
    assert timestamp == 1714564800.0
    assert fields == {
        "event": {"duration": 1_250_000, "outcome": "success"},
        "http": {"response": {"status_code": 201}},
        "labels": {"tenant": "7"}, "model": {"prediction": {"score": 0.5}, "stats": {"queue_ms": 3.5}},
        "extra": {"meta": {"node": "a"}},  # the mapped value moved out of its object
    }


def test_user_mappings_win_over_built_in_ones_but_not_over_ecs() -> None:
    rules = (("my_latency", "event.duration:s"), ("model", "labels.model"))
    fields = fields_of({"my_latency": 2, "latency_ms": 5, "model": "m", "model_name": "n"}, rules)
    assert fields == {"event": {"duration": 2_000_000_000}, "labels": {"model": "m"},
                      "model": {"name": "n"}, "extra": {"latency_ms": 5}}
    assert fields_of({"my_latency": 2, "event": {"duration": 1}}, rules) == {
        "event": {"duration": 1}, "extra": {"my_latency": 2}}


def test_a_value_that_does_not_coerce_stays_where_it_was() -> None:
    rules = (("meta.took", "event.duration:ms"), ("code", "http.response.status_code"), ("flag", "event.outcome"))
    fields = fields_of({"meta": {"took": "slow"}, "code": "abc", "flag": "maybe"}, rules)
    assert fields == {"extra": {"meta": {"took": "slow"}, "code": "abc", "flag": "maybe"}}


def test_a_dotted_source_matches_a_literal_dotted_key_too() -> None:
    assert fields_of({"meta.took": 3}, (("meta.took", "event.duration:ms"),)) == {"event": {"duration": 3_000_000}}


def test_event_duration_without_a_unit_is_nanoseconds() -> None:
    assert fields_of({"t": 1500}, (("t", "event.duration"),)) == {"event": {"duration": 1500}}


@pytest.mark.parametrize(("spec", "reason"), [
    ("latency", "expected SOURCE=TARGET"),
    ("=model.name", "expected SOURCE=TARGET"),
    ("a=model.nme", "model.nme is not a field of the schema"),
    ("a=model", "model is an object, not a leaf field"),
    ("a=model.stats", "model.stats is an object, not a leaf field"),
    ("a=model.name.x", "model.name.x is below model.name, a keyword field"),
    ("a=model.name:ms", "a unit suffix (:ms) is only accepted on event.duration"),
    ("a=event.duration:h", "unknown unit 'h' for event.duration"),
    ("a=tags", "tags is set by the agent itself"),
    ("a=log.file.path", "log.file.path is set by the agent itself"),
    ("a=agent.name", "agent.name is set by the agent itself"),
    ("a..b=model.name", "source 'a..b' must be a key or a dotted path"),
])
def test_bad_specs_are_refused_with_the_reason(spec: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_map_field(spec)
    assert reason in str(caught.value)
    assert str(caught.value).startswith(repr(spec))


def test_validate_settings_names_map_field() -> None:
    with pytest.raises(ValueError) as caught:
        validate_settings(ParseSettings(map_fields=(("a", "nope"),)))
    assert str(caught.value) == "map_field a=nope: nope is not a field of the schema (see docs/fields.md)"
    with pytest.raises(ValueError, match="map_field a=model.version: a is mapped twice"):
        validate_settings(ParseSettings(map_fields=(("a", "model.name"), ("a", "model.version"))))
    with pytest.raises(ValueError, match="map_field"):
        validate_settings(ParseSettings(map_fields=[("a", "model.name")]))  # type: ignore[arg-type]
    validate_settings(ParseSettings(map_fields=(("a", "model.name"),)))


def test_the_mapping_is_compiled_once_per_settings() -> None:
    rules = (("x", "model.name"),)
    assert compile_map_fields(rules) is compile_map_fields(rules)


def test_the_formats_use_the_settings_mapping() -> None:
    record = record_of({"msg": "hi", "svc_model": "bert"}, "json", map_fields=(("svc_model", "model.name"),))
    assert record.fields == {"model": {"name": "bert"}}
    record = record_of({"msg": "hi", "svc_model": "bert"}, "auto", map_fields=(("svc_model", "model.name"),))
    assert record.fields == {"model": {"name": "bert"}}


def test_rayserve_json_records_get_both_the_catalogue_and_the_settings_mapping() -> None:
    obj = {"levelname": "INFO", "asctime": "2024-02-27 10:36:10,127", "deployment": "default_Model",
           "replica": "rdofcrh4", "message": "scored", "batch_size": 4, "tenant": "acme"}
    record = record_of(obj, "rayserve", map_fields=(("tenant", "labels.tenant"),))
    assert record.fields["model"] == {"server": "rayserve", "name": "default_Model", "worker": "rdofcrh4",
                                      "batch_size": 4}
    assert record.fields["labels"] == {"tenant": "acme"}
    assert "extra" not in record.fields


def test_bentoml_other_json_lines_keep_their_server() -> None:
    record = record_of({"msg": "hi", "model_name": "iris"}, "bentoml")
    assert record.fields["model"] == {"name": "iris", "server": "bentoml"}


# -- properties ----------------------------------------------------------------

_ANY = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
                    | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=8)
_KEYS = st.sampled_from(sorted(BUILT_IN)) | st.sampled_from(["event", "http", "model", "meta", "event.duration",
                                                             "http.response.status_code", "log"]) | st.text(max_size=8)
_RULES = (("meta.took", "event.duration:ms"), ("meta", "model.prediction"), ("code", "http.response.status_code"),
          ("t", "@timestamp"), ("k", "labels.k"))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_KEYS, _ANY, max_size=8), st.booleans())
def test_no_input_raises_and_every_mapped_field_fits_its_type(obj: dict, with_rules: bool) -> None:
    # ECS keys pass through as the line wrote them (not this module's business): leave them out.
    obj = {key: value for key, value in obj.items()
           if not (key.split(".")[0] in ECS_ROOTS and ("." in key or type(value) is dict))}
    text = orjson.dumps(obj).decode()
    message, timestamp, fields = map_object(orjson.loads(text), KeyMap(_RULES if with_rules else ()))
    assert isinstance(message, str)
    assert timestamp is None or isinstance(timestamp, float)
    assert undefined_fields(fields) == []
    assert value_problems(fields) == []
    orjson.dumps(fields)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10).filter(lambda k: k not in BUILT_IN and "." not in k),
                       st.integers() | st.text(max_size=5), max_size=6))
def test_unknown_keys_stay_in_extra_unchanged(obj: dict) -> None:
    _, _, fields = map_object(dict(obj), KeyMap((("meta.took", "event.duration:ms"),)))
    roles = set(_MESSAGE_KEYS + _TIMESTAMP_KEYS + _LEVEL_KEYS + _LOGGER_KEYS + _STACK_KEYS)
    for key, value in obj.items():
        if key not in roles and key not in ECS_ROOTS and key != "meta.took":
            assert fields["extra"][key] == value


_RIVAL_KEYS = st.sampled_from([
    "latency_ms", "duration_ms", "latency", "status", "status_code", "model", "model_name", "method", "path",
    "url", "process", "lineno", "filename", "funcName", "trace_id", "request_id", "my_ms", "meta",
    "event", "http", "log", "trace", "event.duration", "http.response", "http.response.status_code",
    "log.origin", "trace.id"])
_LEAF = st.none() | st.booleans() | st.integers(-5, 700) | st.floats(0, 1e4) | st.sampled_from(
    ["", "GET", "/p", "abc", "12ms", "0" * 16, "10.0.0.1"])
_INNER = st.sampled_from(["duration", "outcome", "status_code", "response", "request", "method", "took", "pid",
                          "id", "origin", "file", "line", "function"])
_RIVAL_VALUES = _LEAF | st.dictionaries(_INNER, _LEAF | st.dictionaries(_INNER, _LEAF | st.dictionaries(
    _INNER, _LEAF, max_size=2), max_size=2), max_size=3)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_RIVAL_KEYS, _RIVAL_VALUES), max_size=10), st.booleans())
def test_placing_at_once_gives_what_waiting_for_the_whole_object_gives(items: list, with_rules: bool) -> None:
    """A rule is placed during the loop over the keys when nothing can beat it
    to its field; otherwise it waits for the end of the object. Both must give
    the same fields: compared against a key map where every rule waits."""
    rules = (("my_ms", "event.duration:ms"), ("meta.took", "event.duration:ms")) if with_rules else ()
    rules += (("zz_unused", "labels.zz"),)  # a key map of its own, not the shared default plans
    obj = dict(items)
    fast = KeyMap(rules)
    slow = KeyMap(rules)
    real = json_plans._mapped_plan
    with mock.patch.object(json_plans, "_mapped_plan", lambda *args: real(*args)[:4] + (None,)):
        for key in obj:
            slow.plan(key)
    expected = map_object(copy.deepcopy(obj), slow)
    assert map_object(copy.deepcopy(obj), fast) == expected


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_RIVAL_KEYS, _RIVAL_VALUES), max_size=10), st.booleans())
def test_plans_decided_per_key_set_give_what_deciding_per_line_gives(items: list, with_rules: bool) -> None:
    """KeyMap.shape decides once per set of keys what depends on the other
    keys; a key map that caches no shape decides it per line. Same fields,
    in the same order (compared as bytes), on the first line of a shape and
    on the next one."""
    rules = (("my_ms", "event.duration:ms"), ("meta.took", "event.duration:ms")) if with_rules else ()
    rules += (("zz_unused", "labels.zz"),)
    obj = dict(items)
    shaped = KeyMap(rules)
    with mock.patch.object(json_plans, "_MAX_SHAPES", 0):
        expected = orjson.dumps(map_object(copy.deepcopy(obj), KeyMap(rules)))
    assert orjson.dumps(map_object(copy.deepcopy(obj), shaped)) == expected
    assert orjson.dumps(map_object(copy.deepcopy(obj), shaped)) == expected  # the cached shape


_UNITS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9}


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**63 - 1), st.sampled_from(sorted(_UNITS)), st.booleans())
def test_a_mapped_duration_round_trips_exactly(nanos: int, unit: str, as_float: bool) -> None:
    """Nanoseconds written in any unit (as the shortest decimal that holds them)
    come back as exactly those nanoseconds."""
    factor = _UNITS[unit]
    written = Decimal(nanos) / factor
    if as_float:
        value: object = float(written)
        if Decimal(repr(value)) * factor != nanos:  # a float cannot hold that many digits
            return
    else:
        value = nanos // factor if nanos % factor == 0 else str(written)
    key = "duration_" + unit
    fields = fields_of({key: value})
    assert fields == {"event": {"duration": nanos}}


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1) | st.integers(100, 599))
def test_a_mapped_integer_round_trips_exactly(number: int) -> None:
    rules = (("n", "model.batch_size"), ("c", "http.response.status_code"), ("d", "model.stats.n"))
    fields = fields_of({"n": number, "c": number, "d": number}, rules)
    assert fields["model"]["batch_size"] == number
    assert fields["http"]["response"]["status_code"] == number  # the user's field: any long
    assert fields["model"]["stats"]["n"] == number
    assert fields.get("event", {}).get("outcome") == (None if not 100 <= number <= 599 else
                                                      "success" if number < 400 else
                                                      "failure" if number >= 500 else "unknown")
