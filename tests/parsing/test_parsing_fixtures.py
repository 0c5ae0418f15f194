"""Real-looking log files through the parser, checked record by record.

The text fixtures were produced by CPython 3.11 (logging.basicConfig, the
"%(asctime)s - %(name)s - %(levelname)s - %(message)s" format, uncaught
tracebacks, gunicorn's prefix), with paths and times rewritten; the JSON ones
follow what ecs-logging-python, python-json-logger and structlog write.
"""

from __future__ import annotations

import re

from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.events import TAG_PARSE_FAILURE, Line, Record, Source
from agent.parsing import ParseSettings, make_parser

FIXTURES = Path(__file__).parent.parent / "fixtures" / "parsing"
SOURCE = Source("fixture-key", "/var/log/app.log")


def load(name: str) -> tuple[list[Line], list[int]]:
    """The fixture as Lines, and the byte offset where each line starts (1-based index)."""
    data = (FIXTURES / name).read_bytes()
    lines: list[Line] = []
    starts = [0, 0]  # starts[n] = offset of line n
    offset = 0
    for number, raw in enumerate(data.split(b"\n")[:-1], start=1):
        end = offset + len(raw) + 1
        lines.append(Line(SOURCE, offset, end, raw.decode(), 1000.0 + number))
        offset = end
        starts.append(end)
    return lines, starts


def parse(name: str, fmt: str = "auto", **settings: object) -> tuple[list[Record], list[Line], list[int]]:
    lines, starts = load(name)
    parser = make_parser(ParseSettings(format=fmt, **settings), SOURCE)
    records: list[Record] = []
    for line in lines:
        records.extend(parser.feed(line))
    records.extend(parser.flush())
    assert not parser.pending()
    return records, lines, starts


def text_of(lines: list[Line], first: int, last: int) -> str:
    return "\n".join(line.text for line in lines[first - 1:last])


def local(*args: int) -> float:
    """Epoch of a naive time, read as the host's local time (as the parser does)."""
    *head, millis = args
    return datetime(*head, millis * 1000).timestamp()


def utc(*args: int) -> float:
    *head, micros = args
    return datetime(*head, micros, tzinfo=timezone.utc).timestamp()


# The prefixes of the two logging layouts in these fixtures, written out
# independently of the parser: basicConfig's "LEVEL:name:" and the cookbook's
# "TIME - name - LEVEL - ". A record's message starts after them.
_LAYOUT_PREFIX = re.compile(r"^(?:[A-Z]+:[^\s:]+:|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - \S+ - [A-Z]+ - )")


def check(record: Record, lines: list[Line], starts: list[int], first: int, last: int,
          message_last: int | None = None) -> None:
    """``record`` covers lines first..last; its message is first..message_last,
    without the first line's logging-layout prefix."""
    assert record.offset == starts[first]
    assert record.end == starts[last + 1]
    assert record.line_count == last - first + 1
    assert record.message == _LAYOUT_PREFIX.sub("", text_of(lines, first, message_last or last), count=1)
    assert record.read_time == lines[first - 1].read_time


# -- plain text ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["auto", "plain"])
def test_basicconfig_with_traceback(fmt: str) -> None:
    records, lines, starts = parse("basicconfig_traceback.log", fmt)
    assert len(records) == 4
    info, warning, failed, served = records

    check(info, lines, starts, 1, 1)
    assert info.offset == 0 and info.end == 69
    assert info.timestamp is None
    assert info.fields == {"log": {"level": "info", "logger": "inference.server"}}

    check(warning, lines, starts, 2, 2)
    assert warning.fields["log"] == {"level": "warning", "logger": "urllib3.connectionpool"}

    check(failed, lines, starts, 3, 10)
    assert failed.fields["log"] == {"level": "error", "logger": "inference.worker"}
    error = failed.fields["error"]
    assert error["type"] == "TypeError"
    assert error["message"] == "unsupported operand type(s) for *: 'NoneType' and 'float'"
    assert error["stack_trace"] == text_of(lines, 4, 10)
    assert "~~~~^~~~" in error["stack_trace"]  # 3.11 carets stay in the trace
    assert failed.tags == () and failed.error is None

    check(served, lines, starts, 11, 11)
    assert "error" not in served.fields


