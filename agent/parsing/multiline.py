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
  line before it is a record of its own. Every other text line starts an
  event.

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
``ThreadJoiner``: one lane per log4j thread name) sets ``lane`` after each
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
the document id). Its ``end`` is not its last line's end but W = min(M, O):
M the largest end of a line in the records emitted so far (this one
included), O the first offset of the oldest event still open right after
this record is emitted (no open event: W = M). Lines are fed in file order.

1. W never decreases, in emission order: between two emissions M only grows,
   events that close leave the open set, and an event opened meanwhile
   starts at a line fed after every line counted in M, so at or after
   M >= W. Hence also: a record emitted after R starts at or after R.end.
2. Every line before W belongs to R or a record emitted before R: a line
   that ends at or before W <= M was fed already; it is not in an event open
   after R (those start at or after O >= W) nor in a later one (those start
   at lines not fed yet).

So if every record of a file up to R (in emission order) is acknowledged,
every line before R.end was delivered. The AckTracker registers events in
emission order and commits the ``end`` of the last event of the
acknowledged prefix: the committed offset never passes the first line of an
unacknowledged or not yet emitted record, and never moves back. For
contiguous records W is the end of the record's last line, as always. The
price of joining: while a thread's event is open, the file's commit point
waits at that event's first line (until the thread's next line ends it, or
``multiline_timeout`` after its last line).

After a crash (or a stop whose last acknowledgements did not come) the
reader resumes at the committed offset C, or at the spool recovery's resume
point, the ``end`` of a spooled record every predecessor of which is spooled
or delivered: also a W, with the same two properties (the recovery's runs,
records that start where the previous one ended, now break wherever an
older open event held ``end`` back, so it may resume earlier than before;
never later than is safe). What is guaranteed and what it costs:

- Nothing is lost: every line before C is in an acknowledged record, every
  line after C is read again.
- A record that began at or after C is rebuilt from the same first line,
  so with the same document id, and a re-send is dropped as a duplicate.
  For a thread whose first line after C began an event in the first read,
  the re-read starts in the same joiner state, so its records come out the
  same (events cut by the timeout or MAX_OPEN aside: those depend on timing).
- The edge case: a record emitted before the crash that began before C
  but had lines after C, i.e. a traceback of one thread interleaved with
  the older open event (of another thread) that held C back. Its lines
  after C are read again without their beginning: they become documents of
  their own (a frame, a headerless traceback, an exception line) with new
  ids, so that continuation fragment of an already-delivered traceback is
  indexed a second time, and the same thread's lines right after it may
  group with the fragment rather than as before (again delivered twice if
  they had been). Only lines after C of such interleaved records are
  affected; without interleaving (or after a clean stop whose
  acknowledgements all came) there is no fragment.

The joiner protocol: ``start`` when an event begins with nothing open,
``continues`` for every other text line, ``reset`` when every open event was
emitted for another reason (JSON line, flush). ``in_traceback`` and ``lane``
are read right after each call.
"""

from __future__ import annotations

import re
from typing import Hashable, Protocol

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
_IN_TRACEBACK = frozenset({_BODY, _GROUP, _EXC, _EXC_BLANK, _CHAIN})
_UNFINISHED = frozenset({_BODY, _GROUP, _CHAIN})


class TracebackJoiner:
    """The default: join Python tracebacks to the log line before them."""

    def __init__(self) -> None:
        self._state = _HEAD

    @property
    def in_traceback(self) -> bool:
        return self._state in _IN_TRACEBACK

    @property
    def unfinished(self) -> bool:
        """In a traceback whose exception line has not come yet."""
        return self._state in _UNFINISHED

    def start(self, text: str) -> None:
        if _is_blank(text):
            self._state = _TAIL
        elif tracebacks.starts_traceback(text):
            self._state = _GROUP if tracebacks.is_group_header(text) else _BODY
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
                self._state = _GROUP if tracebacks.is_group_header(text) else _BODY
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
        elif state == _GROUP:
            if text[0] in " \t":
                return True
        elif state == _EXC:
            if text[0] in " \t" and not tracebacks.is_file_frame(text):
                # An indented continuation of the exception message. (A frame
                # line here opens a header-less SyntaxError of its own.)
                return True
            if text == tracebacks.STACK_HEADER:  # logging's stack_info after exc_info
                self._state = _BODY
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
        if state != _TAIL and text in tracebacks.CHAIN_SEPARATORS:
            self._state = _CHAIN
            return True
        self.start(text)
        return False
