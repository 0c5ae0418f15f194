"""The parse driver: one source's Lines in, Records out.

``SourceParser`` is the per-source state machine behind ``agent.parsing``
(``make_parser`` builds one). It feeds each line to the format's joiner (see
``multiline``: where events begin, per writer), holds the events still open,
applies the caps and the timeout, and builds the records. It MUST keep these
promises, whatever the input and settings:

- ``feed`` / ``feed_many`` / ``feed_batch`` / ``flush_expired`` / ``flush``
  never raise (a bug in a format is caught, logged once, and the lines
  involved are emitted raw, tagged ``parse_failure``; a bug in a raw format's
  ``take_run`` sends the lines one by one from then on).
- ``feed_many(lines)`` gives exactly the records ``feed`` gives for each line
  in turn; ``feed_batch`` the same with runs of raw JSON lines left as
  ``LineRun`` items (``agent.events``), for the enrichment to read in one loop.
- No line is lost or duplicated: every Line fed ends up in exactly one
  Record. A record's lines are in file order; a record may skip lines of
  other writers (per-thread joining), so records are not always emitted in
  offset order.
- ``Record.offset`` is the offset of the record's first line: unique per
  source (it seeds the document id).
- ``Record.end`` is the record's commit point, not the end of its last line:
  min(M, O), M the largest end of a line in the records emitted so far (this
  one included), O the origin of the oldest event still open right after
  this record is emitted, lowered to the origin of any emitted record that
  has lines on both sides of it. In emission order the ``end`` values of a
  source never decrease; every line before a record's ``end`` belongs to
  that record or to one emitted before it; no event straddles it. So a
  file's offset may be committed up to the ``end`` of the last record of an
  acknowledged prefix (in emission order) of its records, and a restart
  there reads every record again as it was. For records of consecutive
  lines (every format but per-thread joining) ``end`` is the end of the
  record's last line, as it always was. Definitions, proofs, and what a
  crash costs: ``multiline``, "The commit point".
- Tags of the lines carry over to their record (union, first-seen order).
- A byte order mark (U+FEFF) that begins a file's first line (offset 0) is
  not part of the line's text: JSON and text are read as if it were not
  there; the line keeps its offsets, so the record keeps its id.

These rest on one assumption, which the tailer keeps: a source's lines are
fed in file order.

Caps: an event that would exceed ``multiline_max_lines`` lines or
``multiline_max_bytes`` (UTF-8 bytes of the joined message) is emitted tagged
``multiline_split``; the continuation lines form the next record of the same
writer, tagged the same, and the grouping goes on as if no cut happened (a
writer's continuation keeps the event's origin: see ``end``). At
most ``MAX_OPEN`` events are open at once (one per writer): a line that
opens one more emits the oldest first, as the timeout would.

Timing: text lines are held until the next line of their writer shows
whether they continue (any plain line may be followed by a traceback), or
until ``flush_expired(now)`` finds that the event's last line was read more
than ``multiline_timeout`` seconds before ``now`` (per event).

Cuts by time: such an emission (by ``flush_expired`` or ``flush``) depends on
the clock, not on the lines, so the parser lists it in ``timed`` as (offset
of the event's first line, end of its last line); the sink keeps the list
durably (``agent.cuts``) before the record is shipped. A parser given those
cuts (``cut_at``) for lines read again after a crash emits each such event
at that line, as the clock did, so the same records come out with the same
ids (else the event and the lines that followed its pause would join into
one record under the first part's id, which the index already holds).

Messages: the first line's ``head`` may give the message text (a format that
reads a prefix into fields); later lines go through the format's ``body``.
``head`` is asked when an event begins, so a format whose state changes (the
auto-detecting format) describes each event by the state it began in.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING, Any, Hashable

from agent.events import TAG_MULTILINE_SPLIT, TAG_PARSE_FAILURE, Line, LineRun, Record, Source, records_of
from agent.parsing import tracebacks
from agent.parsing.base import overrides
from agent.parsing.multiline import Joiner
from agent.selflog import get_logger

if TYPE_CHECKING:
    from agent.parsing.base import LineFormat, TextInfo
    from agent.parsing.settings import ParseSettings

_log = get_logger("parsing")

# Events open at once (one per writer). Each is capped by multiline_max_*;
# this caps their number, so a file of many threads cannot hold much memory.
MAX_OPEN = 64


def _is_blank(text: str) -> bool:
    return not text or text.isspace()


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _union_tags(lines: list[Line], *more: tuple[str, ...]) -> tuple[str, ...]:
    tags: list[str] = []
    for group in [line.tags for line in lines] + list(more):
        for tag in group:
            if tag not in tags:
                tags.append(tag)
    return tuple(tags)


_BOM = "\ufeff"


def _unmarked(line: Line) -> Line:
    """A file's first line without the byte order mark some writers put there
    (``encoding="utf-8-sig"``, PowerShell, .NET, Notepad): it is read as if the
    mark were not there. Its offsets stay, so the record's id does not change."""
    return line._replace(text=line.text[1:])


