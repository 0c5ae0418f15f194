"""--log-format: a Python logging format string compiled into a line parser."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.enrich import Enricher
from agent.events import Line, Record, Source
from agent.parsing import ParseSettings, make_parser, validate_settings
from agent.parsing.python_logging import compile_layout
from agent.schema import undefined_fields, value_problems

SOURCE = Source("log-format", "/var/log/app/app.log")


def parse(texts: list[str], log_format: str, fmt: str = "plain") -> list[Record]:
    parser = make_parser(ParseSettings(format=fmt, log_format=log_format), SOURCE)
    records: list[Record] = []
    offset = 0
    for text in texts:
        end = offset + len(text.encode()) + 1
        records.extend(parser.feed(Line(SOURCE, offset, end, text, 0.0)))
        offset = end
    records.extend(parser.flush())
    for record in records:
        assert undefined_fields(record.fields) == [], record.fields
        assert value_problems(record.fields) == [], record.fields
    return records


def stamp(record: Record) -> str:
    event = Enricher("h", "a", keep_original=False).build(record)
    assert event is not None
    return orjson.loads(event.data)["@timestamp"]


def local_stamp(text: str) -> str:
    """``@timestamp`` of a naive ``YYYY-MM-DD HH:MM:SS,mmm`` (host local time)."""
    moment = datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{text[20:23]}Z"


@pytest.mark.parametrize(("log_format", "line", "message", "fields"), [
    ("%(asctime)s %(levelname)s %(name)s: %(message)s",
     "2026-11-27 09:00:09,004 INFO app.worker: request served in 12 ms",
     "request served in 12 ms", {"log": {"level": "info", "logger": "app.worker"}}),
    ("%(asctime)s %(levelname)-8s %(name)-12s %(message)s",
     "2026-11-27 09:00:09,004 WARNING  app          disk: 91%",
     "disk: 91%", {"log": {"level": "warning", "logger": "app"}}),
    ("[%(asctime)s] %(levelname)8s %(process)d %(processName)s %(threadName)s %(thread)d %(message)s",
     "[2026-11-27 09:00:09,004]    ERROR 4127 MainProcess Thread-1 (worker) 140234225776448 boom",
     "boom", {"log": {"level": "error"},
              "process": {"pid": 4127, "name": "MainProcess",
                          "thread": {"id": 140234225776448, "name": "Thread-1 (worker)"}}}),
    ("%(asctime)s %(filename)s:%(lineno)d %(funcName)s() %(module)s %(message)s",
     "2026-11-27 09:00:09,004 handler.py:142 handle() handler loaded",
     "loaded", {"log": {"origin": {"file": {"name": "handler.py", "line": 142}, "function": "handle"}}}),
    ("%(asctime)s %(message)s [in %(pathname)s:%(lineno)d]",
     "2026-11-27 09:00:09,004 not ready [in /srv/app/serve.py:8]",
     "not ready", {"log": {"origin": {"file": {"name": "/srv/app/serve.py", "line": 8}}}}),
    ("%(asctime)s %(levelno)s %(message)s", "2026-11-27 09:00:09,004 40 x", "x", {"log": {"level": "error"}}),
    ("%(asctime)s %(levelname)s %(message)s", "2026-11-27 09:00:09,004 INFO ", "", {"log": {"level": "info"}}),
    ("%(asctime)s 100%% %(levelname)s %(message)s", "2026-11-27 09:00:09,004 100% INFO x", "x",
     {"log": {"level": "info"}}),
    ("{asctime} {levelname:<8} {name}: {message}", "2026-11-27 09:00:09,004 ERROR    root: x {y}", "x {y}",
     {"log": {"level": "error", "logger": "root"}}),
])
def test_attributes_go_to_their_fields(log_format: str, line: str, message: str, fields: dict) -> None:
    [record] = parse([line], log_format)
    assert record.message == message
    assert record.fields == fields
    assert stamp(record) == local_stamp(line.lstrip("["))


@pytest.mark.parametrize(("log_format", "line", "expected"), [
    # kserve's "%(asctime)s.%(msecs)03d" with a datefmt without fraction
    ("%(asctime)s.%(msecs)03d %(name)s %(message)s", "2026-11-27 09:00:09.007 kserve x", ".007Z"),
    ("%(asctime)s,%(msecs)d %(message)s", "2026-11-27 09:00:09,7 x", ".007Z"),
    ("%(created)f %(message)s", "1795770009.501000 x", "2026-11-27T09:00:09.501Z"),
    ("%(created).3f %(message)s", "1795770009.004 x", "2026-11-27T09:00:09.004Z"),
    ("%(asctime)s %(message)s", "2026-11-27T09:00:09.999+01:00 x", "2026-11-27T08:00:09.999Z"),
])
def test_time_attributes(log_format: str, line: str, expected: str) -> None:
    [record] = parse([line], log_format)
    assert record.message == "x"
    got = stamp(record)
    assert got.endswith(expected) if expected.startswith(".") else got == expected


def test_a_line_that_does_not_fit_is_plain_text_and_tracebacks_still_join() -> None:
    lines = [
        "2026-11-27 09:00:09,004 ERROR app.worker: request failed",
        "Traceback (most recent call last):",
        '  File "/srv/app.py", line 3, in <module>',
        "ValueError: bad input",
        "2026-11-27 09:00:10,000 - other - INFO - a different layout",
        "free text",
    ]
    failed, other, free = parse(lines, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    assert failed.line_count == 4
    assert failed.message == "request failed\n" + "\n".join(lines[1:4])
    assert failed.fields["log"] == {"level": "error", "logger": "app.worker"}
    assert failed.fields["error"]["type"] == "ValueError"
    assert other.message == "a different layout"  # read by the common layouts
    assert other.fields == {"log": {"level": "info", "logger": "other"}}
    assert free.message == "free text" and free.fields == {} and free.timestamp is None


def test_auto_format_uses_it_too_and_json_lines_stay_json() -> None:
    texts = ['{"message": "from json", "level": "info"}', "2026-11-27 09:00:09,004 INFO app: hi"]
    json_record, text_record = parse(texts, "%(asctime)s %(levelname)s %(name)s: %(message)s", fmt="auto")
    assert json_record.message == "from json"
    assert text_record.message == "hi" and text_record.fields["log"]["logger"] == "app"


@pytest.mark.parametrize(("log_format", "reason"), [
    ("%(asctime)s %(levelname)s", "has no %(message)s"),
    ("%(asctime)s %(user)s %(message)s", "unknown attribute 'user'"),
    ("%(asctime)s %(msg)s %(message)s", "cannot be read back"),
    ("%(asctime %(message)s", "does not start a %(attribute)s conversion"),
    ("%(asctime)s %(message)", "does not start a %(attribute)s conversion"),
    ("50% %(message)s", "does not start a %(attribute)s conversion"),
    ("{asctime} {message", "unbalanced brace"),
    ("{asctime} {nope} {message}", "unknown attribute 'nope'"),
    ("   ", "empty"),
    ("%(message)s | %(message)s", "twice"),
])
def test_unusable_format_strings_are_refused_naming_the_setting(log_format: str, reason: str) -> None:
    with pytest.raises(ValueError, match="^log_format ") as caught:
        validate_settings(ParseSettings(log_format=log_format))
    assert reason in str(caught.value)


def test_a_format_string_is_compiled_once() -> None:
    assert compile_layout("%(name)s %(message)s") is compile_layout("%(name)s %(message)s")
    validate_settings(ParseSettings(log_format="%(name)s %(message)s"))
    validate_settings(ParseSettings(log_format=None))


FORMATS = [
    "%(asctime)s %(levelname)s %(name)s: %(message)s",
    "%(asctime)s - %(name)s - %(levelname)s - %(message)s",
    "[%(asctime)s] %(levelname)s [%(name)s] %(message)s",
    "%(asctime)s %(name)-12s %(levelname)-8s %(message)s",
    "%(asctime)s.%(msecs)03d %(process)d %(threadName)s %(name)s %(levelname)s "
    "[%(filename)s:%(funcName)s():%(lineno)d] %(message)s",
    "%(created)f %(levelname)s %(processName)s/%(thread)d %(module)s %(message)s",
    "%(levelname)s:%(name)s:%(message)s",
    "{asctime} | {levelname:<8} | {name}:{funcName}:{lineno} - {message}",
]
LOGGER_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,10}(\.[a-z_][a-z0-9_]{0,10}){0,3}", fullmatch=True)
MESSAGES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=60)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FORMATS), LOGGER_NAMES, st.sampled_from([10, 20, 30, 40, 50]), MESSAGES,
       st.floats(min_value=1e8, max_value=4e9), st.integers(1, 99999), st.integers(1, 2**48),
       st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True))
def test_what_logging_writes_is_read_back(log_format: str, name: str, level: int, message: str,
                                          created: float, lineno: int, thread: int, function: str) -> None:
    """A record formatted by logging.Formatter itself, parsed by the compiled layout."""
    style = "{" if log_format.startswith("{") else "%"
    formatter = logging.Formatter(log_format, style=style)  # type: ignore[arg-type]
    record = logging.LogRecord(name, level, "/srv/app/handler.py", lineno, message, None, None, function)
    record.created = created
    record.msecs = int((created - int(created)) * 1000)
    record.thread, record.process, record.threadName = thread, 4127, "MainThread"
    line = formatter.format(record)
    [parsed] = parse([line], log_format)
    assert parsed.message == (message if message.strip() else "")  # a blank message: the driver's ""
    log = parsed.fields["log"]
    assert log["level"] == logging.getLevelName(level).lower()
    assert log.get("logger", name) == name
    if "%(lineno)d" in log_format or "{lineno}" in log_format:
        assert log["origin"]["file"]["line"] == lineno
    if "funcName" in log_format:
        assert log["origin"]["function"] == function
    if "%(process)d" in log_format:
        assert parsed.fields["process"]["pid"] == 4127
    if "%(thread)d" in log_format:
        assert parsed.fields["process"]["thread"]["id"] == thread
    if "asctime" in log_format:
        shown = formatter.formatTime(record) + ("" if "msecs" not in log_format else f".{int(record.msecs):03d}")
        written = datetime.strptime(shown[:19], "%Y-%m-%d %H:%M:%S").astimezone(timezone.utc)
        assert stamp(parsed) == written.strftime("%Y-%m-%dT%H:%M:%S") + f".{shown[20:23]}Z"
    elif "created" in log_format:
        shown = line.split(" ", 1)[0]  # %(created)f: six decimals
        second, fraction = shown.split(".")
        written = datetime.fromtimestamp(int(second), timezone.utc)
        assert stamp(parsed) == written.strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction[:3]}Z"


@given(st.sampled_from(FORMATS), st.text(max_size=120))
def test_read_never_raises(log_format: str, text: str) -> None:
    info = compile_layout(log_format).read(text)
    if info is not None:
        assert isinstance(info.message, str)
        assert undefined_fields(info.fields) == []


@pytest.mark.parametrize("log_format", [
    "%(threadName)s %(pathname)s %(message)s [%(lineno)d]",
    "%(name)s %(funcName)s %(message)s (%(filename)s) %(name)s",
    "%(asctime)s %(message)s - %(processName)s %(module)s!",
])
def test_a_long_line_that_almost_fits_is_refused_quickly(log_format: str) -> None:
    """Only the message takes any text, so refusing costs about linear time."""
    layout = compile_layout(log_format)
    started = time.perf_counter()
    for text in ("a " * 20000, "a: " * 20000, "2026-11-27 09:00:09,004 " + "x - y " * 10000):
        assert layout.read(text) is None
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("log_format", [
    "%(asctime)s %(lineno)d %(message)s",
    "%(asctime)s %(process)d %(message)s",
    "%(asctime)s %(thread)d %(message)s",
    "%(asctime)s %(message)s [%(lineno)d]",
])
def test_a_number_no_field_can_hold_makes_the_line_plain_text(log_format: str) -> None:
    # int() refuses a run of over 4300 digits: the line once went to the
    # driver's safety net as an "internal parser error", losing its fields.
    digits = "9" * 5000
    text = log_format.replace("%(asctime)s", "2024-05-01 12:00:00,130").replace("%(message)s", "hi")
    text = text.replace("%(lineno)d", digits).replace("%(process)d", digits).replace("%(thread)d", digits)
    [record] = parse([text], log_format)
    assert record.tags == () and record.error is None
    assert record.message == text
    assert compile_layout(log_format).read(text) is None


def test_zero_padded_numbers_are_still_read() -> None:
    [record] = parse(["2024-05-01 12:00:00,130 " + "0" * 30 + "42 hi"], "%(asctime)s %(lineno)030d %(message)s")
    assert record.fields["log"]["origin"]["file"]["line"] == 42 and record.message == "hi"
