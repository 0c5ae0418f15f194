"""Coercers: a JSON value -> the typed value of one schema field, or ``NO``.

What the rules of ``json_keys`` (the built-in catalogue and the user's
``--map-field``) use to turn a key's value into a field of a given type:
``keyword``, ``text``, ``long``, ``count``, ``double``, ``boolean``, ``ip``,
``flattened``, ``any_value``, ``timestamp`` and ``nanos`` (durations).

Guarantees:

- Deterministic and total: a coercer never raises; it returns the typed
  value, or ``NO`` when the value does not fit the target (the wrong type,
  out of range, an unknown unit).

Durations: an integer is multiplied exactly; a float is read from its
shortest repr (what the log line wrote: 3.2 ms is 3200000 ns, not
3200000.0000000005) with ``decimal`` and rounded half to even to whole
nanoseconds; a string may be a number with an optional unit (``"12.5ms"``,
``"3 s"``, units ns, us, µs, ms, s) and its own unit wins over the key's.
Negative durations and ones beyond a long stay in extra.
"""

from __future__ import annotations

import ipaddress
import math
import re
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Callable

from agent.parsing import timestamps
from agent.parsing.json_fit import capped
from agent.schema import FLATTENED_DEPTH_LIMIT

NO: Any = object()  # what a coercer returns for a value that does not fit

_MAX_LONG = 1 << 63
_FAST_BELOW = float(1 << 40)  # ns (18 minutes): float products below this are exact to 2**-12
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "sec": 1_000_000_000, "seconds": 1_000_000_000}
_NUMBER = re.compile(r"\s*(-?(?:\d{1,20}(?:\.\d{0,20})?|\.\d{1,20})(?:[eE][+-]?\d{1,3})?)\s*"
                     r"(ns|us|µs|μs|ms|s)?\s*\Z")
_INTEGER = re.compile(r"\s*(-?\d{1,19})\s*\Z")


def keyword(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return value if value else NO
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if math.isfinite(value) else NO
    return NO


def long(value: Any) -> Any:
    kind = type(value)
    if kind is int:
        number = value
    elif kind is float:
        if not value.is_integer():  # (False for inf and nan too)
            return NO
        number = int(value)
    elif kind is str:
        match = _INTEGER.match(value)
        if match is None:
            return NO
        number = int(match.group(1))
    else:
        return NO
    return number if -_MAX_LONG <= number < _MAX_LONG else NO


def count(value: Any) -> Any:
    """A non-negative long (a batch size, a token count, a pid, a line number)."""
    if type(value) is int and 0 <= value < _MAX_LONG:  # the usual value: no call
        return value
    number = long(value)
    return number if number is not NO and number >= 0 else NO


def double(value: Any) -> Any:
    kind = type(value)
    if kind is int:
        return value if -_MAX_LONG <= value < _MAX_LONG else NO
    if kind is float:
        return value if math.isfinite(value) else NO
    if kind is str:
        match = _NUMBER.match(value)
        if match is None or match.group(2):
            return NO
        number = float(match.group(1))
        return number if math.isfinite(number) else NO
    return NO


def boolean(value: Any) -> Any:
    if type(value) is bool:
        return value
    if type(value) is str:
        text = value.strip().lower()
        if text in ("true", "false"):
            return text == "true"
    return NO


def ip(value: Any) -> Any:
    if type(value) is not str or "%" in value or len(value) > 45:
        return NO
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return NO
    return value


def flattened(value: Any) -> Any:
    """A flattened field takes an object: a bare value or array goes under "value".
    Objects nested deeper than the field accepts become JSON text (``json_fit.capped``)."""
    if value is None:
        return NO
    if type(value) is dict:
        return capped(value, FLATTENED_DEPTH_LIMIT)
    return {"value": capped(value, FLATTENED_DEPTH_LIMIT - 1)}


def any_value(value: Any) -> Any:
    """Inside a flattened field, one level down: any JSON value but null."""
    return NO if value is None else capped(value, FLATTENED_DEPTH_LIMIT - 1)


def inside_flattened(levels: int) -> Callable[[Any], Any]:
    """``any_value`` for a name ``levels`` keys below a flattened field
    (``model.prediction.a.b``: 2)."""
    if levels <= 1:
        return any_value

    def below(value: Any) -> Any:
        return NO if value is None else capped(value, FLATTENED_DEPTH_LIMIT - levels)
    return below


def text(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return value
    return keyword(value)


def timestamp(value: Any) -> Any:
    stamp = timestamps.parse_value(value)
    return NO if stamp is None else stamp


def nanos(factor: int, unit_required: bool = False) -> Callable[[Any], Any]:
    """Coercer of a duration in units of ``factor`` ns into whole nanoseconds."""

    def coerce(value: Any) -> Any:
        kind = type(value)
        if kind is str:
            match = _NUMBER.match(value)
            if match is None:
                return NO
            unit = match.group(2)
            if unit is None and unit_required:
                return NO
            return _decimal_nanos(match.group(1), _UNITS[unit] if unit else factor)
        if unit_required:
            return NO
        if kind is int:
            number = value * factor
        elif kind is float:
            product = value * factor
            if 0.0 <= product < _FAST_BELOW:  # (False for nan and inf)
                number = round(product)
                # The float product is within 4e-4 of the exact decimal one
                # (ulp < 2**-12 below 2**40): away from a .5 boundary both
                # round alike; near one, decimal decides.
                if -0.499 < product - number < 0.499:
                    return number
            if not math.isfinite(value):
                return NO
            return _decimal_nanos(repr(value), factor)
        else:
            return NO
        return number if 0 <= number < _MAX_LONG else NO

    return coerce


def _decimal_nanos(number: str, factor: int) -> Any:
    exact = Decimal(number) * factor
    if not 0 <= exact < _MAX_LONG:
        return NO
    return int(exact.to_integral_value(ROUND_HALF_EVEN))
