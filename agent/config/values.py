"""Converters from raw setting values (flag text, env text, YAML scalars) to
typed values. Each raises ValueError with a short reason; the resolver adds
where the value came from (flag, variable or file key)."""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, Callable
from urllib.parse import urlsplit

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib|pb|pib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
               "gb": 1000**3, "gib": 1024**3, "tb": 1000**4, "tib": 1024**4, "pb": 1000**5, "pib": 1024**5}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# Upper bounds. A duration is waited for, added to clocks and handed to
# timers: past a few centuries it overflows them (time_t, threading's
# TIMEOUT_MAX, about 292 years), so ten years is the most any setting takes
# (a TTL of ten years already means "keep"). A size is counted in 64-bit
# integers (the status report, the spool's headers): one pebibyte is far
# beyond any line, request or disk and far below 2**63.
MAX_DURATION = 3650 * 86400.0
MAX_DURATION_TEXT = "3650d (10 years)"
MAX_SIZE = 1024 ** 5
MAX_SIZE_TEXT = "1PiB"


def duration(raw: Any) -> float:
    """'250ms', '5s', '2m', '1h', '7d' or a number of seconds; finite, at most MAX_DURATION."""
    if isinstance(raw, bool):
        raise ValueError("expected a duration such as 5s, 250ms, 2m, 1h or 7d")
    if isinstance(raw, (int, float)):
        value = float(raw) if not isinstance(raw, int) or abs(raw) < 2 ** 63 else math.inf
        if math.isnan(value):
            raise ValueError(f"{raw!r} is not a duration (use e.g. 5s, 250ms, 2m, 1h, 7d)")
    else:
        match = _DURATION.match(str(raw))
        if not match:
            raise ValueError(f"{raw!r} is not a duration (use e.g. 5s, 250ms, 2m, 1h, 7d)")
        value = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if value < 0:
        raise ValueError("a duration cannot be negative")
    if value > MAX_DURATION:
        raise ValueError(f"{raw!r} is too long: a duration is at most {MAX_DURATION_TEXT}")
    return value


def positive_duration(raw: Any) -> float:
    value = duration(raw)
    if value <= 0:
        raise ValueError("must be longer than zero")
    return value


def whole_seconds(raw: Any) -> int:
    """A duration of whole seconds, at least 1 (what a cluster or an
    epoch-aligned window keeps: anything else would be rounded silently)."""
    seconds = duration(raw)
    if seconds < 1 or seconds != int(seconds):
        raise ValueError("a whole number of seconds, at least 1s (e.g. 30d, 12h, 5m, 45s)")
    return int(seconds)


def optional_duration(raw: Any) -> float | None:
    """A positive duration, or 'off' (None). YAML reads an unquoted ``off``
    as false: that is 'off' too."""
    if raw is False or isinstance(raw, str) and raw.strip().lower() in {"off", "none", "false", "no"}:
        return None
    return positive_duration(raw)


def size(raw: Any) -> int:
    """'10MiB', '5MB', '512kb' or a number of bytes; at most MAX_SIZE."""
    if isinstance(raw, bool):
        raise ValueError("expected a size such as 512KiB or 10MB")
    if isinstance(raw, (int, float)):
        amount = raw
    else:
        match = _SIZE.match(str(raw))
        if not match:
            raise ValueError(f"{raw!r} is not a size (use e.g. 1048576, 512KiB, 10MB, 1GiB)")
        unit = match.group(2).lower() if match.group(2) else None
        amount = float(match.group(1)) * _SIZE_UNITS[unit]
    if isinstance(amount, float) and math.isnan(amount):
        raise ValueError(f"{raw!r} is not a size (use e.g. 1048576, 512KiB, 10MB, 1GiB)")
    if amount < 1:
        raise ValueError("a size must be positive")
    if amount > MAX_SIZE:
        raise ValueError(f"{raw!r} is too large: a size is at most {MAX_SIZE_TEXT}")
    return int(amount)


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not a boolean (use true or false)")


# The converters that read numbers (the plain ones are added at the end of
# the module, ``integer`` adds each one it makes): the config file's YAML
# numbers go to them as numbers (agent.config.yamlfile).
NUMERIC: set[Callable[[Any], Any]] = set()


def integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    def convert(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError("expected a whole number")
        try:
            value = int(str(raw).strip()) if not isinstance(raw, int) else raw
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"{value} is out of range: must be {bound}")
        return value
    NUMERIC.add(convert)
    return convert


def retries(raw: Any) -> int | None:
    """A retry bound, or 'unlimited' (None)."""
    if raw is None or str(raw).strip().lower() in {"unlimited", "-1", "forever"}:
        return None
    return integer(0)(raw)


def choice(*allowed: str) -> Callable[[Any], str]:
    def convert(raw: Any) -> str:
        text = str(raw).strip().lower()
        if text not in allowed:
            raise ValueError(f"{raw!r} is not one of: {', '.join(allowed)}{_did_you_mean(text, allowed)}")
        return text
    convert.allowed = allowed  # type: ignore[attr-defined]  # (the YAML reader takes an unquoted off for "off")
    return convert


def _did_you_mean(text: str, allowed: Any) -> str:
    close = difflib.get_close_matches(text, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def text(raw: Any) -> str:
    value = str(raw)
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def regex(raw: Any) -> str:
    value = text(raw)
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"invalid regular expression: {error}") from None
    return value