@pytest.mark.parametrize("fmt", ["auto", "plain"])
def test_asctime_comma_millis_and_chained_exceptions(fmt: str) -> None:
    records, lines, starts = parse("asctime_chained.log", fmt)
    assert [(r.offset, r.end) for r in records] == [
        (starts[1], starts[2]), (starts[2], starts[3]), (starts[3], starts[18]),
        (starts[18], starts[32]), (starts[32], starts[37]), (starts[37], starts[38])]
    first, debug, context, cause, no_message, last = records

    assert first.timestamp == pytest.approx(local(2024, 5, 1, 12, 0, 0, 130), abs=1e-6)
    assert first.fields == {"log": {"level": "info", "logger": "inference.server"}}  # the cookbook layout
    assert debug.timestamp == pytest.approx(local(2024, 5, 1, 12, 0, 0, 131), abs=1e-6)
    assert debug.fields == {"log": {"level": "debug", "logger": "inference.server"}}

    # "During handling of the above exception": blank lines and separator inside.
    check(context, lines, starts, 3, 17)
    assert context.timestamp == pytest.approx(local(2024, 5, 1, 12, 0, 0, 402), abs=1e-6)
    assert context.fields["log"] == {"level": "error", "logger": "inference.server"}
    assert context.fields["error"] == {
        "type": "RuntimeError",
        "message": "model config missing: /models/bert/config.json",
        "stack_trace": text_of(lines, 4, 17),
    }

    # "The above exception was the direct cause": the LAST exception is reported.
    check(cause, lines, starts, 18, 31)
    assert cause.fields["error"]["type"] == "TimeoutError"
    assert cause.fields["error"]["message"] == "could not reach http://triton:8001"
    assert "ConnectionRefusedError" in cause.fields["error"]["stack_trace"]

    # An exception raised without a message.
    check(no_message, lines, starts, 32, 36)
    assert no_message.fields["error"] == {"type": "ModelNotReady", "stack_trace": text_of(lines, 33, 36)}

    check(last, lines, starts, 37, 37)
    assert last.timestamp == pytest.approx(local(2024, 5, 1, 12, 0, 3, 561), abs=1e-6)
    assert last.fields == {"log": {"level": "warning", "logger": "inference.server"}}


def test_exception_groups() -> None:
    records, lines, starts = parse("exception_group.log")
    assert len(records) == 3
    group, chained, after = records

    check(group, lines, starts, 1, 29)
    assert group.fields["log"] == {"level": "error", "logger": "inference.server"}
    assert group.fields["error"] == {
        "type": "ExceptionGroup",
        "message": "unhandled errors in a TaskGroup (2 sub-exceptions)",
        "stack_trace": text_of(lines, 2, 29),
    }

    # A group, then "During handling ...": the group's closing line does not end it.
    check(chained, lines, starts, 30, 44)
    assert chained.fields["log"] == {"level": "warning", "logger": "inference.server"}
    assert chained.fields["error"]["type"] == "RuntimeError"
    assert chained.fields["error"]["message"] == "no shard could be fetched"
    assert chained.fields["error"]["stack_trace"].startswith("  + Exception Group Traceback")

    check(after, lines, starts, 45, 45)
    assert "error" not in after.fields


def test_syntax_errors_with_and_without_header() -> None:
    records, lines, starts = parse("syntax_error.log")
    assert len(records) == 2
    logged, bare = records

    check(logged, lines, starts, 1, 8)
    assert logged.fields["log"] == {"level": "critical", "logger": "inference.server"}
    assert logged.fields["error"]["type"] == "SyntaxError"
    assert logged.fields["error"]["message"] == "'(' was never closed"

    # python plugin.py that does not compile: no header, starts at the File line.
    check(bare, lines, starts, 9, 12)
    assert bare.fields == {"error": {"type": "SyntaxError", "message": "'(' was never closed",
                                     "stack_trace": text_of(lines, 9, 12)}}
    assert bare.timestamp is None


