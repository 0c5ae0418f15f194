"""Where events begin: the joiners, per writer, and why a record's ``end`` is safe to commit.

A joiner decides, line by line, whether a text line continues an open event
or begins a new one; the driver (``agent.parsing.driver.SourceParser``) does
the rest (caps, timeout, building records, never raising). How lines group:

- A structured line (a JSON object) is a record on its own, emitted at once,
  after every open text event. It never joins text.
- ``multiline_start`` set (``PatternJoiner``): a text line the pattern finds
  (``re.search``) starts a new event, any other continues the open one
  (or starts one if nothing is open): Filebeat's negate/after.
- Otherwise (``TracebackJoiner``): a Python traceback (see ``tracebacks``)
  joins the log line right before it, including chained exceptions,
  exception groups, carets and SyntaxError output; a traceback with no log
  line before it is a record of its own. After the exception line, its
  message's indented lines join; an unindented line does not (a CUDA
  error's advice, a pydantic field name: it cannot be told from output
  printed right after the traceback, which joined by the hundred when it
  did; audit 10). Every other text line starts an
  event: a level name is never read as an exception type (``INFO:     ...``
  after frames is the next record), logging's ``stack_info`` block ends at
  its first unindented line, and werkzeug's `` * Restarting with stat``
  notices never continue an exception message.

Blank lines: a blank (empty or whitespace-only) line continues whatever event
is open, in both modes. Inside a traceback that is what Python writes
around chain separators; after an ordinary line it is a trailing blank that
belongs to it. Either way the record covers it and it is stripped from the
end of the message. A blank line with nothing open (start of file, after a
JSON line, after a timeout) starts an event of its own, which other blank
lines join, and is emitted as a record with message "" - never dropped. In the
traceback mode, a traceback after a blank line does not join the line before
the blank: Python's logging never writes one there.

Per-thread joining. A joiner that tells writers apart (TorchServe's
``ThreadJoiner``: one lane per log4j thread name; ``PrefixJoiner``, for vLLM
and Ray Serve: one lane per process tag) sets ``lane`` after each
``start`` / ``continues``: the writer of that line. The driver keeps at most
one open event per lane, and the rules above apply per lane: a traceback
joins the line its own thread wrote before it, lines of other threads in
between go to their own events, and a thread's traceback is one record
however its lines interleave with other threads' (unless a cap, the timeout
or the limit of open events cuts it, as for any event). So a record may
cover non-contiguous lines, and records are emitted when their writer's next
line (or a cap, the timeout, a flush) ends them, not in offset order. Lane
None is "no particular writer" (lines without a thread name, before any
line with one): its event ends at the first line of another lane, so it is
always contiguous. A joiner without ``lane`` (every other format) has one
writer, and its records are contiguous, emitted in offset order.

The commit point. A record's ``offset`` is its first line's (unique: it seeds
the document id). Its ``end`` is not its last line's end but the point P that
the file's offset may be committed to once this record and every record
emitted before it are acknowledged. Lines are fed in file order. An event's
origin is its first line, except that a writer's event cut at a cap
(per-thread joining) keeps its first part's first line as the origin of
every later part. Let M be the largest end of a line in the records emitted
so far (this one included), O the origin of the oldest event still open
right after this record is emitted, and W = min(M, O) (no open event: W =
M). P is W, lowered to the origin of any emitted record that has lines on
both sides of it (spans from its origin to its last line), until none has
(``driver.SourceParser._take``, ``_cut``, ``_lower``).

1. Every line before P belongs to this record or to one emitted before it:
   a line that ends at or before P <= W <= M was fed already; it is not in
   an event open after this record (those began at or after O >= W) nor in
   a later one (those begin at lines not fed yet).
2. P never decreases, in emission order. W does not: between two emissions
   M only grows, events that close leave the open set, and an event opened
   meanwhile begins at a line fed after every line counted in M. So a record
   emitted after R has its origin at or after W(R) >= P(R); lowering a later
   point below P(R) would need a record spanning P(R), which would have been
   emitted by R (its origin is before W(R)) and so would have lowered P(R)
   itself.
3. No event has lines on both sides of P, nor does a writer's event begin
   before P and go on after it in a later part: those emitted by then by
   construction, open or later ones because their origin is at or after W.

By 1 and 2, if every record of a file up to R (in emission order) is
acknowledged, every line before R.end was delivered. The AckTracker
registers events in emission order and commits the ``end`` of the last event
of the acknowledged prefix: the committed offset never passes the first line
of an unacknowledged or not yet emitted record, and never moves back. For
records of consecutive lines P is the end of the record's last line, as it
always was (the lowering never applies, and without lanes a cap's part is an
event of its own). The price of joining: while a thread's event is open the
file's commit point waits at its origin (until the thread's next line ends
it, or ``multiline_timeout`` after its last line), and events that overlap
one another hold it at the first one's origin until the last of them is
emitted.

After a crash (or a stop whose last acknowledgements did not come) the
reader resumes at the committed offset C, or at the spool recovery's resume
point: the ``end`` of a spooled record every predecessor of which is spooled
or delivered, so also such a P (its runs, records that begin where the
previous one ended, now break wherever ``end`` was held back, so it may
resume earlier than before, never later than is safe). What that guarantees:

- Nothing is lost: every line before C is in an acknowledged record, and
  every line from C on is read again.
- Nothing is indexed twice under two ids, by 3: in every thread the first
  line from C on began an event in the first read too (not a part after a
  cap cut), and a joiner's state after a line that begins an event depends
  on that line alone (``continues`` returning False leaves it as ``start``
  would). So each record that began at or after C is rebuilt with the same
  lines, parts and first line, hence the same document id, and the output
  drops the re-sends as duplicates. No fragment of a delivered traceback
  comes back as a document of its own.
- An event the first read ended by the clock (``multiline_timeout``, or a
  flush: the file closed, a reload, the stop) is ended at the same line on
  the re-read: the driver lists such cuts (``SourceParser.timed``), the
  agent keeps them on disk before the record is shipped (``agent.cuts``),
  and a parser for lines read again is given them (``cut_at``). Without
  that, the part before the cut, joined with its rest, would come back
  under the id the output already holds and the rest would be dropped with
  it as a duplicate.
- Except where grouping never was reproducible: an event cut by the limit
  of open events (it depends on the events open before C); for formats
  without lanes, a cap cut where C falls (the re-read begins that part
  afresh, mid-traceback, as it always did); and C right at the end of an
  event the clock ended, when the lines after it continue it without
  naming their writer (log4j's stack lines): the line that said whose they
  are lies before C. Those lines are re-read and may group differently
  than before (in the cases seen, into more records: some lines may be
  indexed twice).

The joiner protocol: ``start`` when a line begins an event with nothing open,
or in a lane whose event the driver emitted already (timeout, limit);
``continues`` for every other text line; ``reset`` when every open event was
emitted for another reason (JSON line, flush). ``in_traceback`` and ``lane``
are read right after each call.
"""