def _traceback_start(texts: list[str]) -> int | None:
    for index, text in enumerate(texts):
        if text == tracebacks.HEADER or tracebacks.is_group_header(text):
            return index
    return None


class _Event:
    """An open event: its lines so far and what its first line said."""

    __slots__ = ("lines", "size", "last_read", "split", "tb_start", "info", "origin")

    def __init__(self, line: Line, size: int, split: bool, tb_start: int | None, info: TextInfo) -> None:
        self.lines = [line]
        self.size = size  # UTF-8 bytes of the joined texts, for the byte cap
        self.last_read = line.read_time
        self.split = split  # it continues an event cut at a cap
        self.tb_start = tb_start  # index in lines where a traceback begins
        self.info = info
        # Where the event began: its first line, or with lanes, for a part
        # after a cap cut, the first line of its first part.
        self.origin = line.offset


class SourceParser:
    """Turns one source's Lines into Records; holds the open events."""

    raw_records = False  # (``agent.parsing.raw``: records of raw lines, for the cluster to parse)

    def __init__(self, settings: ParseSettings, source: Source, line_format: LineFormat) -> None:
        self.source = source
        self._format = line_format
        self._joiner: Joiner = line_format.joiner()
        # A joiner without ``lane`` knows one writer: every event is in lane None.
        self._lanes = hasattr(self._joiner, "lane")
        self._pattern_mode = settings.multiline_start is not None
        self._keep_original = settings.keep_original
        self._max_lines = settings.multiline_max_lines
        self._max_bytes = settings.multiline_max_bytes
        self._timeout = settings.multiline_timeout
        # Open events by lane, in origin order (a lane's new event goes to the
        # end; a writer's part after a cap cut keeps its event's place).
        self._open: dict[Hashable, _Event] = {}
        self._high = 0  # M: the largest end of a line in an emitted record
        # Emitted records with lines of other records in between, as merged open
        # intervals (first line, end of last line), sorted, disjoint; those
        # that end after the latest commit point (a later one must not fall
        # inside either).
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._bodies = overrides(type(line_format), "body")
        # ``take_run(lines, index, out)``: a raw format's batch of ``structured``
        # (``agent.parsing.raw``): takes the lines from ``index`` on while each
        # is an event of its own, appends them to ``out`` as one ``LineRun``,
        # returns the index of the first line it did not take.
        self._run = getattr(line_format, "take_run", None)
        self._out: list[Record] = []
        self._failed_once = False
        # Cuts by time: made here (for the sink to keep), and to make again.
        self.timed: list[tuple[int, int]] = []
        self._replay: dict[int, int] = {}
        self._replay_end = 0

    # -- public ---------------------------------------------------------------

    def cut_at(self, cuts: dict[int, int]) -> None:
        """Emit the event whose first line is at ``first`` when its line ending
        at ``cuts[first]`` arrives, as the clock did when the lines were read
        before (``agent.cuts``)."""
        self._replay.update(cuts)
        self._replay_end = max(self._replay.values(), default=0)

    def feed(self, line: Line) -> list[Record]:
        """Records completed by ``line`` (often none or one)."""
        if not line.offset and line.text[:1] == _BOM:
            line = _unmarked(line)
        try:
            record = self._format.structured(line)
            if record is not None and not self._open:
                self._high = record.end  # the JSON hot path: nothing open, nothing to join
                return [record]
            self._feed(line, record)
            if self._replay:
                self._replay_cut(line)
        except Exception as error:  # noqa: BLE001 - the never-raise promise
            self._recover(error, line)
        return self._drain()

    def feed_many(self, lines: list[Line]) -> list[Record]:
        """The records ``feed`` would give for each of ``lines`` in turn, in that order."""
        return records_of(self.feed_batch(lines))

    def feed_batch(self, lines: list[Line]) -> list[Record | LineRun]:
        """``feed_many``, with runs of lines that are events of their own (raw
        JSON objects, while no event is open) left as ``LineRun`` items: the
        format's ``take_run`` (raw formats) takes them at once."""
        out: list[Record | LineRun] = []
        if lines and not lines[0].offset and lines[0].text[:1] == _BOM:  # (a batch is one read: contiguous)
            lines = [_unmarked(lines[0]), *lines[1:]]
        run = self._run
        index, count = 0, len(lines)
        while index < count:
            if run is not None and not self._open:
                before = len(out)
                try:
                    after = run(lines, index, out)
                except Exception:  # noqa: BLE001 - never raise: the lines go one by one
                    _log.error("batch parsing failed; the lines are parsed one by one", exc_info=True,
                               path=self.source.path)
                    run = self._run = None
                    del out[before:]
                    after = index
                if after != index:
                    self._high = lines[after - 1].end  # (as ``feed``'s hot path, for the run's last)
                    index = after
                    continue
            out += self.feed(lines[index])
            index += 1
        return out

    def flush_expired(self, now: float) -> list[Record]:
        """Emit each open event whose last line was read over ``timeout`` before ``now``."""
        opened = self._open
        if not opened:
            return []
        try:
            timeout = self._timeout
            expired = [lane for lane, event in opened.items() if now - event.last_read > timeout]
            if len(expired) == len(opened):
                return self.flush()
            for lane in expired:
                self._timed_take(lane)
        except Exception as error:  # noqa: BLE001
            self._recover(error, None)
        return self._drain()

    def flush(self) -> list[Record]:
        """Emit everything open (file closed, end of ``--once``), oldest first."""
        try:
            opened = self._open
            while opened:
                self._timed_take(next(iter(opened)))
            self._joiner.reset()
        except Exception as error:  # noqa: BLE001
            self._recover(error, None)
        return self._drain()

    def _timed_take(self, lane: Hashable) -> None:
        lines = self._open[lane].lines
        self.timed.append((lines[0].offset, lines[-1].end))
        self._take(lane)

    def _replay_cut(self, line: Line) -> None:
        """``line`` ends an event the clock ended when it was read before: emit it."""
        replay = self._replay
        for lane, event in self._open.items():
            if event.lines[-1] is line:
                first = event.lines[0].offset
                if replay.get(first) == line.end:
                    del replay[first]
                    self._take(lane)
                break
        if line.end >= self._replay_end:
            replay.clear()  # every cut lies behind: the hot path again

    def pending(self) -> bool:
        return bool(self._open)

    # -- the state machine ----------------------------------------------------

    def _feed(self, line: Line, record: Record | None) -> None:
        opened = self._open
        if record is not None:
            while opened:
                self._take(next(iter(opened)))
            self._joiner.reset()
            if record.end > self._high:
                self._high = record.end
            self._out.append(record)
            return
        text = line.text
        size = _utf8_len(text)
        joiner = self._joiner
        if not opened:
            joiner.start(text)
            self._begin(joiner.lane if self._lanes else None, line, size, False)
            return
        joined = joiner.continues(text)
        if self._lanes:
            lane = joiner.lane
            if lane is not None and None in opened:
                self._take(None)  # an event of no particular writer ends at a writer's line
            event = opened.get(lane)
        else:  # one writer: its event is the one open
            lane = None
            event = opened[None]
        if event is None:
            if joined:  # its event was emitted already (timeout, MAX_OPEN): begin one
                joiner.start(text)
                lane = joiner.lane
                if lane is not None and None in opened:
                    self._take(None)
                if lane in opened:
                    self._take(lane)
        elif joined:
            lines = event.lines
            if len(lines) >= self._max_lines or event.size + 1 + size > self._max_bytes:
                self._cut(lane, event, line, size)
            else:
                lines.append(line)
                event.size += 1 + size
                event.last_read = line.read_time
                if event.tb_start is None and joiner.in_traceback:
                    event.tb_start = len(lines) - 1
            return
        else:  # the joiner has started the lane's new event already
            self._take(lane)
        self._begin(lane, line, size, False, event)

    def _begin(self, lane: Hashable, line: Line, size: int, split: bool, spare: _Event | None = None) -> None:
        """Open an event in ``lane`` with ``line`` (``spare``: a closed event's
        object to reuse: one allocation less per record on the hot path)."""
        # The head first: if it raises, nothing is half-set (``_recover``).
        info = self._format.head(line.text)
        opened = self._open
        if len(opened) >= MAX_OPEN:
            self._take(next(iter(opened)))
        tb_start = 0 if self._joiner.in_traceback else None
        if spare is None:
            opened[lane] = _Event(line, size, split, tb_start, info)
        else:
            spare.lines = [line]
            spare.size = size
            spare.last_read = line.read_time
            spare.split = split
            spare.tb_start = tb_start
            spare.info = info
            spare.origin = line.offset
            opened[lane] = spare

    def _cut(self, lane: Hashable, event: _Event, line: Line, size: int) -> None:
        """A cap: emit ``event``'s lines so far, tagged ``multiline_split``;
        ``line`` goes on with the event in its place (a new part)."""
        # The head first: if it raises, nothing is half-set (``_recover``).
        info = self._format.head(line.text)
        lines = event.lines
        last = lines[-1].end
        point = self._high
        if last > point:
            self._high = point = last
        # O. A writer's event (per-thread joining) keeps its origin and its
        # place among the open events in the part that goes on, so the commit
        # point stays at or before its origin until the last part: a restart
        # never begins inside it. Otherwise the part is an event of its own,
        # as ever.
        for other in self._open.values():
            if other is not event or lane is not None:
                if other.origin < point:
                    point = other.origin
                break
        if self._starts or lane is not None:
            point = self._lower(lines, point, event.origin)
        record = self._build(event, True, point)
        event.lines = [line]
        event.size = size
        event.last_read = line.read_time
        event.split = True
        event.tb_start = 0 if self._joiner.in_traceback else None
        event.info = info
        if lane is None:
            event.origin = line.offset
            opened = self._open
            if len(opened) > 1:  # the newest origin: last (open events stay in origin order)
                del opened[lane]
                opened[lane] = event
        self._out.append(record)

    def _take(self, lane: Hashable, split: bool = False) -> None:
        """Emit the open event of ``lane``: build its record (with the commit
        point as ``end``), then close it. In that order, so a failure while
        building leaves its lines for ``_recover``."""
        opened = self._open
        event = opened[lane]
        lines = event.lines
        # The commit point (``multiline``, "The commit point"): min(M, O), O the
        # oldest event open once this one is closed, then lowered if need be.
        last = lines[-1].end
        point = self._high
        if last > point:
            self._high = point = last
        if len(opened) > 1:
            for other in opened.values():
                if other is not event:
                    if other.origin < point:
                        point = other.origin
                    break
        if self._starts or (self._lanes and (len(lines) > 1 or event.origin != lines[0].offset)):
            point = self._lower(lines, point, event.origin)
        record = self._build(event, split, point)
        del opened[lane]
        self._out.append(record)

    def _lower(self, lines: list[Line], point: int, first: int) -> int:
        """``point`` (min(M, O) for a record of ``lines`` of an event that
        began at ``first``), lowered to the origin of any emitted event that
        has lines on both sides of it."""
        last = lines[-1].end
        starts, ends = self._starts, self._ends
        if first != lines[0].offset or len(lines) > 1:
            if first != lines[0].offset or last - first != sum([line.end - line.offset for line in lines]):
                # Lines of other records in between: a point must not fall inside.
                # Merge (first, last) into the disjoint, sorted open intervals.
                i = bisect_left(starts, first)
                if i and ends[i - 1] > first:
                    i -= 1
                    first = starts[i]
                j = i
                while j < len(starts) and starts[j] < last:
                    if ends[j] > last:
                        last = ends[j]
                    j += 1
                starts[i:j] = [first]
                ends[i:j] = [last]
        if not starts:
            return point  # records of consecutive lines never straddle a point
        # One interval at most holds the point (they are disjoint); lower it to its start.
        k = bisect_left(starts, point) - 1
        if k >= 0 and ends[k] > point:
            point = starts[k]
        # A later point is never lower: intervals that end at or before it are done.
        done = bisect_right(ends, point)
        if done:
            del starts[:done], ends[:done]
        return point

    def _drain(self) -> list[Record]:
        out = self._out
        self._out = []
        return out

    def _build(self, event: _Event, split: bool, end: int) -> Record:
        lines = event.lines
        first = lines[0]
        info = event.info
        fields = info.fields
        split = split or event.split
        if len(lines) == 1 and event.tb_start is None:
            text = first.text
            tags = first.tags
            if info.tags or split or len(tags) > 1:  # (a line's own tags may repeat)
                tags = _union_tags(lines, info.tags, (TAG_MULTILINE_SPLIT,) if split else ())
            message = info.message if info.message is not None else text
            return Record(first.source, first.offset, end, "" if message.isspace() else message,
                          first.read_time, info.timestamp, fields, tags,
                          text if self._keep_original else None, info.error, 1)
        if self._bodies or info.message is not None:
            body = self._format.body
            texts = [first.text if info.message is None else info.message]
            texts.extend(body(line.text) for line in lines[1:])
        else:
            texts = [line.text for line in lines]
        last = len(texts)
        while last and _is_blank(texts[last - 1]):
            last -= 1
        tb_start = event.tb_start
        if tb_start is None and self._pattern_mode:
            tb_start = _traceback_start(texts[:last])
        if tb_start is not None and tb_start < last and "error" not in fields:
            self._add_error(fields, texts[tb_start:last], from_start=not (event.split and tb_start == 0))
        # A head with nothing after its prefix (Triton's table heading): the
        # message starts with what follows, not with an empty line.
        start = 1 if not texts[0] and info.message is not None and last > 1 else 0
        return Record(first.source, first.offset, end, "\n".join(texts[start:last]),
                      first.read_time, info.timestamp, fields,
                      _union_tags(lines, info.tags, (TAG_MULTILINE_SPLIT,) if split else ()),
                      "\n".join(line.text for line in lines) if self._keep_original else None,
                      info.error, len(lines))

    @staticmethod
    def _add_error(fields: dict[str, Any], texts: list[str], from_start: bool) -> None:
        # A part cut off by a cap starts mid-traceback, so no header is required.
        described = tracebacks.describe(texts, require_header=from_start)
        if described is None:
            return  # e.g. stack_info's "Stack (most recent call last):": no error
        error = {"stack_trace": "\n".join(texts)}
        if described[0] is not None:
            error["type"] = described[0]
        if described[1] is not None:
            error["message"] = described[1]
        fields["error"] = error

    # -- the safety net -------------------------------------------------------

    def _recover(self, error: Exception, line: Line | None) -> None:
        """A bug, not an input problem: emit the lines involved raw, one record
        per open event (oldest first) and the line if it is in none, reset."""
        if not self._failed_once:
            self._failed_once = True
            _log.error("parser failed; lines emitted unparsed", exc_info=True,
                       path=self.source.path, error=type(error).__name__)
        groups = [(event.origin, event.lines) for event in self._open.values()]
        self._open = {}
        if line is not None and not any(pending is line for _, lines in groups for pending in lines):
            groups.append((line.offset, [line]))  # the newest line: after every open event
        try:
            self._joiner.reset()
        except Exception:  # noqa: BLE001
            self._joiner = _BrokenJoiner()
        reason = f"internal parser error: {type(error).__name__}"
        for index, (origin, lines) in enumerate(groups):
            texts = [pending.text for pending in lines]
            last = len(texts)
            while last and _is_blank(texts[last - 1]):
                last -= 1
            first = lines[0]
            # The groups still to come are open until then (oldest first).
            end = self._high = max(self._high, lines[-1].end)
            if index + 1 < len(groups):
                end = min(end, groups[index + 1][0])
            end = self._lower(lines, end, origin)
            self._out.append(Record(first.source, first.offset, end, "\n".join(texts[:last]),
                                    first.read_time, None, {}, _union_tags(lines, (TAG_PARSE_FAILURE,)),
                                    "\n".join(texts) if self._keep_original else None, reason, len(lines)))


class _BrokenJoiner:
    """Stand-in after a joiner failed to reset: every line is its own event."""

    in_traceback = False
    lane = None  # (read if the joiner it replaces had lanes)

    def start(self, text: str) -> None:
        pass

    def continues(self, text: str) -> bool:
        return False

    def reset(self) -> None:
        pass