def test_traceback_straight_to_stderr_and_gunicorn_prefix() -> None:
    # Forced plain: under auto the gunicorn lines are claimed by the gunicorn format.
    records, lines, starts = parse("plain_traceback.log", fmt="plain")
    assert len(records) == 3
    crash, booting, worker = records

    # No log line before it: the traceback is its own record; the blank line
    # after it belongs to it (offsets) but not to its message.
    check(crash, lines, starts, 1, 11, message_last=10)
    assert lines[10].text == ""
    assert crash.timestamp is None
    assert "log" not in crash.fields
    assert crash.fields["error"]["type"] == "app.inference.loader.ModelLoadError"
    assert crash.fields["error"]["message"] == (
        "weights not found in /models/bert\n  expected one of: model.safetensors, pytorch_model.bin")

    check(booting, lines, starts, 12, 12)
    assert booting.timestamp == utc(2024, 5, 1, 12, 0, 5, 0)
    assert booting.fields == {"log": {"level": "info"}}

    check(worker, lines, starts, 13, 17)
    assert worker.fields["log"] == {"level": "error"}
    assert worker.fields["error"] == {"type": "KeyboardInterrupt", "stack_trace": text_of(lines, 14, 17)}


def test_keep_original_joins_raw_lines_including_trailing_blanks() -> None:
    records, lines, _ = parse("plain_traceback.log", keep_original=True)
    assert records[0].original == text_of(lines, 1, 11)
    assert records[0].original.endswith("\n")  # the blank line 11
    assert records[1].original == lines[11].text


# -- JSON ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["auto", "json"])
def test_ecs_logging_python(fmt: str) -> None:
    records, lines, starts = parse("ecs_logging.jsonl", fmt)
    assert len(records) == 3
    started, failed, slow = records
    for number, record in enumerate(records, start=1):
        check_json = (record.offset, record.end, record.line_count, record.tags, record.error)
        assert check_json == (starts[number], starts[number + 1], 1, (), None)

    assert started.message == "starting 4 workers on port 8080"
    assert started.timestamp == utc(2024, 5, 1, 12, 0, 0, 130000)
    assert started.fields == {
        "log": {"level": "info", "logger": "inference.server",
                "origin": {"file": {"line": 31, "name": "serve.py"}, "function": "main"},
                "original": "starting 4 workers on port 8080"},
        "ecs": {"version": "1.6.0"},
        "process": {"name": "MainProcess", "pid": 4242, "thread": {"id": 140245367895872, "name": "MainThread"}},
        "service": {"name": "resnet-serving", "environment": "prod"},
    }

    assert failed.message == "request failed"
    assert failed.fields["log"]["level"] == "error"
    assert failed.fields["error"]["type"] == "TypeError"  # given: not re-derived
    assert failed.fields["error"]["message"] == "unsupported operand type(s) for *: 'NoneType' and 'float'"
    assert failed.fields["error"]["stack_trace"].startswith('  File "/srv/app/inference/worker.py"')
    assert failed.fields["trace"] == {"id": "0af7651916cd43dd8448eb211c80319c"}
    assert failed.fields["transaction"] == {"id": "b7ad6b7169203331"}
    assert failed.fields["http"] == {"request": {"method": "POST"}}
    assert failed.fields["model"] == {"request_id": "4f7c2a"}  # a key with a meaning (json_keys)
    assert "extra" not in failed.fields

    assert slow.fields["log"]["level"] == "warning"
    assert slow.fields["event"] == {"dataset": "inference.log", "duration": 412000000}  # ECS event object
    assert slow.message == "slow batch"
    assert slow.fields["model"] == {"batch_size": 32}
    assert "extra" not in slow.fields