from __future__ import annotations

import re
from typing import Callable, Hashable, Protocol

from agent.parsing import tracebacks


def _is_blank(text: str) -> bool:
    return not text or text.isspace()


class Joiner(Protocol):
    """Decides, line by line, where text events begin. Holds its own state."""

    @property
    def in_traceback(self) -> bool:
        """Is the latest accepted line part of a traceback?"""
        ...

    def start(self, text: str) -> None:
        """An event begins with ``text`` (in its lane, whatever the joiner knew of it)."""
        ...

    def continues(self, text: str) -> bool:
        """True: ``text`` continues the open event (of its lane). False: it
        starts a new one (the joiner is now in that event's state, as after
        ``start``), which ends the lane's open event."""
        ...

    def reset(self) -> None:
        """Every open event was emitted for another reason (JSON line, timeout, flush)."""
        ...


class LaneJoiner(Joiner, Protocol):
    """A joiner that tells writers apart (see "Per-thread joining")."""

    # Read right after ``start`` / ``continues``: the lane of that line.
    # None: no particular writer (an event that ends at another lane's line).
    lane: Hashable | None


class PatternJoiner:
    """``multiline_start``: a matching line starts an event, others continue it."""

    in_traceback = False

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self._search = pattern.search

    def start(self, text: str) -> None:
        pass

    def continues(self, text: str) -> bool:
        return self._search(text) is None

    def reset(self) -> None:
        pass


# TracebackJoiner states.
_HEAD = 0  # an ordinary line: a traceback may follow it
_TAIL = 1  # only blank lines may still join (after a blank, or a blank-only event)
_BODY = 2  # in a traceback's frames, before its exception line
_GROUP = 3  # in an exception group (every line indented, "  | ...")
_EXC = 4  # right after an exception line (or its indented continuation)
_EXC_BLANK = 5  # blank lines after an exception line: a chain separator may follow
_CHAIN = 6  # after "During handling ..." / "The above exception ...": next traceback
# In logging's stack_info block: only its frames follow. logging writes the
# block last in a record (message, exc_info, then stack), and no exception
# line ends it, so any unindented line is the next record's.
_STACK = 7
_IN_TRACEBACK = frozenset({_BODY, _GROUP, _EXC, _EXC_BLANK, _CHAIN, _STACK})

# werkzeug's development-server notices (" * Restarting with stat"): indented,
# but never the continuation of an exception message before them. Only these
# exact openings: " * item" alone could be a message's own bullet list.
_SERVER_NOTICE = re.compile(
    r" \* (?:Restarting with |Running on |Serving Flask app |Debug mode: |Debugger is active!|Debugger PIN: "
    r"|Detected change in )")


