"""The values that cross stage boundaries.

    sources  --Line-->  parsing  --Record-->  enrich  --Event-->  outputs
                                 (--LineRun-->)                <--Ack (via acks.AckTracker)

(A ``LineRun`` stands for the records of a run of lines that are each a
record of its own, not built one by one: the raw parser's JSON lines.)

All are immutable: a stage never mutates what it received. ``Source`` and
``Batch`` are frozen, slotted dataclasses. ``Line``, ``Record`` and ``Event``,
built once per line, are NamedTuples: as immutable, but a frozen
dataclass's ``__init__`` sets every field through ``object.__setattr__``,
which cost about 2 µs per line, a tenth of the agent's whole per-line budget.
The one mutable thing is ``Record.fields``, a plain dict, because that is
what gets serialised; a stage that changes it builds a new one. Its default
is a read-only empty mapping, so a shared default can never be written to.

Offsets are byte offsets in the file identified by ``Source.key``:
``offset`` is the first byte of the first line, ``end`` the byte after the
last newline consumed. An event's ``end`` is what the registry may commit
once the output has acknowledged it (and everything before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple, Sequence

# Tags the agent puts on events; one place so tests and docs agree.
TAG_TRUNCATED = "truncated"  # line longer than --max-line-bytes, cut
TAG_INVALID_UTF8 = "invalid_utf8"  # undecodable bytes replaced by U+FFFD
TAG_PARTIAL = "partial_line"  # emitted without its newline (timeout or EOF in --once)
TAG_PARSE_FAILURE = "parse_failure"  # the parser gave up; raw text kept in message
TAG_MULTILINE_SPLIT = "multiline_split"  # multi-line event cut at the lines/bytes cap
# The line's own time could not be used (a JSON time key whose value is no time,
# a time outside the years 1 - 9999): @timestamp is the read time (``agent.enrich``).
TAG_TIMESTAMP_UNUSABLE = "timestamp_unusable"


_NO_FIELDS: Any = MappingProxyType({})

# The hot paths build Line, Record and Event with ``new(Cls, (every field,
# in order))``: tuple.__new__ skips the NamedTuple's Python-level __new__,
# about 150 ns per object, three objects per line.
new = tuple.__new__


@dataclass(frozen=True, slots=True)
class Source:
    """A file as the pipeline knows it.

    ``key`` is stable for the life of the file's content (survives renames and
    restarts) and seeds the deterministic document ids; ``path`` is where the
    file was when the line was read.
    """

    key: str
    path: str


class Line(NamedTuple):
    """One line read from a file, decoded, without its line terminator."""

    source: Source
    offset: int
    end: int
    text: str
    read_time: float
    tags: tuple[str, ...] = ()


class Record(NamedTuple):
    """A parsed event: one line, or several joined (tracebacks).

    ``fields`` holds what the parser understood, already shaped as nested
    ECS-style dicts (``{"log": {"level": "error"}}``); ``timestamp`` is epoch
    seconds from the record itself, or None to use the read time.
    """

    source: Source
    offset: int
    end: int
    message: str
    read_time: float
    timestamp: float | None = None
    fields: dict[str, Any] = _NO_FIELDS
    tags: tuple[str, ...] = ()
    original: str | None = None
    error: str | None = None
    line_count: int = 1


class LineRun(NamedTuple):
    """Records not built one by one: each of ``lines[start:stop]`` is a record
    of its own, ``Record(line.source, line.offset, line.end, line.text,
    line.read_time, None, fields, tags, None, None, 1)``, its line's tags
    listed once (``records``). The raw parser's runs of JSON objects
    (``agent.parsing.raw``), which the enrichment reads in one loop."""

    lines: Sequence[Line]
    start: int
    stop: int
    fields: dict[str, Any]

    def records(self) -> list[Record]:
        fields = self.fields
        return [new(Record, (source, offset, end, text, read_time, None, fields,
                             tuple(dict.fromkeys(tags)) if len(tags) > 1 else tags, None, None, 1))
                for source, offset, end, text, read_time, tags in self.lines[self.start:self.stop]]


def records_of(items: Sequence[Record | LineRun]) -> list[Record]:
    """The records of ``items``, each run's built."""
    out: list[Record] = []
    for item in items:
        if type(item) is LineRun:
            out += item.records()
        else:
            out.append(item)
    return out


class Event(NamedTuple):
    """A final document, serialised once, with what is needed to ack it.

    ``data`` is the JSON document exactly as every output writes it (the
    Elasticsearch bulk source, the file output's line, the spool's payload);
    ``doc_id`` is deterministic (source key + offset) so a re-send after a
    crash or retry can never index the same line twice.
    """

    source_key: str
    offset: int
    end: int
    doc_id: str
    data: bytes
    target: str | None = None  # index or data stream for this event; None: the output's default


# The data of a marker: an event that is no document, only an offset to commit
# (the end of sampled-out lines, ``agent.sink``). Registered and acknowledged
# by the batcher without being sent; no document is ever empty.
MARKER = b""


@dataclass(frozen=True, slots=True)
class Batch:
    """Events sent to an output in one request."""

    events: tuple[Event, ...]
    size_bytes: int = 0