def url(raw: Any) -> str:
    """An Elasticsearch node URL, as the client will take it: http:// with a
    port, or https:// (port 443 when none); an optional path prefix. User and
    password in the URL are refused: they would show in ``ps`` and in
    ``check config`` (use --username/--password-file or --api-key-file).
    No message shows what comes before the URL's last ``@``: a password may
    hold ``/``, ``#``, ``?`` or ``@``, which end the host part early."""
    value = text(raw).strip().rstrip("/")
    if "@" in value:
        scheme = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value)
        host = value.rpartition("@")[2].split("/", 1)[0]
        raise ValueError(f"'{scheme.group(0) if scheme else ''}***@{host}': credentials do not belong in the "
                         "URL (use --username with --password-file, or --api-key-file)")
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{raw!r} is not an http:// or https:// URL")
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{raw!r}: the port must be a number between 1 and 65535") from None
    if not parts.hostname:
        raise ValueError(f"{raw!r} names no host")
    _check_host(parts.hostname, raw)
    if port is None and parts.scheme == "http":
        raise ValueError(f"{raw!r} needs a port, e.g. {value}:9200 (only https:// defaults to 443)")
    if port == 0:
        raise ValueError(f"{raw!r}: the port must be a number between 1 and 65535")
    if parts.query or parts.fragment:
        raise ValueError(f"{raw!r}: a node URL has no query string or fragment")
    return value


def _check_host(host: str, raw: Any) -> None:
    """A host name the HTTP client can connect to: an IP address, or names
    of 1 to 63 characters (letters, digits, '-', '_') joined by dots."""
    if ":" in host:  # an IPv6 address in brackets: urlsplit has checked it
        return
    if not re.fullmatch(r"[\w.-]+", host):
        raise ValueError(f"{raw!r}: {host!r} is not a host name (letters, digits, '-', '_' and dots)")
    try:
        encoded = host.encode("idna")  # what the client does; refuses empty and over-long parts
    except UnicodeError:
        encoded = b""
    if not encoded or len(encoded) > 253:
        raise ValueError(f"{raw!r}: {host!r} is not a host name (each dot-separated part has 1 to 63 "
                         "characters, the whole at most 253)")


_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def index_name(raw: Any) -> str:
    """An Elasticsearch index or data stream name (lower case, no spaces)."""
    value = text(raw).strip()
    if not _NAME.match(value) or len(value.encode()) > 255:
        raise ValueError(f"{raw!r} is not a valid index name (lower case letters, digits, '.', '_', '-'; "
                         "must not start with '_', '-' or '+')")
    return value


def output(raw: Any) -> str:
    """'elasticsearch', 'opensearch', 'console', 'null' or 'file:PATH'."""
    value = text(raw).strip()
    if value in {"elasticsearch", "opensearch", "console", "null"}:
        return value
    if value.startswith("file:") and len(value) > 5:
        return value
    raise ValueError(f"{raw!r} is not an output (use elasticsearch, opensearch, file:PATH, console or null)")


def log_format(raw: Any) -> str:
    """A name registered in agent.parsing.FORMATS (read at call time, so
    formats added by later modules are accepted)."""
    from agent.parsing import FORMATS

    name = text(raw).strip().lower()
    if name not in FORMATS:
        raise ValueError(f"{raw!r} is not a known format (one of: {', '.join(sorted(FORMATS))})"
                         f"{_did_you_mean(name, FORMATS)}")
    return name


def timezone(raw: Any) -> str:
    """An IANA time zone name (Europe/Paris, UTC)."""
    import zoneinfo

    name = text(raw).strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{raw!r} is not a known time zone (use an IANA name such as UTC or Europe/Paris)") \
            from None
    return name


def map_field(raw: Any) -> tuple[str, str]:
    """SOURCE=TARGET (for --map-field): a JSON key or dotted path to a schema
    field, checked against the schema (agent.parsing.json_keys)."""
    from agent.parsing.json_keys import parse_map_field

    return parse_map_field(text(raw))


def assignment(raw: Any) -> tuple[str, str]:
    """NAME=VALUE (for --field and --label)."""
    name, sep, value = text(raw).partition("=")
    if not sep or not name.strip():
        raise ValueError(f"{raw!r}: expected NAME=VALUE")
    return name.strip(), value


def fraction(raw: Any) -> float:
    """A rate in (0, 1]."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{raw!r} is not a number between 0 and 1") from None
    if not 0 < value <= 1:
        raise ValueError(f"{value} is out of range: must be above 0 and at most 1")
    return value


_LISTEN = re.compile(r"^(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*)):(?P<port>\d{1,5})$")


def listen_address(raw: Any) -> str | None:
    """HOST:PORT to listen on ([::1]:PORT for IPv6), or 'off' (None). The
    host is not resolved here: binding it is the server's job at start-up."""
    value = text(raw).strip()
    if value.lower() in {"off", "none", "false", "no"}:
        return None
    match = _LISTEN.match(value)
    if not match:
        raise ValueError(f"{raw!r} is not HOST:PORT (e.g. 127.0.0.1:9464, 0.0.0.0:9464, [::1]:9464) or off")
    port = int(match.group("port"))
    if not 1 <= port <= 65535:
        raise ValueError(f"{raw!r}: the port must be a number between 1 and 65535")
    if match.group("ip6") is not None:
        import ipaddress

        try:
            ipaddress.IPv6Address(match.group("ip6"))
        except ValueError:
            raise ValueError(f"{raw!r}: {match.group('ip6')!r} is not an IPv6 address") from None
    return value


NUMERIC.update({duration, positive_duration, optional_duration, size, retries, fraction})
