"""Timestamps found in log lines, turned into epoch seconds.

Two entry points, both total (they return None instead of raising):

- ``parse_value(value)`` for a value taken from a JSON object: an ISO 8601 /
  RFC 3339 string (``T`` or space separator, optional ``Z`` or ``+hh:mm`` /
  ``+hhmm`` zone, ``.`` or ``,`` before the fraction, as Python's
  ``%(asctime)s`` writes it), or an epoch number in seconds, milliseconds,
  microseconds or nanoseconds (told apart by magnitude, see ``from_epoch``),
  or a string holding such a number.
- ``match_prefix(text)`` for plain text: the same ISO forms at the very start
  of a line (optionally inside ``[...]``), returning the epoch and where the
  timestamp ends so the caller can look for a level after it.

A time without a zone is the local time of the host running the agent, which
is what Python's logging writes by default. Every value returned is finite and
within what ``datetime`` can represent (years 1 - 9999), so later stages can
format it without checking.

Precision: a returned epoch is the written time rounded once or twice to a
float (fractions are divided by integer powers of ten, epoch integers by
integers), so it is within an ulp of it: under 0.25 µs between 1833 and 2106.
``agent.enrich`` relies on that to write the exact millisecond.

Why not ``datetime.fromisoformat``: on 3.10 it rejects ``Z`` and commas, and a
regex plus integer arithmetic is several times faster. The epoch of the
``YYYY-MM-DD HH:MM`` part is cached, because consecutive lines almost always
share it; only seconds and the fraction are converted per line. Caching a
local-time minute is safe across DST changes, which happen on whole minutes.
"""

from __future__ import annotations

import math
import re
import sys
import time
from datetime import datetime
from functools import lru_cache

# One pattern, two uses: fullmatch on JSON strings, match on text prefixes.
# Groups: year, month, day, hour, minute, second, fraction, zone.
# A "Z" is a zone only as a word of its own: in "12:00:00 z.worker INFO" it
# begins a logger name.
_ISO = (
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?"
    r"(?: ?([Zz](?![\w.])|[+-]\d\d(?::?\d\d)?))?"
)
# ASCII: a line starting with Arabic-Indic digits is not a timestamp.
_ISO_FULL = re.compile(_ISO, re.ASCII)
_ISO_PREFIX = re.compile(r"\[?(" + _ISO + r")\]?", re.ASCII)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?", re.ASCII)

_FAST_ISO = sys.version_info >= (3, 11)
_fromisoformat = datetime.fromisoformat

_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# Dividing by a power of ten (not multiplying by 1e-3, which is inexact)
# rounds the fraction once, so ",004" stays as close to .004 as a float can.
_FRACTION_DIVISOR = (1, 10, 100, 1000, 10**4, 10**5, 10**6, 10**7, 10**8, 10**9)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@lru_cache(maxsize=1024)
def _minute_base(year: int, month: int, day: int, hour: int, minute: int,
                 zone: str | None) -> float | None:
    """Epoch of ``YYYY-MM-DD HH:MM:00`` in ``zone`` (None = host local time)."""
    if not (1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month] and hour <= 23 and minute <= 59):
        return None
    if month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return None
    if zone is None:
        try:
            return time.mktime((year, month, day, hour, minute, 0, 0, 0, -1))
        except (OverflowError, ValueError, OSError):
            return None
    offset = 0
    if zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "")
        zone_hours = int(digits[:2])
        zone_minutes = int(digits[2:4]) if len(digits) >= 4 else 0
        if zone_hours > 23 or zone_minutes > 59:
            return None
        offset = (zone_hours * 3600 + zone_minutes * 60) * (-1 if zone[0] == "-" else 1)
    days = _days_from_civil(year, month, day)
    return float(days * 86400 + hour * 3600 + minute * 60 - offset)


# What datetime (and so every later stage) can represent, to the millisecond:
# 0001-01-01T00:00:00.000 .. 9999-12-31T23:59:59.999.
FIRST_EPOCH = -62135596800.0
LAST_EPOCH = 253402300799.999