@pytest.mark.parametrize("fmt", ["auto", "json"])
def test_python_json_logger(fmt: str) -> None:
    records, lines, starts = parse("python_json_logger.jsonl", fmt)
    assert [(r.offset, r.end) for r in records] == [(starts[n], starts[n + 1]) for n in (1, 2, 3)]
    started, failed, slow = records

    assert started.message == "starting 4 workers"
    assert started.timestamp == pytest.approx(local(2024, 5, 1, 12, 0, 0, 130), abs=1e-6)
    assert started.fields == {"log": {"level": "info", "logger": "inference.server"}, "extra": {"port": 8080}}

    assert failed.fields["log"] == {"level": "error", "logger": "inference.worker"}
    assert failed.fields["error"]["type"] == "TypeError"
    assert failed.fields["error"]["message"] == "unsupported operand type(s) for *: 'NoneType' and 'float'"
    assert failed.fields["error"]["stack_trace"].startswith("Traceback (most recent call last):\n")
    assert failed.fields["model"] == {"request_id": "4f7c2a"}
    assert "extra" not in failed.fields

    # "created" (epoch, zone-free) wins over "asctime"; asctime is kept in extra.
    assert slow.timestamp == pytest.approx(1714564802.004321, abs=1e-6)
    assert slow.fields["extra"] == {"asctime": "2024-05-01 12:00:02,004", "taskName": None,
                                    "batch": {"size": 32, "wait_ms": 412}}


@pytest.mark.parametrize("fmt", ["auto", "json"])
def test_structlog(fmt: str) -> None:
    records, _, _ = parse("structlog.jsonl", fmt)
    served, failed, warmed = records

    assert served.message == "prediction served"
    assert served.timestamp == pytest.approx(utc(2024, 5, 1, 12, 0, 0, 130512), abs=1e-6)
    assert served.fields == {"log": {"level": "info", "logger": "api.predict"},
                             "model": {"name": "xgboost-churn"}, "event": {"duration": 3_200_000}}  # 3.2 ms in ns

    assert failed.message == "prediction failed"
    assert failed.fields["error"]["type"] == "api.errors.FeatureError"  # the last of the chain
    assert failed.fields["error"]["message"] == "feature 'tenure' missing"
    assert "KeyError: 'tenure'" in failed.fields["error"]["stack_trace"]

    assert warmed.timestamp == pytest.approx(utc(2024, 5, 1, 12, 0, 2, 4000), abs=1e-6)
    assert warmed.fields == {"log": {"level": "debug"}, "extra": {"entries": 1024}}


def test_json_file_with_a_crash_traceback_in_auto_mode() -> None:
    """JSON lines never join text: the traceback after one is its own record."""
    lines, _ = load("python_json_logger.jsonl")
    crash, _ = load("plain_traceback.log")
    offset = lines[-1].end
    shifted = [Line(SOURCE, line.offset + offset, line.end + offset, line.text, line.read_time)
               for line in crash[:10]]
    parser = make_parser(ParseSettings(), SOURCE)
    records = [record for line in lines + shifted for record in parser.feed(line)] + parser.flush()
    assert len(records) == 4
    assert records[2].message == "slow batch"
    assert records[3].offset == offset and records[3].line_count == 10
    assert records[3].fields["error"]["type"] == "app.inference.loader.ModelLoadError"
    assert TAG_PARSE_FAILURE not in records[3].tags


def test_json_format_marks_text_lines_as_failures() -> None:
    records, lines, starts = parse("basicconfig_traceback.log", "json")
    # Text still groups the same way (the traceback joins its log line) ...
    assert [(r.offset, r.end) for r in records] == [
        (starts[1], starts[2]), (starts[2], starts[3]), (starts[3], starts[11]), (starts[11], starts[12])]
    # ... but json format does not read text: no timestamp or level, a failure tag.
    for record in records:
        assert record.tags == (TAG_PARSE_FAILURE,)
        assert record.timestamp is None
        assert "log" not in record.fields
        assert record.error is not None and record.error.startswith("invalid JSON at column 1: ")
    assert records[2].fields["error"]["type"] == "TypeError"