class TracebackJoiner:
    """The default: join Python tracebacks to the log line before them."""

    def __init__(self) -> None:
        self._state = _HEAD

    @property
    def in_traceback(self) -> bool:
        return self._state in _IN_TRACEBACK

    def start(self, text: str) -> None:
        if _is_blank(text):
            self._state = _TAIL
        elif tracebacks.starts_traceback(text):
            self._state = _opening(text)
        else:
            self._state = _HEAD

    def reset(self) -> None:
        self._state = _HEAD

    def continues(self, text: str) -> bool:
        state = self._state
        blank = _is_blank(text)
        if state == _HEAD:
            if blank:
                self._state = _TAIL
                return True
            if tracebacks.starts_traceback(text):
                self._state = _opening(text)
                return True
            return False  # a new ordinary line: the state stays _HEAD
        if blank:
            if state == _EXC:
                self._state = _EXC_BLANK
            return True
        if state == _BODY:
            if text[0] in " \t":
                return True
            if tracebacks.exception_line(text) is not None:
                self._state = _EXC
                return True
        elif state == _GROUP or state == _STACK:
            if text[0] in " \t":
                return True
        elif state == _EXC:
            if text[0] in " \t" and not tracebacks.is_file_frame(text) and _SERVER_NOTICE.match(text) is None:
                # An indented continuation of the exception message. (A frame
                # line here opens a header-less SyntaxError of its own.)
                return True
            if text == tracebacks.STACK_HEADER:  # logging's stack_info after exc_info
                self._state = _STACK
                return True
        elif state == _CHAIN:  # the next traceback of the chain
            if text == tracebacks.HEADER or tracebacks.is_file_frame(text):
                self._state = _BODY
                return True
            if tracebacks.is_group_header(text):
                self._state = _GROUP
                return True
            self.start(text)
            return False
        if state != _TAIL and state != _STACK and text in tracebacks.CHAIN_SEPARATORS:
            self._state = _CHAIN
            return True
        self.start(text)
        return False


# Lanes a ``PrefixJoiner`` remembers (the driver holds at most 64 events open).
_MAX_LANES = 64


class PrefixJoiner:
    """Tracebacks whose every line carries a prefix: one lane per process tag.

    ``split(text)`` gives ``(lane, header, rest)``: the process tag a server
    writes before each line of a process's output (vLLM's ``(APIServer
    pid=1) ``, Ray's ``(ServeReplica:app:Model pid=42) ``; None without
    one), the log header repeated before every line of one record (vLLM's
    NewLineFormatter: ``ERROR 05-01 10:01:20 [engine.py:58] ``; "" without
    one), and the text after them. Each lane's ``rest`` texts are joined as
    ``TracebackJoiner`` joins a file's, whatever other lanes write in
    between; a line with a header continues its lane's event only if the
    event's first line had the same header (one record repeats it; another
    log call writes its own), and only as the traceback rules allow (two
    calls in the same second at the same line are two records). Lane None
    is the output of no tagged process (a Ray driver's own lines): as for
    every joiner, its event ends at the next line of another lane.
    """

    def __init__(self, split: Callable[[str], tuple[Hashable | None, str, str]]) -> None:
        self._split = split
        # Per lane: the Python view of its latest event, and that event's header.
        self._lanes: dict[Hashable | None, tuple[TracebackJoiner, str]] = {}
        self._tb = TracebackJoiner()  # the lane of the latest line
        self.lane: Hashable | None = None

    @property
    def in_traceback(self) -> bool:
        return self._tb.in_traceback

    def start(self, text: str) -> None:
        self._enter(*self._split(text))

    def continues(self, text: str) -> bool:
        lane, header, rest = self._split(text)
        entry = self._lanes.get(lane)
        if entry is None:
            self._enter(lane, header, rest)
            return False
        tb, first = entry
        self.lane = lane
        self._tb = tb
        if (not header or header == first) and tb.continues(rest):
            return True
        if header and header != first:
            tb.start(rest)
        self._lanes[lane] = (tb, header)
        return False

    def reset(self) -> None:
        self._lanes.clear()
        self._tb = TracebackJoiner()
        self.lane = None

    def _enter(self, lane: Hashable | None, header: str, rest: str) -> None:
        tb = TracebackJoiner()
        tb.start(rest)
        lanes = self._lanes
        lanes.pop(lane, None)  # oldest event first, like the driver's open events
        if len(lanes) >= _MAX_LANES:
            del lanes[next(iter(lanes))]
        lanes[lane] = (tb, header)
        self._tb = tb
        self.lane = lane


def _opening(text: str) -> int:
    """The state after a line that opens a traceback (``starts_traceback``)."""
    if text == tracebacks.STACK_HEADER:
        return _STACK
    return _GROUP if tracebacks.is_group_header(text) else _BODY