def in_range(value: float) -> float | None:
    """``value`` if it is an epoch every later stage can format, else None
    (NaN included). An epoch a parser computes itself passes through here."""
    return value if FIRST_EPOCH <= value <= LAST_EPOCH else None


def _from_groups(groups: tuple[str, ...]) -> float | None:
    year, month, day, hour, minute, second, fraction, zone = groups
    base = _minute_base(int(year), int(month), int(day), int(hour), int(minute), zone)
    seconds = int(second)
    if base is None or seconds > 60:  # 60: a leap second, kept as the next minute's :00
        return None
    if fraction:
        return in_range(base + seconds + int(fraction) / _FRACTION_DIVISOR[len(fraction)])
    return in_range(base + seconds)


def from_epoch(number: float | int) -> float | None:
    """Epoch seconds from a number in s, ms, µs or ns, told apart by magnitude.

    1e11 seconds is the year 5138 while 1e11 milliseconds is 1973, so any
    value at or above 1e11 cannot be seconds of a real log line; the same
    reasoning separates the larger units.
    """
    if not math.isfinite(number):
        return None
    magnitude = abs(number)
    # Integer divisors: an int divided by an int is rounded once, so a
    # nanosecond count is not first rounded to a float of 256 ns steps.
    if magnitude >= 1e17:
        return in_range(number / 1_000_000_000)
    if magnitude >= 1e14:
        return in_range(number / 1_000_000)
    if magnitude >= 1e11:
        # Checked too: below 1e14 ms is in range only when positive (-9e13 ms
        # is before the year 1, and formatting it would raise).
        return in_range(number / 1000)
    return in_range(float(number))  # -9e10 s is before the year 1


def parse_string(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 string or a numeric string, else None."""
    # Fast path: from 3.11 the C fromisoformat reads Z, commas and any
    # fraction length, in a seventh of the regex's time. The shape check keeps
    # it to date-times (it would also take "20240501" or a bare date).
    if _FAST_ISO and len(text) >= 19 and text[4] == "-" and text[10] in "Tt ":
        try:
            return in_range(_fromisoformat(text).timestamp())
        except (ValueError, OverflowError, OSError):
            pass  # a leap second, a space before the zone, 3.10: the regex decides
    match = _ISO_FULL.fullmatch(text)
    if match is not None:
        return _from_groups(match.groups())
    if 0 < len(text) < 40 and _NUMBER.fullmatch(text):
        return from_epoch(float(text))
    return None


def parse_value(value: object) -> float | None:
    """Epoch seconds of a JSON value (string or number), else None."""
    if type(value) is str:
        # parse_string's fast path, repeated here to save a call per JSON line.
        if _FAST_ISO and len(value) >= 19 and value[4] == "-" and value[10] in "Tt ":
            try:
                epoch = _fromisoformat(value).timestamp()
            except (ValueError, OverflowError, OSError):
                return parse_string(value)
            return epoch if FIRST_EPOCH <= epoch <= LAST_EPOCH else None
        return parse_string(value)
    if isinstance(value, str):
        return parse_string(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return from_epoch(value)
        except OverflowError:  # an int beyond any float
            return None
    return None


def match_prefix(text: str) -> tuple[float | None, int]:
    """A timestamp at the start of ``text``: (epoch or None, index after it).

    Returns ``(None, 0)`` when the text does not start with one. An invalid
    date in the right shape (month 13) also gives None, but still reports where
    it ends, so the caller can look for a level after it.
    """
    if not text or not (text[0].isdigit() or text[0] == "["):
        return None, 0
    match = _ISO_PREFIX.match(text)
    if match is None:
        return None, 0
    if _FAST_ISO:
        try:
            return in_range(_fromisoformat(match.group(1)).timestamp()), match.end()
        except (ValueError, OverflowError, OSError):
            pass  # a leap second, an out-of-range date: the arithmetic decides
    return _from_groups(match.groups()[1:]), match.end()
