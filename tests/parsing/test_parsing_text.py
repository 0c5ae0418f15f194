"""Plain text lines: what is read from the start of the line, and what is not."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
     {"log": {"level": "error"}}),
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
