"""Container runtime log files: the runtime's wrapping taken off each line, before parsing.

    unwrapper = Unwrapper(mode, max_bytes)   # one per file (``agent.sink``)
    lines = unwrapper.feed(lines)            # the application's lines, joined where the runtime split them
    lines = unwrapper.release()              # the file closed: parts still waiting, as one line

Kubernetes' kubelet (``/var/log/pods/...``) and Docker (``json-file``) do not
store what the container wrote; each physical line wraps a piece of it:

- CRI (containerd, CRI-O): ``<RFC3339Nano time> <stdout|stderr> <P|F>[:flags] <content>``.
  ``P`` marks a partial line (the runtime splits long lines, by default at
  16 KiB): it continues on the following lines up to and including the next
  ``F`` line, and the contents are concatenated without separator.
- Docker json-file: ``{"log": "text\\n", "stream": "stdout", "time": "..."}``
  (and ``attrs`` with some log options). A ``log`` without its trailing
  ``\\n`` is partial (Docker splits at 16 KiB) and continues up to the next
  one that ends with ``\\n``; that newline (and a ``\\r`` before it) is removed.

Modes (``--container-format``, per input ``container_format``): ``cri``,
``docker``, ``off`` (lines pass untouched), or ``auto``, which decides once per
file, on its first non-empty line: the CRI shape (with a time this module
can read), a JSON object whose keys are exactly Docker's, or else ``off``.

Guarantees, whatever the input (``feed`` and ``release`` never raise):

- No physical line is lost or duplicated: each ends up in exactly one line
  returned, in file order. A line that does not have the mode's shape (a
  stray line, a JSON line cut at ``--max-line-bytes``) passes unchanged;
  parts waiting before it are returned first, tagged ``partial_line``.
- An unwrapped line has the ``offset`` of its first physical line and the
  ``end`` of its last, so lines still tile the file, document ids stay
  deterministic, and nothing is committed past a partial line that is still
  waiting for its end: it is not returned until then, so no record (and no
  committed offset) can cover it. Read again after a restart, from the
  committed offset, the same physical lines join into the same line.
- ``read_time`` is the runtime's time of the first part (parsed exactly:
  RFC 3339 with ``Z`` or ``+hh:mm``, nanoseconds cut to microseconds; the
  read time when it is not readable), so it is the document's ``@timestamp``
  when the content has no time of its own. Tags of the parts merge
  (first-seen order).
- Memory: the parts of one line are kept up to ``max_bytes`` (UTF-8) of
  content; the rest of that line is dropped (its offsets still covered) and
  the line tagged ``truncated``.
- ``feed`` returns the very list it was given when it changed nothing (mode
  ``off``, or only blank lines before the decision), so the caller knows the
  lines are still the bytes it read.

The stream (stdout/stderr) is not kept: a line carries no field of its own
before it is parsed, and a CRI file interleaves both streams, so partial
lines are joined per file, as the runtime wrote them (Filebeat does the same).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import orjson

from agent.events import TAG_PARTIAL, TAG_TRUNCATED, Line, new
from agent.parsing.timestamps import FIRST_EPOCH, LAST_EPOCH

AUTO, CRI, DOCKER, OFF = "auto", "cri", "docker", "off"
MODES = (AUTO, CRI, DOCKER, OFF)

_STREAMS = frozenset(("stdout", "stderr"))
_DOCKER_KEYS = (frozenset(("log", "stream", "time")), frozenset(("log", "stream", "time", "attrs")))
# RFC 3339 as Go's RFC3339Nano writes it (the fraction without trailing
# zeros, or none): the second, the fraction, the zone.
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)\Z", re.ASCII).match
_PARTIAL_TAG = (TAG_PARTIAL,)
_TRUNCATED_TAG = (TAG_TRUNCATED,)
# Microseconds since the epoch by second and zone ("2026-12-04T10:00:01Z"):
# a file's lines share their second, so most convert only their fraction.
_SECONDS: dict[str, int] = {}
_SECONDS_LIMIT = 4096


def _second(second: str, zone: str) -> int | None:
    """Microseconds since the epoch of ``YYYY-MM-DDTHH:MM:SS`` in ``zone``, or
    None if there is no such time (second 60, a leap second, is read as the
    next minute's :00)."""
    try:
        offset = timedelta(0)
        if zone not in ("Z", "z"):
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                return None
            offset = timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
        seconds = int(second[17:19])
        if seconds > 60:
            return None
        moment = datetime(int(second[:4]), int(second[5:7]), int(second[8:10]), int(second[11:13]),
                          int(second[14:16]), tzinfo=timezone(offset))
        return (int(moment.timestamp()) + seconds) * 1_000_000
    except (ValueError, OverflowError):
        return None


def parse_time(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 time (``2024-05-01T10:00:00.123456789Z``,
    ``...+02:00``), the fraction cut to the microsecond; None if it is not one."""
    match = _RFC3339(text)
    if match is None:
        return None
    second, fraction, zone = match.groups()
    key = second + zone
    base = _SECONDS.get(key)
    if base is None:
        base = _second(second, zone)
        if base is None:
            return None
        if len(_SECONDS) >= _SECONDS_LIMIT:
            _SECONDS.clear()
        _SECONDS[key] = base
    if fraction:
        base += int(fraction[:6].ljust(6, "0"))
    # One division of integers: the float nearest the exact microsecond.
    epoch = base / 1_000_000
    return epoch if FIRST_EPOCH <= epoch <= LAST_EPOCH else None


def cri(text: str) -> tuple[str, bool, str] | None:
    """(time, partial, content) of a CRI line, or None if ``text`` is not one."""
    parts = text.split(" ", 3)
    if len(parts) < 3 or parts[1] not in _STREAMS:
        return None
    flags = parts[2]
    if not flags or flags[0] not in "PF" or (len(flags) > 1 and flags[1] != ":"):
        return None
    return parts[0], flags[0] == "P", parts[3] if len(parts) == 4 else ""


def docker(text: str, exact: bool = False) -> tuple[str, bool, str] | None:
    """(time, partial, content) of a Docker json-file line, or None if ``text``
    is not one (``exact``: only Docker's own keys, as ``auto`` requires)."""
    if text[:1] != "{":
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict:
        return None
    log = value.get("log")
    if type(log) is not str or (exact and value.keys() not in _DOCKER_KEYS):
        return None
    stamp = value.get("time")
    stamp = stamp if type(stamp) is str else ""
    if log[-1:] != "\n":
        return stamp, True, log
    return stamp, False, log[:-2] if log[-2:-1] == "\r" else log[:-1]


def decide(text: str) -> str:
    """The mode ``auto`` takes for a file whose first non-empty line is ``text``."""
    found = cri(text)
    if found is not None and parse_time(found[0]) is not None:
        return CRI
    if docker(text, exact=True) is not None:
        return DOCKER
    return OFF


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Unwrapper:
    """One file's unwrapping: its mode (decided once) and the parts of a
    partial line still waiting for their end."""

    __slots__ = ("mode", "max_bytes", "_first", "_time", "_parts", "_size", "_end", "_tags", "_cut")

    def __init__(self, mode: str, max_bytes: int) -> None:
        if mode not in MODES:
            raise ValueError(f"container_format {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.max_bytes = max_bytes
        self._parts: list[str] | None = None  # None: no line waiting
        self._first: Line | None = None
        self._time = 0.0
        self._size = 0
        self._end = 0
        self._tags: tuple[str, ...] = ()
        self._cut = False

    @property
    def off(self) -> bool:
        """Nothing to unwrap in this file (said so, or decided by ``auto``)."""
        return self.mode == OFF

    @property
    def pending(self) -> bool:
        return self._parts is not None

    def feed(self, lines: list[Line]) -> list[Line]:
        """The unwrapped lines of ``lines`` (one file's, in file order); a
        partial line's parts are held until the physical line that ends it."""
        start = 0
        if self.mode == AUTO:
            for start, line in enumerate(lines):
                if line.text and not line.text.isspace():
                    self.mode = decide(line.text)
                    break
            else:
                return lines  # blank lines only: still undecided
        if self.mode == OFF:
            return lines
        unwrap = cri if self.mode == CRI else docker
        out = lines[:start]
        for line in lines[start:] if start else lines:
            found = unwrap(line.text)
            if found is None:  # not the runtime's: as it is, after what waited before it
                if self._parts is not None:
                    out.append(self._take(_PARTIAL_TAG))
                out.append(line)
                continue
            stamp, partial, content = found
            if self._parts is None:
                time = parse_time(stamp)
                if not partial:  # the usual case: one physical line, one line
                    out.append(new(Line, (line.source, line.offset, line.end, content,
                                          line.read_time if time is None else time, line.tags)))
                    continue
                self._first, self._time = line, line.read_time if time is None else time
                self._parts, self._size, self._tags, self._cut = [], 0, line.tags, False
            elif line.tags:
                self._tags = tuple(dict.fromkeys(self._tags + line.tags))
            self._add(content)
            self._end = line.end
            if not partial:
                out.append(self._take(()))
        return out

    def release(self) -> list[Line]:
        """The parts still waiting, as one line tagged ``partial_line`` (the
        file closed before their end came); [] if none."""
        return [] if self._parts is None else [self._take(_PARTIAL_TAG)]

    def _add(self, content: str) -> None:
        if self._cut:
            return  # past max_bytes: the rest of the line is dropped
        size = _utf8_len(content)
        if self._size + size > self.max_bytes:
            keep = self.max_bytes - self._size
            content = content.encode("utf-8", "surrogatepass")[:keep].decode("utf-8", "ignore")
            self._cut = True
        self._parts.append(content)  # type: ignore[union-attr]
        self._size += size

    def _take(self, extra: tuple[str, ...]) -> Line:
        """The waiting parts as one line (``extra`` tags added); none wait after."""
        first, parts = self._first, self._parts
        assert first is not None and parts is not None
        tags = self._tags
        if self._cut:
            extra = extra + _TRUNCATED_TAG
        if extra:
            tags = tuple(dict.fromkeys(tags + extra))
        line = new(Line, (first.source, first.offset, self._end, "".join(parts), self._time, tags))
        self._parts, self._first, self._tags = None, None, ()
        return line
