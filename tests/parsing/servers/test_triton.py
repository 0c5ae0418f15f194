"""Triton Inference Server's log through the parser: both layouts, the year of
MMDD stamps, unquoted messages, model names, tables and Python errors.

The fixtures follow triton/common's logging (LogMessage, LOG_TABLE_INFO) and
the logging extension's documented layouts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.events import TAG_PARSE_FAILURE, Line, Record, Source
from agent.parsing import ParseSettings, SourceParser, make_parser
from agent.parsing.servers import triton  # registers the format
from agent.parsing.servers.triton import TritonFormat, glog_year

FIXTURES = Path(__file__).parent.parent.parent / "fixtures" / "servers" / "triton"
NOW = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc).timestamp()


def utc(*args: int) -> float:
    *head, micros = args
    return datetime(*head, micros, tzinfo=timezone.utc).timestamp()


def parse(name: str, fmt: str = "triton", now: float = NOW, **options: object
          ) -> tuple[list[Record], list[Line], list[int]]:
    path = FIXTURES / name
    source = Source("triton-" + name, str(path))
    lines, starts, offset = [], [0, 0], 0
    for number, raw in enumerate(path.read_bytes().split(b"\n")[:-1], start=1):
        end = offset + len(raw) + 1
        lines.append(Line(source, offset, end, raw.decode(), 1000.0 + number))
        offset = end
        starts.append(end)
    line_format = TritonFormat(ParseSettings(format=fmt, **options))
    line_format.clock = lambda: now
    parser = SourceParser(ParseSettings(format=fmt, **options), source, line_format)
    records = [record for line in lines for record in parser.feed(line)] + parser.flush()
    assert sum(record.line_count for record in records) == len(lines)
    assert all(a.end == b.offset for a, b in zip(records, records[1:]))
    return records, lines, starts


def covers(record: Record, starts: list[int], first: int, last: int) -> None:
    assert (record.offset, record.end, record.line_count) == (starts[first], starts[last + 1], last - first + 1)


def origin(name: str, line: int) -> dict[str, object]:
    return {"file": {"name": name, "line": line}}


def test_default_layout_record_by_record() -> None:
    records, lines, starts = parse("default.log")
    assert len(records) == 15
    (pinned, cuda, loading, loading2, init, warning, loaded, failed, table, grpc, http, pb_error, stub,
     unloaded, waiting) = records

    covers(pinned, starts, 1, 1)
    assert pinned.timestamp == utc(2024, 5, 1, 9, 58, 1, 4211)  # the year from "now"
    assert pinned.message == "Pinned memory pool is created at '0x7f2c1c000000' with size 268435456"
    assert pinned.fields == {"log": {"level": "info", "origin": origin("pinned_memory_manager.cc", 277)},
                             "process": {"pid": 1}, "model": {"server": "triton"}}

    assert loading.fields["model"] == {"server": "triton", "name": "densenet_onnx", "version": "1",
                                       "operation": "load"}
    assert loading2.fields["model"]["name"] == "text_encoder"
    assert init.fields["model"] == {"server": "triton", "name": "densenet_onnx", "version": "1"}
    # Escaped quotes inside the JSON-encoded message come out unescaped.
    assert warning.message == "CUDA Execution Provider not available, falling back to \"CPU\" for 'densenet_onnx'"
    assert warning.fields["log"]["level"] == "warning"
    assert loaded.fields["model"] == {"server": "triton", "name": "densenet_onnx", "operation": "load"}
    assert failed.fields["log"]["level"] == "error"
    assert failed.fields["model"] == {"server": "triton", "name": "text_encoder", "version": "3", "operation": "load"}

    # LOG_TABLE_INFO: an empty heading, then the table up to the next entry
    # (the blank line after it belongs to it and is trimmed from the message).
    covers(table, starts, 9, 16)
    assert table.message == "\n".join(line.text for line in lines[9:15])
    assert table.fields["log"]["origin"] == origin("server.cc", 676)

    assert grpc.message == "Started GRPCInferenceService at 0.0.0.0:8001"
    assert http.timestamp == utc(2024, 5, 1, 10, 0, 0, 123456)
    assert http.fields["http"] == {"request": {"method": "POST"}}
    assert http.fields["url"] == {"original": "/v2/models/densenet_onnx/infer",
                                  "path": "/v2/models/densenet_onnx/infer"}
    assert http.fields["model"] == {"server": "triton", "name": "densenet_onnx", "operation": "infer"}

    # pb_stub's error: the escaped newlines are real ones, the pybind11 "At:" trace read.
    assert pb_error.message.endswith("\n\nAt:\n  /models/postprocess/1/model.py(88): execute\n")
    assert pb_error.fields["error"] == {
        "type": "AttributeError", "message": "'NoneType' object has no attribute 'as_numpy'",
        "stack_trace": "AttributeError: 'NoneType' object has no attribute 'as_numpy'\n\nAt:\n"
                       "  /models/postprocess/1/model.py(88): execute"}
    # The message names the instance postprocess_0_0: the model is postprocess.
    assert pb_error.fields["model"]["name"] == "postprocess"

    # An unprefixed Python traceback (the stub's stderr) joins the entry before it.
    covers(stub, starts, 20, 24)
    assert stub.message == "\n".join(["Stub process is unhealthy and it will be restarted."]
                                     + [line.text for line in lines[20:24]])
    assert stub.fields["error"]["type"] == "FileNotFoundError"
    assert stub.fields["error"]["stack_trace"] == "\n".join(line.text for line in lines[20:24])

    assert unloaded.fields["model"] == {"server": "triton", "name": "densenet_onnx", "version": "1",
                                        "operation": "unload"}
    # TRITON_SERVER_ESCAPE_LOG_MESSAGES=0: the message as written.
    assert waiting.message == "Waiting for in-flight requests to complete."
    assert all(record.tags == () for record in records)


def test_iso8601_layout() -> None:
    records, lines, starts = parse("iso8601.log")
    loading, loaded, warning, table, error, unload = records
    assert loading.timestamp == utc(2024, 5, 1, 10, 0, 0, 0)
    assert loading.fields == {
        "log": {"level": "info", "origin": origin("model_lifecycle.cc", 472)},
        "process": {"pid": 87},
        "model": {"server": "triton", "name": "resnet50_trt", "version": "2", "operation": "load"},
    }
    assert loaded.fields["model"]["version"] == "2"
    assert warning.fields["log"]["level"] == "warning"
    covers(table, starts, 4, 9)
    assert table.message.startswith("+--------------+") and table.message.count("\n") == 4
    assert error.fields["model"] == {"server": "triton", "name": "resnet50_trt"}
    assert unload.fields["model"] == {"server": "triton", "name": "resnet50_trt", "operation": "unload"}


def test_the_year_rolls_over_at_new_year() -> None:
    records, _, _ = parse("default.log", now=datetime(2025, 1, 1, 0, 5, tzinfo=timezone.utc).timestamp())
    # May 1 read on January 1 2025: last May, not next.
    assert records[0].timestamp == utc(2024, 5, 1, 9, 58, 1, 4211)


@pytest.mark.parametrize(("month", "day", "now", "year"), [
    (12, 31, datetime(2025, 1, 1, 0, 0, 1, tzinfo=timezone.utc), 2024),  # read just after new year
    (1, 1, datetime(2025, 1, 1, 0, 0, 1, tzinfo=timezone.utc), 2025),
    (1, 2, datetime(2025, 1, 1, 12, tzinfo=timezone.utc), 2025),  # a day ahead: clock skew, not last year
    (1, 3, datetime(2025, 1, 1, 12, tzinfo=timezone.utc), 2024),
    (1, 1, datetime(2024, 12, 31, 23, 59, tzinfo=timezone.utc), 2025),  # a writer's clock ahead of ours
    (6, 15, datetime(2024, 6, 3, tzinfo=timezone.utc), 2023),
    (2, 29, datetime(2025, 3, 1, tzinfo=timezone.utc), 2024),  # the latest leap year
    (2, 29, datetime(2027, 1, 1, tzinfo=timezone.utc), 2024),
    (2, 30, datetime(2025, 3, 1, tzinfo=timezone.utc), None),
    (13, 1, datetime(2025, 3, 1, tzinfo=timezone.utc), None),
    (0, 1, datetime(2025, 3, 1, tzinfo=timezone.utc), None),
])
def test_glog_year(month: int, day: int, now: datetime, year: int | None) -> None:
    assert glog_year(month, day, now.timestamp()) == year


def feed_all(texts: list[str], fmt: str = "triton") -> list[Record]:
    source = Source("odd", "/var/log/triton.log")
    parser = make_parser(ParseSettings(format=fmt), source)
    records: list[Record] = []
    offset = 0
    for text in texts:
        end = offset + len(text.encode("utf-8", "surrogatepass")) + 1
        records.extend(parser.feed(Line(source, offset, end, text, 1.0)))
        offset = end
    return records + parser.flush()


def test_odd_lines() -> None:
    first, broken, bad_date = feed_all([
        "not triton at all",
        'E0501 10:00:00.000001 1 x.cc:1] "unterminated \\',
        "I1340 10:00:00.000001 1 x.cc:1] month 13",
    ])
    assert first.tags == (TAG_PARSE_FAILURE,) and first.error == "not a triton log line"
    assert first.fields == {"model": {"server": "triton"}}
    # A message that is not valid JSON is kept as written.
    assert broken.message == '"unterminated \\' and broken.fields["log"]["level"] == "error"
    assert bad_date.timestamp is None and bad_date.message == "month 13"


def test_detect() -> None:
    assert TritonFormat.detect('I0501 10:00:00.123456 1 model_lifecycle.cc:838] "x"')
    assert TritonFormat.detect("2024-05-01T10:00:00Z W 87 metrics.cc:811] x")
    assert not TritonFormat.detect("I0501 10:00:00 missing micros x.cc:1] x")
    assert not TritonFormat.detect("INFO: started")
    assert not TritonFormat.detect("2024-05-01T10:00:00Z INFO started")


@pytest.mark.parametrize("text", [
    "I0501 09:58:01.004211 1 pinned_memory_manager.cc:277] Pinned memory pool is created",  # Triton's file
    'I0501 09:58:01.004211 1 server.cc:1] "Started HTTPService at 0.0.0.0:8000"',  # a quoted message
    "I0501 09:58:01.004211 1 server.cc:1] Started GRPCInferenceService at 0.0.0.0:8001",  # Triton's own words
    "I0501 09:58:01.004211 1 onnxruntime.cc:2753] TRITONBACKEND_ModelInitialize: m (version 1)",
    "== Triton Inference Server ==",  # the container's banner
])
def test_detect_claims_on_a_mark_of_tritons_own(text: str) -> None:
    assert TritonFormat.detect(text)


@pytest.mark.parametrize("text", [
    # glog/absl lines of other C++ libraries (PaddlePaddle/Paddle#44889): glog's layout, not Triton's.
    "E0804 16:25:25.154521 20984 analysis_config.cc:610] EnableMKLDNN() only works when IR optimization is enabled.",
    "I0804 16:25:25.154521 20984 server.cc:42] listening on 8866",
    'W0804 16:25:25.154521 20984 main.cc:7] "quoted" then more',
    "error: creating server: Internal - x",  # joins a Triton file, does not claim one
])
def test_detect_does_not_claim_a_generic_glog_line(text: str) -> None:
    assert not TritonFormat.detect(text)


def test_a_generic_glog_line_does_not_make_a_python_log_triton() -> None:
    texts = ["2024-08-04 16:25:24,900 - app.server - INFO - init",
             "E0804 16:25:25.154521 20984 analysis_config.cc:610] EnableMKLDNN() only works with IR optimization.",
             "2024-08-04 16:25:26,000 - app.server - INFO - model ernie loaded",
             "2024-08-04 16:25:27,000 - app.server - ERROR - predict failed",
             "2024-08-04 16:25:28,000 - app.server - WARNING - slow request 2.5s"]
    records = feed_all(texts, "auto")
    assert [record.line_count for record in records] == [1] * 5
    assert [record.fields.get("log", {}).get("level") for record in records] == [
        "info", None, "info", "error", "warning"]
    assert all("model" not in record.fields for record in records)


@pytest.mark.parametrize("fmt", ["triton", "auto"])
def test_a_line_another_layout_reads_begins_its_own_event(fmt: str) -> None:
    head = 'I0501 09:58:03.011540 1 server.cc:676] "Started HTTPService at 0.0.0.0:8000"'
    foreign = ["2024-05-01 10:00:00,123 - model.x - WARNING - falling back to CPU",
               "ERROR:model.x:could not open labels",
               'INFO:     127.0.0.1:52144 - "POST /v2/models/x/infer HTTP/1.1" 200 OK',
               "[2024-05-01 10:00:01 +0000] [7] [INFO] Booting worker with pid: 7",
               '{"message": "prediction failed", "level": "error"}']
    texts = [head]
    for text in foreign:
        texts += [text, head]
    records = feed_all(texts, fmt)
    assert [record.message for record in records if record.line_count != 1] == []
    assert len(records) == len(texts)
    # ... while a table, a traceback and lines of no layout still continue an entry.
    records = feed_all([head, "+---+", "| m |", "Traceback (most recent call last):", '  File "/m.py", line 1',
                        "ValueError: v", "not a log line", "{ not json", "2024-05-01 text without a level"], fmt)
    assert [record.line_count for record in records] == [9]


@pytest.mark.parametrize("fmt", ["triton", "auto"])
def test_the_fatal_start_up_error_is_an_entry_of_its_own(fmt: str) -> None:
    # The last lines of triton-inference-server/server#6416.
    records = feed_all([
        "I1011 13:28:21.070789 1 model_lifecycle.cc:603] successfully unloaded 'densenet_onnx' version 1",
        "I1011 13:28:22.061147 1 server.cc:331] Timeout 29: Found 0 live models and 0 in-flight requests",
        "error: creating server: Internal - failed to load all models"], fmt)
    unloaded, timeout, error = records
    assert timeout.line_count == 1 and timeout.fields["log"]["level"] == "info"
    assert error.message == "error: creating server: Internal - failed to load all models"
    assert error.fields == {"log": {"level": "error"}, "model": {"server": "triton"}}
    assert error.tags == ()


@pytest.mark.parametrize(("named", "model"), [
    ("for model instance 'xtrimogene_0_0'", "xtrimogene"),
    ("for model 'xtrimogene_0_0'", "xtrimogene"),
    ("for model instance 'ens_1_2_0_1'", "ens_1_2"),  # only the instance's own suffix
    ("for model instance 'mygroup_0'", "mygroup_0"),  # a named group's instance: kept as written
])
def test_a_request_failure_names_the_model_of_the_instance(named: str, model: str) -> None:
    # python_be's message (biomap-research/scFoundation#15).
    [record] = feed_all([f'E0501 10:00:00.123456 1 python_be.cc:1261] "Failed to process the request(s) {named}, '
                         'message: ValueError: boom\\n\\nAt:\\n  /models/m/1/model.py(145): execute\\n"'])
    assert record.fields["model"] == {"server": "triton", "name": model}
    assert record.fields["error"]["type"] == "ValueError"


def test_a_model_named_like_an_instance_keeps_its_name() -> None:
    [record] = feed_all(["I0501 10:00:00.123456 1 model_lifecycle.cc:838] \"successfully loaded 'm_1_2'\""])
    assert record.fields["model"]["name"] == "m_1_2"


def test_startup_failure_fixture() -> None:
    records, lines, starts = parse("startup_failure.log")
    assert [record.line_count for record in records] == [1] * 6
    loading, failed, python, unloaded, timeout, error = records
    assert failed.fields["model"] == {"server": "triton", "name": "xtrimogene"}
    assert python.fields["log"] == {"level": "warning", "logger": "model.xtrimogene"}
    assert python.tags == (TAG_PARSE_FAILURE,)  # forced: not a Triton line, but not swallowed either
    assert error.fields["log"] == {"level": "error"} and error.tags == ()


_LINE = st.one_of(
    st.builds(lambda letter, message: f"{letter}0501 10:00:00.123456 1 x.cc:12] {message}",
              st.sampled_from("IWEF"), st.sampled_from(['"a"', '"loading: m:1"', '"bad', "", "+--+",
                                                        '"Traceback (most recent call last):\\nValueError: v"'])),
    st.sampled_from(["+----+", "| m | 1 |", "Traceback (most recent call last):", '  File "/x.py", line 1, in f',
                     "ValueError: v", "", "2024-05-01T10:00:00Z I 1 a.cc:1] x", "I9999 99:99:99.999999 1 a.cc:1] x"]),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(_LINE, max_size=30), fmt=st.sampled_from(["triton", "auto"]))
def test_no_input_raises_and_every_line_is_in_one_record(texts: list[str], fmt: str) -> None:
    records = feed_all(texts, fmt)
    assert sum(record.line_count for record in records) == len(texts)
    assert all(a.end == b.offset for a, b in zip(records, records[1:]))


def test_module_registers_the_format() -> None:
    from agent.parsing import FORMATS
    assert FORMATS["triton"] is triton.TritonFormat


# -- times past 9999-12-31T23:59:59.999Z: none, never one that cannot be written --

@pytest.mark.parametrize("text", [
    "9999-12-31T23:59:60Z I 1 model_lifecycle.cc:1] x",
    "9999-12-31T23:59:59.999999999Z I 1 a.cc:1] x",
    "9999-12-31T23:59:59.9999Z I 1 a.cc:1] x",
])
def test_an_iso_time_past_the_year_9999_is_none(text: str) -> None:
    # A leap second or a long fraction carried the last minute of 9999 past
    # what the enrichment can write: it raised and the reader died.
    info = TritonFormat(ParseSettings(format="triton")).head(text)
    assert info.timestamp is None
    assert info.fields["log"]["level"] == "info"


def test_the_last_millisecond_of_the_year_9999_is_kept() -> None:
    info = TritonFormat(ParseSettings(format="triton")).head("9999-12-31T23:59:59.999Z I 1 a.cc:1] x")
    assert info.timestamp == pytest.approx(253402300799.999)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9999), st.integers(1, 12), st.integers(1, 31), st.integers(0, 23), st.integers(0, 59),
       st.integers(0, 60), st.text("0123456789", max_size=9))
def test_any_iso_time_is_none_or_within_the_years_1_to_9999(year, month, day, hour, minute, second, fraction):
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    text += (f".{fraction}" if fraction else "") + "Z I 1 a.cc:1] x"
    timestamp = TritonFormat(ParseSettings(format="triton")).head(text).timestamp
    assert timestamp is None or -62135596800.0 <= timestamp <= 253402300799.999
