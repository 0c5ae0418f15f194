"""Timestamp helpers: ISO 8601 forms, epoch units, and the fast path's agreement."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.parsing import timestamps

NOON = datetime(2024, 5, 1, 12, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T12:00:00Z", NOON),
    ("2024-05-01t12:00:00z", NOON),
    ("2024-05-01 12:00:00+00:00", NOON),
    ("2024-05-01T12:00:00.123456789Z", NOON + 0.123456),
    ("2024-05-01T12:00:00,5Z", NOON + 0.5),
    ("2024-05-01T13:00:00+01", NOON),
    ("2024-05-01T11:30:00-0030", NOON),
    ("2024-05-01 12:00:00 +0000", NOON),
    ("2024-05-01T11:59:60Z", NOON),  # a leap second lands on the next minute
    ("1714564800", NOON),
    ("1714564800000", NOON),
    ("1714564800.5", NOON + 0.5),
])
def test_parse_string(text: str, expected: float) -> None:
    assert timestamps.parse_string(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text", [
    "", "2024-05-01", "2024-05-01T12:00Z", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z",
    "2024-05-01T24:00:00Z", "2024-05-01T12:00:00+25:00", "2024-05-01T12:00:00 UTC", "tomorrow",
    "20240501T120000Z", "1e10", "-",
])
def test_parse_string_rejects(text: str) -> None:
    assert timestamps.parse_string(text) is None


def test_leap_day_is_valid_in_leap_years() -> None:
    assert timestamps.parse_string("2024-02-29T00:00:00Z") == datetime(2024, 2, 29, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(("number", "expected"), [
    (NOON, NOON), (NOON * 1e3, NOON), (NOON * 1e6, NOON), (NOON * 1e9, NOON), (0, 0.0), (-5.5, -5.5),
])
def test_epoch_units_by_magnitude(number: float, expected: float) -> None:
    assert timestamps.parse_value(number) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, None, [NOON], {"t": NOON}, 10**400])
def test_parse_value_rejects(value: object) -> None:
    assert timestamps.parse_value(value) is None


def test_match_prefix_reports_where_the_timestamp_ends() -> None:
    text = "[2024-05-01 12:00:05 +0000] [7] [INFO] Booting"
    value, end = timestamps.match_prefix(text)
    assert value == NOON + 5 and text[end:] == " [7] [INFO] Booting"
    assert timestamps.match_prefix("no timestamp here") == (None, 0)


@given(st.text(max_size=60))
def test_never_raise(text: str) -> None:
    value = timestamps.parse_string(text)
    assert value is None or math.isfinite(value)
    value, end = timestamps.match_prefix(text)
    assert 0 <= end <= len(text)


ZONES = st.none() | st.sampled_from(["Z", "+00:00", "+0530", "-08:00", "+14", "-0000"])


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.sampled_from(["T", " "]), st.sampled_from([".", ","]), st.integers(0, 9), ZONES)
def test_fast_path_agrees_with_the_arithmetic(moment: datetime, sep: str, dot: str, digits: int,
                                              zone: str | None) -> None:
    """fromisoformat (3.11+) and the regex + arithmetic path give the same epoch."""
    text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}{sep}"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
    if digits:
        text += dot + f"{moment.microsecond:06d}{'987'}"[:digits]
    text += zone or ""
    match = timestamps._ISO_FULL.fullmatch(text)
    assert match is not None
    slow = timestamps._from_groups(match.groups())
    fast = timestamps.parse_string(text)
    if zone is None and slow is None:
        return  # outside what the host's mktime can represent
    assert fast == pytest.approx(slow, abs=1e-4)  # float spacing near year 9999 is ~30µs
    if zone is not None:
        hours, minutes = (0, 0) if zone == "Z" else (int(zone[1:3]), int(zone[-2:]) if len(zone) > 3 else 0)
        sign = -1 if zone.startswith("-") else 1
        aware = moment.replace(microsecond=0, tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
        fraction = float("0." + text.split(dot)[1][:digits]) if digits else 0.0
        assert slow == pytest.approx(aware.timestamp() + fraction, abs=1e-4)


# -- out-of-range epochs: None, never a time later stages cannot write ----------

@pytest.mark.parametrize("value", [
    -90_000_000_000_000, -99_999_999_999_999, -62_135_596_800_001, "-90000000000000", -9e13,
])
def test_a_negative_epoch_in_milliseconds_before_the_year_1_is_none(value: object) -> None:
    assert timestamps.parse_value(value) is None


def test_the_first_millisecond_of_the_year_1_is_kept() -> None:
    assert timestamps.parse_value(-62_135_596_800_000) == timestamps.FIRST_EPOCH


@given(st.integers(min_value=-(10 ** 30), max_value=10 ** 30)
       | st.floats(allow_nan=True, allow_infinity=True)
       | st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str))
def test_any_epoch_gives_none_or_a_time_within_the_years_1_to_9999(value: object) -> None:
    epoch = timestamps.parse_value(value)
    assert epoch is None or timestamps.FIRST_EPOCH <= epoch <= timestamps.LAST_EPOCH
