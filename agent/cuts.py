"""Cuts the clock made in a file's data, kept on disk until they are committed.

Two decisions of the agent depend on time, not on the bytes of the file:

* a last line without newline is emitted as a partial line once the file
  stayed still for ``--partial-line-timeout``; the bytes written after it
  start a new line;
* an open multi-line event is emitted once its writer paused longer than
  ``--multiline-timeout`` (or when its file is closed, the configuration
  reloaded, the agent stopped); a continuation line written after it starts
  a new event.

Read again after a crash (from the committed offset), the same bytes would be
cut by their content alone: the partial line and its rest would become one
line, the two parts one event, under the id of the first part, which
Elasticsearch already holds (a create is refused as a duplicate): the rest
would be lost. So every such cut is written down here *before* the event it
ended is handed over to be shipped (``settle``, called by the sink before
each hand-over), and a file read again is cut at the same places: the
``LineReader`` at the line cuts, the ``SourceParser`` at the event cuts. The
same events come out, with the same ids, and nothing is lost or doubled.

``settle`` first makes the registry durable when a file was tracked since its
last save (``Registry.settle``): a new file's key hashes the bytes it had when
first read, so a key not yet saved would be computed anew, over more bytes,
after a crash, and every line already shipped would be shipped again under
other ids.

On-disk format: ``<state_dir>/cuts.json``, UTF-8 JSON::

    {"version": 1,
     "sources": {"<source key>": {"lines": [18234, ...],
                                  "events": [[17002, 18234], ...]}}}

``lines``: file offsets where a partial line ended (the next line begins
there). ``events``: [offset of the event's first line, end of its last line].

Invariants:

* ``version`` is 1; any other value, or a file that does not parse into this
  shape, is moved aside to ``cuts.json.corrupt-<unix-ms>`` with a warning and
  the agent starts without cuts (the loss described above becomes possible
  again for the events in flight at the crash; it never refuses to start);
* a cut is kept while it lies at or after its file's committed offset
  (``Registry``): a cut before it is never needed again, and neither is a
  cut of a file the registry no longer knows. Pruned at every write;
* at most ``MAX_CUTS`` cuts of each kind per file (the oldest go first, with
  a warning once): cuts above the committed offset are events in flight, a
  few per file;
* the file is replaced atomically (``agent.atomic``, mode 0600), only when a
  cut was added. A write that fails is logged and retried at the next
  hand-over; shipping goes on (the cuts are still applied from memory).

Thread safety: only the reader thread (tailer and sink) calls it.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import orjson

from agent.atomic import write_atomic
from agent.clock import SYSTEM_CLOCK, Clock
from agent.registry import Registry
from agent.selflog import get_logger

log = get_logger("registry")

FORMAT_VERSION = 1
FILE_NAME = "cuts.json"
MAX_CUTS = 4096
_TEMP_PREFIX = ".cuts.json."


class CutLog:
    """The time-made cuts of every file, by source key (see the module docstring)."""

    def __init__(self, state_dir: Path, registry: Registry, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self._registry = registry
        self._clock = clock
        self._lines: dict[str, list[int]] = {}  # sorted
        self._events: dict[str, dict[int, int]] = {}
        self._dirty = False
        self._capped = False
        self._write_failed = False

    # -- loading -----------------------------------------------------------

    def load(self) -> None:
        """Read the file; missing: no cuts; corrupt: moved aside, no cuts."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as error:
            log.warning("cannot read the cut log; files read again are cut by their content only",
                        path=str(self.path), error=str(error))
            return
        try:
            self._lines, self._events = _parse(raw)
        except ValueError as error:
            aside = self.path.with_name(f"{FILE_NAME}.corrupt-{int(self._clock.time() * 1000)}")
            log.warning("cut log unreadable; moved aside, starting without it", path=str(self.path),
                        moved_to=str(aside), error=str(error))
            try:
                self.path.rename(aside)
            except OSError:
                pass

    # -- what a file read again needs ---------------------------------------

    def line_cuts(self, key: str) -> list[int]:
        """Where partial lines of ``key`` ended (sorted; a copy)."""
        return list(self._lines.get(key, ()))

    def event_cuts(self, key: str) -> dict[int, int]:
        """First-line offset -> end of last line of the events of ``key`` the clock ended (a copy)."""
        return dict(self._events.get(key, {}))

    # -- recording ------------------------------------------------------------

    def add_line(self, key: str, point: int) -> None:
        cuts = self._lines.setdefault(key, [])
        index = bisect.bisect_left(cuts, point)
        if index < len(cuts) and cuts[index] == point:
            return
        cuts.insert(index, point)
        if len(cuts) > MAX_CUTS:
            del cuts[0]
            self._cap(key)
        self._dirty = True

    def add_events(self, key: str, cuts: list[tuple[int, int]]) -> None:
        if not cuts:
            return
        known = self._events.setdefault(key, {})
        for first, end in cuts:
            if known.get(first) != end:
                known[first] = end
                self._dirty = True
        while len(known) > MAX_CUTS:
            del known[min(known)]
            self._cap(key)

    def _cap(self, key: str) -> None:
        if not self._capped:
            self._capped = True
            log.warning("more cuts by time than kept for one file; the oldest are forgotten",
                        key=key, kept=MAX_CUTS)

    # -- durability -----------------------------------------------------------

    def settle(self) -> None:
        """Make durable what must be before events are handed over: files
        tracked since the registry's last save, and the cuts added since the
        last write."""
        self._registry.settle()
        if not self._dirty:
            return
        self._prune()
        body = orjson.dumps({"version": FORMAT_VERSION, "sources": {
            key: {"lines": self._lines.get(key, []),
                  "events": sorted([first, end] for first, end in self._events.get(key, {}).items())}
            for key in sorted(set(self._lines) | set(self._events))}})
        try:
            write_atomic(self.path, body, prefix=_TEMP_PREFIX)
        except OSError as error:
            if not self._write_failed:
                log.error("cannot write the cut log; retried at the next hand-over", path=str(self.path),
                          error=str(error))
            self._write_failed = True
            return
        self._write_failed = False
        self._dirty = False

    def _prune(self) -> None:
        for key in list(set(self._lines) | set(self._events)):
            entry = self._registry.get(key)
            if entry is None:
                self._lines.pop(key, None)
                self._events.pop(key, None)
                continue
            committed = entry.offset
            lines = self._lines.get(key)
            if lines is not None:
                del lines[:bisect.bisect_right(lines, committed)]
                if not lines:
                    del self._lines[key]
            events = self._events.get(key)
            if events is not None:
                for first in [first for first in events if first < committed]:
                    del events[first]
                if not events:
                    del self._events[key]


