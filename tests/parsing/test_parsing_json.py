"""JSON lines: key mapping onto ECS fields, failures, and the auto format's choice."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.events import TAG_PARSE_FAILURE, TAG_TRUNCATED, Line, Record, Source
from agent.parsing import ParseSettings, make_parser
from agent.parsing.parse_json import failure_reason, map_object

SOURCE = Source("json-key", "/var/log/app.jsonl")
STAMP = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()


def one(text: str, fmt: str = "json", tags: tuple[str, ...] = (), **options: object) -> Record:
    """Parse a single line and flush: exactly one record."""
    parser = make_parser(ParseSettings(format=fmt, **options), SOURCE)
    line = Line(SOURCE, 100, 100 + len(text.encode("utf-8", "surrogatepass")) + 1, text, 5.0, tags)
    records = parser.feed(line) + parser.flush()
    assert len(records) == 1
    assert (records[0].offset, records[0].end) == (line.offset, line.end)
    return records[0]


def mapped(obj: dict) -> tuple[str, float | None, dict]:
    return map_object(orjson.loads(orjson.dumps(obj)))


# -- the mapping -------------------------------------------------------------------


def test_json_record_is_emitted_at_once_with_line_metadata() -> None:
    parser = make_parser(ParseSettings(format="json", keep_original=True), SOURCE)
    text = '{"message": "hi", "level": "WARNING"}'
    line = Line(SOURCE, 0, len(text) + 1, text, 7.5, (TAG_TRUNCATED,))
    [record] = parser.feed(line)
    assert not parser.pending()
    assert record == Record(SOURCE, 0, len(text) + 1, "hi", 7.5, None, {"log": {"level": "warning"}},
                            (TAG_TRUNCATED,), text, None, 1)


@pytest.mark.parametrize(("obj", "message"), [
    ({"message": "a", "msg": "b", "event": "c"}, "a"),
    ({"msg": "b", "event": "c"}, "b"),
    ({"event": "c"}, "c"),
    ({"message": 42}, "42"),
    ({"message": {"nested": True}}, '{"nested":true}'),
    ({"other": 1}, ""),
    ({"message": None}, ""),
])
def test_message_keys_by_priority(obj: dict, message: str) -> None:
    assert mapped(obj)[0] == message


def test_losing_aliases_are_kept_in_extra() -> None:
    _, _, fields = mapped({"msg": "b", "message": "a", "levelname": "INFO", "level": "warn", "name": "x",
                           "logger": "y"})
    assert fields == {"log": {"level": "warn", "logger": "y"},
                      "extra": {"msg": "b", "levelname": "INFO", "name": "x"}}


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-05-01T12:00:00Z", STAMP),
    ("2024-05-01T12:00:00.250Z", STAMP + 0.25),
    ("2024-05-01T14:00:00+02:00", STAMP),
    ("2024-05-01T14:00:00.5+0200", STAMP + 0.5),
    ("2024-05-01 12:00:00,125+00:00", STAMP + 0.125),
    (STAMP, STAMP),
    (STAMP * 1000 + 250, STAMP + 0.25),  # epoch millis
    (int(STAMP * 1_000_000), STAMP),  # micros
    (int(STAMP * 1_000_000_000), STAMP),  # nanos
    (str(int(STAMP)), STAMP),
])
def test_timestamp_forms(value: object, expected: float) -> None:
    assert mapped({"@timestamp": value})[1] == pytest.approx(expected, abs=1e-6)


def test_naive_iso_timestamp_is_host_local_time() -> None:
    expected = datetime(2024, 5, 1, 12, 0, 0, 130000).timestamp()
    assert mapped({"asctime": "2024-05-01 12:00:00,130"})[1] == pytest.approx(expected, abs=1e-6)
    assert mapped({"time": "2024-05-01T12:00:00.130"})[1] == pytest.approx(expected, abs=1e-6)


def test_timestamp_falls_back_to_the_next_key_that_parses() -> None:
    _, timestamp, fields = mapped({"@timestamp": "yesterday", "ts": STAMP, "time": True})
    assert timestamp == STAMP
    assert fields == {"extra": {"@timestamp": "yesterday", "time": True}}


@pytest.mark.parametrize("value", ["", "now", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", None, [1], {}, True, "1e400"])
def test_unparseable_timestamps_are_kept_in_extra(value: object) -> None:
    _, timestamp, fields = mapped({"timestamp": value})
    assert timestamp is None
    assert fields["extra"] == {"timestamp": value}


def test_ecs_dotted_keys_nest_and_merge_with_objects() -> None:
    _, _, fields = mapped({
        "log.level": "INFO", "service.name": "bert", "trace.id": "abc", "ecs.version": "8.11.0",
        "log": {"logger": "app", "origin": {"function": "f"}}, "log.origin.file.line": 3,
        "http.response.status_code": 200, "labels": {"team": "ml"},
    })
    assert fields == {
        "log": {"level": "info", "logger": "app", "origin": {"function": "f", "file": {"line": 3}}},
        "service": {"name": "bert"}, "trace": {"id": "abc"}, "ecs": {"version": "8.11.0"},
        "http": {"response": {"status_code": 200}}, "labels": {"team": "ml"},
    }


def test_keys_that_would_clash_with_ecs_go_to_extra() -> None:
    _, _, fields = mapped({
        "user": "alice",  # ECS user is an object
        "service.name": "a", "service": {"name": "b"},  # the same leaf twice
        "host.name": "h", "host.name.full": "x",  # a leaf used as an object
        "tags": ["x"], "agent": {"name": "other"}, "data_stream": {"type": "logs"},  # reserved
        "my.dotted": 1, "log.": 2, ".log": 3,  # not ECS, or malformed
    })
    assert fields["service"] == {"name": "a"}
    assert fields["host"] == {"name": "h"}
    assert fields["extra"] == {
        "user": "alice", "service.name": "b", "host.name.full": "x", "tags": ["x"],
        "agent": {"name": "other"}, "data_stream": {"type": "logs"}, "my.dotted": 1, "log.": 2, ".log": 3,
    }


def test_a_null_on_the_way_is_a_value_not_replaced_by_an_object() -> None:
    _, _, fields = mapped({"log": {"origin": None}, "log.origin.function": "f", "lineno": 3})
    assert fields == {"log": {"origin": None}, "extra": {"log.origin.function": "f", "lineno": 3}}


def test_fields_enrichment_owns_are_kept_aside() -> None:
    _, _, fields = mapped({"log.offset": 7, "log": {"file": {"path": "/mine"}, "logger": "a"}})
    assert fields == {"log": {"logger": "a"}, "extra": {"log.offset": 7, "log.file": {"path": "/mine"}}}


def test_ecs_keys_take_precedence_over_aliases_in_any_order() -> None:
    _, _, fields = mapped({"level": "debug", "logger": "alias", "log": {"level": "ERROR", "logger": "ecs"}})
    assert fields == {"log": {"level": "error", "logger": "ecs"}, "extra": {"level": "debug", "logger": "alias"}}


@pytest.mark.parametrize(("level", "expected"), [("INFO", "info"), ("Warning", "warning"), (30, "30"), (None, None)])
def test_level_is_lower_cased_text(level: object, expected: str | None) -> None:
    fields = mapped({"levelname": level})[2]
    if expected is None:
        assert fields == {"extra": {"levelname": None}}
    else:
        assert fields == {"log": {"level": expected}}


def test_structured_level_or_logger_values_go_to_extra() -> None:
    assert mapped({"level": {"n": 1}, "logger": [1]})[2] == {"extra": {"level": {"n": 1}, "logger": [1]}}


TRACEBACK = ("Traceback (most recent call last):\n  File \"/app/x.py\", line 3, in f\n    1/0\n"
             "ZeroDivisionError: division by zero\n")


@pytest.mark.parametrize("key", ["exc_info", "exception", "stack_trace", "error.stack_trace"])
def test_stack_trace_keys_fill_error_fields(key: str) -> None:
    _, _, fields = mapped({"message": "boom", key: TRACEBACK})
    assert fields == {"error": {"stack_trace": TRACEBACK, "type": "ZeroDivisionError",
                                "message": "division by zero"}}


def test_given_error_type_and_message_are_not_overwritten() -> None:
    error = {"type": "Custom", "message": "mine", "stack_trace": TRACEBACK}
    assert mapped({"error": error})[2] == {"error": error}
    partial = mapped({"error": {"message": "mine"}, "exc_info": TRACEBACK})[2]
    assert partial == {"error": {"message": "mine", "stack_trace": TRACEBACK, "type": "ZeroDivisionError"}}


def test_structured_exceptions_stay_in_extra() -> None:
    frames = [{"exc_type": "ValueError", "exc_value": "x", "frames": []}]  # structlog dict_tracebacks
    assert mapped({"event": "e", "exception": frames})[2] == {"extra": {"exception": frames}}


def test_ecs_event_object_is_not_a_message() -> None:
    message, _, fields = mapped({"message": "m", "event": {"dataset": "app.log"}, "event.kind": "event"})
    assert message == "m"
    assert fields == {"event": {"dataset": "app.log", "kind": "event"}}
    assert mapped({"event": {"dataset": "d"}, "msg": "x"})[0] == "x"


# -- failures ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "reason"), [
    ('{"message": "hi",, }', "invalid JSON at column 18: unexpected character, expected a string key"),
    ('{"message": "hi"', "invalid JSON at column 17: "),
    ("[1, 2]", "JSON value is an array, not an object"),
    ("42", "JSON value is a number, not an object"),
    ('"text"', "JSON value is a string, not an object"),
    ("null", "JSON value is null, not an object"),
    ("plain words", "invalid JSON at column 1: "),
    ('{"a": "\udcff"}', "invalid JSON at column 1: str is not valid UTF-8"),
])
def test_json_format_failures_keep_the_raw_text(text: str, reason: str) -> None:
    record = one(text, "json")
    assert record.message == text
    assert record.tags == (TAG_PARSE_FAILURE,)
    assert record.error is not None and record.error.startswith(reason)
    assert len(record.error) <= 160
    assert record.timestamp is None
    assert record.fields == {}


def test_failure_reason_is_short_for_long_lines() -> None:
    assert len(failure_reason('{"a": ' + "x" * 10_000)) <= 160


def test_blank_line_in_json_format_is_not_a_failure() -> None:
    record = one("   ", "json")
    assert (record.message, record.tags, record.error) == ("", (), None)


def test_auto_parses_objects_with_leading_whitespace() -> None:
    record = one('  \t{"msg": "hi", "level": "info"}', "auto")
    assert record.message == "hi" and record.tags == ()


def test_auto_treats_a_broken_object_as_plain_text_with_a_failure_tag() -> None:
    text = '{"message": "cut off in the midd'
    record = one(text, "auto", tags=(TAG_TRUNCATED,))
    assert record.message == text
    assert record.tags == (TAG_TRUNCATED, TAG_PARSE_FAILURE)
    assert record.error is not None and record.error.startswith("invalid JSON at column 33")


def test_auto_does_not_flag_arrays_or_text_as_failures() -> None:
    for text in ("[1, 2, 3]", "2024-05-01 12:00:00,000 INFO ok", "12"):
        record = one(text, "auto")
        assert record.message == text and record.tags == () and record.error is None


def test_plain_never_parses_json() -> None:
    record = one('{"message": "hi"}', "plain")
    assert record.message == '{"message": "hi"}' and record.fields == {}


# -- never raises, never loses a key --------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
KEYS = st.sampled_from([
    "message", "msg", "event", "@timestamp", "timestamp", "time", "ts", "created", "asctime", "level",
    "levelname", "severity", "log.level", "logger", "name", "logger_name", "log.logger", "exc_info",
    "exception", "stack_trace", "error.stack_trace", "log", "error", "service", "service.name", "trace.id",
    "ecs.version", "log.origin.file.line", "user", "extra", "tags", "a.b", "x",
]) | st.text(max_size=8)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(KEYS, inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, JSON_VALUES, max_size=8))
def test_any_object_maps_to_serialisable_fields(obj: dict) -> None:
    text = orjson.dumps(obj).decode()
    message, timestamp, fields = map_object(orjson.loads(text))
    assert isinstance(message, str)
    assert timestamp is None or isinstance(timestamp, float)
    orjson.dumps(fields)  # what the output will do with it
    record = one(text, "json")
    assert record.tags == () and record.error is None


# -- lone surrogate escapes (json.dumps of a non-UTF-8 file name) -------------

def test_a_lone_surrogate_escape_keeps_the_fields() -> None:
    # orjson refuses the whole line for it: it was a parse failure, no fields.
    record = one('{"message": "cannot open /data/caf\\udce9.bin", "levelname": "ERROR", '
                 '"ts": "2024-05-01T12:00:00Z", "f\\udc80": ["\\ud83d\\ude00", "\\ud83d", 7]}')
    assert record.tags == () and record.error is None
    assert record.message == "cannot open /data/caf\ufffd.bin"
    assert record.fields["log"]["level"] == "error"
    assert record.timestamp == datetime(2024, 5, 1, 12, tzinfo=timezone.utc).timestamp()
    assert record.fields["extra"] == {"f\ufffd": ["\U0001f600", "\ufffd", 7]}


@pytest.mark.parametrize(("text", "reason"), [
    ('{"message": "caf\\udce9", "n": NaN}', "invalid JSON at column 17: invalid high surrogate"),
    ('{"message": "caf\\udce9", "n": 1e400}', "invalid JSON at column 17: invalid high surrogate"),
    ('{"message": "caf\\udce9"', "invalid JSON at column 17: invalid high surrogate"),
    ('["caf\\udce9"]', "JSON value is an array, not an object"),
])
def test_a_line_with_a_surrogate_escape_is_otherwise_read_as_orjson_reads(text: str, reason: str) -> None:
    record = one(text)
    assert record.tags == (TAG_PARSE_FAILURE,) and record.message == text
    assert record.error.startswith(reason)


@given(st.recursive(st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=5), children, max_size=4), max_leaves=12))
def test_the_lenient_decoder_reads_what_orjson_reads(value: object) -> None:
    # The retry must not change what a value is: with a lone surrogate added
    # to a line, everything else reads as orjson reads it.
    import json

    from agent.parsing.json_decode import loads
    text = json.dumps({"v": value})
    expected = _nul_keys_replaced(orjson.loads(text)["v"])
    assert orjson.dumps(loads(text[:-1] + ', "s": "\\udce9"}')) == orjson.dumps({"v": expected, "s": "\ufffd"})


def _nul_keys_replaced(value: object) -> object:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out[key.replace("\0", "\ufffd")] = _nul_keys_replaced(item)
        return out
    if isinstance(value, list):
        return [_nul_keys_replaced(item) for item in value]
    return value


# -- NUL in keys: Elasticsearch refuses it below a flattened field ------------------

def test_a_nul_in_a_key_becomes_a_replacement_character_and_values_keep_theirs() -> None:
    # Each of these keys was a dead letter on Elasticsearch 9.2.8 ("failed to parse
    # field [extra] of type [flattened]"); values with a NUL were indexed.
    record = one('{"message": "m\\u0000", "we\\u0000ird": 1, "prediction": {"cl\\u0000ass": "x\\u0000"}, '
                 '"nested": {"in\\u0000ner": [{"\\u0000": 2}]}, "caf\\udce9\\u0000": 3}')
    assert record.tags == () and record.message == "m\0"
    assert record.fields["extra"] == {"we\ufffdird": 1, "nested": {"in\ufffdner": [{"\ufffd": 2}]},
                                      "caf\ufffd\ufffd": 3}
    assert record.fields["model"]["prediction"] == {"cl\ufffdass": "x\0"}


def test_an_escaped_backslash_before_u0000_is_no_nul() -> None:
    record = one('{"message": "m", "a\\\\u0000b": 1}')
    assert record.fields["extra"] == {"a\\u0000b": 1}


@given(st.recursive(st.none() | st.integers() | st.text(alphabet="a\0"),
                    lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.text(alphabet="ab\0", max_size=3), children, max_size=3), max_leaves=10))
def test_no_decoded_key_holds_a_nul(value: object) -> None:
    import json

    from agent.parsing.json_decode import loads
    for text in (json.dumps({"v": value}), json.dumps({"v": value}).encode()):
        assert loads(text) == {"v": _nul_keys_replaced(value)}
