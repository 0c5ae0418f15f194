"""Plain text lines: what is read from the start of the line, and what is not."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.parsing import parse_text
from agent.parsing.parse_text import parse_plain


def local(*args: int) -> float:
    return datetime(*args).timestamp()


UTC_NOON = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(("text", "timestamp", "fields"), [
    # logging.basicConfig(): LEVEL:logger:message
    ("ERROR:inference.worker:request failed", None, {"log": {"level": "error", "logger": "inference.worker"}}),
    ("WARNING:root:disk almost full: 91%", None, {"log": {"level": "warning", "logger": "root"}}),
    ("CRITICAL:app:", None, {"log": {"level": "critical", "logger": "app"}}),
    # uvicorn: LEVEL: then spaces
    ('INFO:     127.0.0.1:51234 - "POST /v1/predict HTTP/1.1" 200 OK', None, {"log": {"level": "info"}}),
    # asctime, the cookbook " - name - LEVEL - " format
    ("2024-05-01 12:00:00,130 - app.worker - ERROR - boom", local(2024, 5, 1, 12, 0, 0, 130000),
     {"log": {"level": "error", "logger": "app.worker"}}),
    ("2024-05-01 12:00:00.130 INFO started", local(2024, 5, 1, 12, 0, 0, 130000), {"log": {"level": "info"}}),
    ("2024-05-01 12:00:00,130 [DEBUG] app: x", local(2024, 5, 1, 12, 0, 0, 130000), {"log": {"level": "debug"}}),
    ("2024-05-01 12:00:00 WARNING:app:x", local(2024, 5, 1, 12, 0, 0), {"log": {"level": "warning"}}),
    # ISO 8601 with a zone
    ("2024-05-01T12:00:00Z INFO ready", UTC_NOON, {"log": {"level": "info"}}),
    ("2024-05-01T14:00:00.250+02:00 worker up", UTC_NOON + 0.25, {}),
    ("2024-05-01T07:00:00-0500 [ERROR] x", UTC_NOON, {"log": {"level": "error"}}),
    # gunicorn, and torchserve's "[INFO ]"
    ("[2024-05-01 12:00:05 +0000] [7] [INFO] Booting worker with pid: 7", UTC_NOON + 5, {"log": {"level": "info"}}),
    ("2024-05-01T12:00:00,000 [INFO ] W-9000-resnet stdout", local(2024, 5, 1, 12), {"log": {"level": "info"}}),
    # nothing to read
    ("just some words", None, {}),
    ("", None, {}),
    ("   indented", None, {}),
    ("Error: lower-case words are not levels", None, {}),
    ("INFORMATION:x:y", None, {}),
    ("2024-05-01 12:00:00,130 informational INFOS only", local(2024, 5, 1, 12, 0, 0, 130000), {}),
    ("2024-05-01 is a date, not a timestamp", None, {}),
])
def test_prefixes(text: str, timestamp: float | None, fields: dict) -> None:
    got_timestamp, got_fields = parse_plain(text)
    assert got_fields == fields
    if timestamp is None:
        assert got_timestamp is None
    else:
        assert got_timestamp == pytest.approx(timestamp, abs=1e-6)


def test_first_level_word_wins_and_the_search_is_bounded() -> None:
    assert parse_plain("2024-05-01 12:00:00,000 INFO retry after ERROR")[1] == {"log": {"level": "info"}}
    far = "2024-05-01 12:00:00,000 " + "x" * 100 + " ERROR late"
    assert parse_plain(far)[1] == {}
    # A level word cut at the window's edge is not a level.
    edge = "2024-05-01 12:00:00,000" + " " * 76 + " INFOS"
    assert parse_plain(edge)[1] == {}


def test_invalid_date_in_the_right_shape_has_no_timestamp_but_keeps_the_level() -> None:
    assert parse_plain("2024-13-45 25:61:00,000 ERROR x") == (None, {"log": {"level": "error"}})


@given(st.text(max_size=200))
def test_never_raises(text: str) -> None:
    timestamp, fields = parse_plain(text)
    assert timestamp is None or isinstance(timestamp, float)
    assert isinstance(fields, dict)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
       st.sampled_from([",", "."]), st.integers(0, 999))
def test_asctime_round_trip(moment: datetime, separator: str, millis: int) -> None:
    moment = moment.replace(microsecond=millis * 1000)
    text = moment.strftime("%Y-%m-%d %H:%M:%S") + f"{separator}{millis:03d} - app - INFO - x"
    expected = moment.timestamp()
    # A naive time that does not exist locally (a DST gap) has no single answer.
    if datetime.fromtimestamp(expected).replace(microsecond=moment.microsecond) != moment:
        return
    assert parse_plain(text)[0] == pytest.approx(expected, abs=1e-6)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
       st.integers(-14 * 60, 14 * 60))
def test_iso_with_zone_round_trip(moment: datetime, offset_minutes: int) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    aware = moment.replace(tzinfo=zone)
    assert parse_plain(aware.isoformat() + " INFO x")[0] == pytest.approx(aware.timestamp(), abs=1e-6)


# -- the common logging layouts --------------------------------------------------

STAMP = "2024-05-01 12:00:00,130"


@pytest.mark.parametrize(("rest", "log"), [
    # %(asctime)s - %(name)s - %(levelname)s - %(message)s (the cookbook)
    (" - inference.server - INFO - ready", {"level": "info", "logger": "inference.server"}),
    (" - myapp - WARNING - careful", {"level": "warning", "logger": "myapp"}),
    # %(asctime)s - %(levelname)s - %(name)s - %(message)s
    (" - ERROR - app.worker - boom", {"level": "error", "logger": "app.worker"}),
    # %(asctime)s %(levelname)s %(name)s %(message)s: a bare logger must look like one
    (" INFO app.worker request served", {"level": "info", "logger": "app.worker"}),
    (" INFO root hello", {"level": "info", "logger": "root"}),
    (" DEBUG __main__ starting", {"level": "debug", "logger": "__main__"}),
    # %(asctime)s [%(levelname)s] %(name)s: %(message)s
    (" [INFO] mlflow.models: Selected backend", {"level": "info", "logger": "mlflow.models"}),
    (" INFO root: x", {"level": "info", "logger": "root"}),
    # %(asctime)s %(levelname)s [%(name)s] %(message)s, also with the time in brackets
    (" ERROR [uvicorn] started", {"level": "error", "logger": "uvicorn"}),
    # %(asctime)s %(levelname)-8s %(name)s %(message)s
    (" INFO     app.api ready", {"level": "info", "logger": "app.api"}),
    # %(asctime)s %(name)-12s %(levelname)-8s %(message)s (the cookbook's padded layout)
    (" myapp        INFO     hello", {"level": "info", "logger": "myapp"}),
    (" app.db INFO hello", {"level": "info", "logger": "app.db"}),
    # %(asctime)s [%(name)s] %(levelname)s: %(message)s
    (" [worker] WARNING: slow batch", {"level": "warning", "logger": "worker"}),
    # loguru's default
    (" | INFO     | app.main:run:42 - hello",
     {"level": "info", "logger": "app.main", "origin": {"function": "run", "file": {"line": 42}}}),
])
def test_common_layouts_give_the_logger(rest: str, log: dict) -> None:
    text = STAMP + rest
    timestamp, fields = parse_plain(text)
    assert fields == {"log": log}
    assert timestamp == pytest.approx(local(2024, 5, 1, 12, 0, 0, 130000), abs=1e-6)


def test_the_time_in_brackets() -> None:
    assert parse_plain(f"[{STAMP}] INFO [app.api] ready")[1] == {"log": {"level": "info", "logger": "app.api"}}


@pytest.mark.parametrize("rest", [
    " INFO started worker 3",            # a word followed by text is not a logger
    " INFO Note: the cache is cold",     # nor a capitalised word with a colon
    " INFO loading: model:1",
    " INFO model.pt loaded",              # a file name
    " INFO api.example.com answered",     # a host name
    " INFO e.g. this",
    " INFO v1.2 released",
    " Got ERROR from server",             # a word before the level, unpadded
    " - ERROR - boom - more",             # " - LEVEL - text - ": the text is not a dotted name
    " [7] [INFO] Booting worker",         # gunicorn's pid is not a logger
])
def test_ordinary_text_is_not_a_logger(rest: str) -> None:
    fields = parse_plain(STAMP + rest)[1]
    assert "logger" not in fields.get("log", {})
    assert fields["log"]["level"] in ("info", "error")


def test_a_recognised_layout_leaves_the_message_without_its_prefix() -> None:
    """Issue 8: the message kept the whole prefix of a common layout."""
    from agent.parsing import ParseSettings
    from agent.parsing.parse_text import PlainFormat

    plain = PlainFormat(ParseSettings(format="plain"))
    info = plain.head(STAMP + " - app - INFO - ready")
    assert info.message == "ready" and info.fields == {"log": {"level": "info", "logger": "app"}}
    assert plain.head("ERROR:app.worker:request failed").message == "request failed"
    # Only a timestamp and a level found: a guess, so the whole line stays.
    assert plain.head(STAMP + " INFO started worker 3").message is None
    assert plain.head("nothing to read here").message is None


# A logger named "z" right after the time reads as the UTC zone designator.
NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}(\.[a-z_][a-z0-9_]{0,8}){0,3}", fullmatch=True).filter(
    lambda name: name != "z")
LEVELS = st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
LAYOUTS = st.sampled_from([
    "{t} - {n} - {l} - {m}", "[{t}] {l} [{n}] {m}", "{t} {l} [{n}] {m}",
    "{t} [{l}] [{n}] {m}", "{t} [{n}] {l}: {m}", "{t} {n:<15} {l:<8} {m}",
])


@given(LAYOUTS, NAMES, LEVELS, st.text(max_size=40))
def test_layouts_with_structure_take_any_logger_name(layout: str, name: str, level: str, message: str) -> None:
    text = layout.format(t=STAMP, n=name, l=level, m=message)
    if layout.startswith("{t} {n:<15}") and len(name) >= 14:
        return  # no padding left to tell the name from a word
    assert parse_plain(text)[1] == {"log": {"level": level.lower(), "logger": name}}


DOTTED = st.from_regex(r"[a-z_][a-z0-9_]{0,8}(\.[a-z_][a-z0-9_]{0,8}){1,3}", fullmatch=True).filter(
    lambda name: name.rsplit(".", 1)[1] not in parse_text._NOT_A_LOGGER_END)
BARE_LAYOUTS = st.sampled_from(["{t} - {l} - {n} - {m}", "{t} {l} {n} {m}", "{t} [{l}] {n}: {m}",
                                "{t} {n} {l} {m}", "{t} {l:<8} {n} {m}"])


@given(BARE_LAYOUTS, DOTTED | st.sampled_from(["root", "__main__"]), LEVELS, st.text(max_size=40))
def test_bare_layouts_take_module_paths(layout: str, name: str, level: str, message: str) -> None:
    text = layout.format(t=STAMP, n=name, l=level, m=message)
    assert parse_plain(text)[1] == {"log": {"level": level.lower(), "logger": name}}