def _parse(raw: bytes) -> tuple[dict[str, list[int]], dict[str, dict[int, int]]]:
    """The tables of a cut log file; ValueError says what is wrong with it."""
    data: Any = orjson.loads(raw)
    if type(data) is not dict or data.get("version") != FORMAT_VERSION:
        raise ValueError(f"not a version {FORMAT_VERSION} cut log")
    sources = data.get("sources")
    if type(sources) is not dict:
        raise ValueError("'sources' is not an object")
    lines: dict[str, list[int]] = {}
    events: dict[str, dict[int, int]] = {}
    for key, item in sources.items():
        if type(item) is not dict:
            raise ValueError(f"source {key!r} is not an object")
        points = item.get("lines", [])
        pairs = item.get("events", [])
        if type(points) is not list or not all(type(point) is int and point >= 0 for point in points):
            raise ValueError(f"source {key!r}: 'lines' is not a list of offsets")
        if type(pairs) is not list or not all(
                type(pair) is list and len(pair) == 2 and all(type(n) is int and n >= 0 for n in pair)
                and pair[0] < pair[1] for pair in pairs):
            raise ValueError(f"source {key!r}: 'events' is not a list of [first, end] offsets")
        if points:
            lines[key] = sorted(set(points))
        if pairs:
            events[key] = {first: end for first, end in pairs}
    return lines, events
