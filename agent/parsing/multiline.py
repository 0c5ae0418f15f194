"""Joining a source's lines into events: tracebacks, a start pattern, caps, timeout.

``SourceParser`` is the per-source state machine behind ``agent.parsing``.
It MUST keep these promises, whatever the input and settings:

- ``feed`` / ``flush_expired`` / ``flush`` never raise (a bug in a format is
  caught, logged once, and the lines involved are emitted raw, tagged
  ``parse_failure``).
- No line is lost or duplicated: every Line fed ends up in exactly one Record,
  in order. Records of a source cover contiguous, non-overlapping ``[offset,
  end)`` ranges in order (given contiguous lines), so the registry can commit
  ``end`` of any acknowledged record.
- Tags of the lines carry over to their record (union, first-seen order).

How lines group (``Joiner``):

- A structured line (a JSON object) is a record on its own, emitted at once,
  after whatever text event was pending. It never joins text.
- ``multiline_start`` set (``PatternJoiner``): a text line the pattern finds
  (``re.search``) starts a new event, any other continues the pending one
  (or starts one if nothing is pending): Filebeat's negate/after.
- Otherwise (``TracebackJoiner``): a Python traceback (see ``tracebacks``)
  joins the log line right before it, including chained exceptions,
  exception groups, carets and SyntaxError output; a traceback with no log
  line before it is a record of its own. Every other text line starts an
  event.

Blank lines: a blank (empty or whitespace-only) line continues whatever event
is pending, in both modes. Inside a traceback that is what Python writes
around chain separators; after an ordinary line it is a trailing blank that
belongs to it. Either way the offsets cover it and it is stripped from the
end of the message. A blank line with nothing pending (start of file, after a
JSON line, after a timeout) starts an event of its own, which other blank
lines join, and is emitted as a record with message "" - never dropped. In the
traceback mode, a traceback after a blank line does not join the line before
the blank: Python's logging never writes one there.

Per-thread joining (a joiner that tells events of several writers apart,
e.g. TorchServe's worker threads): a record's ``[offset, end)`` must stay one
contiguous range, so an event is only ever made of consecutive lines. When
another writer's line interrupts a traceback, the joiner ends the event there
with ``cut`` set (the record is tagged ``multiline_split``, like a cap cut);
when the interrupted writer's traceback goes on, the new event ``resumed`` it:
it is tagged ``multiline_split`` too, its message is only its own lines, and
its ``error`` (type, message, stack_trace) is read from the whole traceback so
far. Why not one record per traceback: the registry commits the end of the
longest acknowledged prefix of records, so a record whose lines were
interleaved with another record's could have its first lines committed (and
lost on a crash) before it was acknowledged.

Messages: the first line's ``head`` may give the message text (a format that
reads a prefix into fields); later lines go through the format's ``body``.
``head`` is asked when an event begins, so a format whose state changes (the
auto-detecting format) describes each event by the state it began in.

Caps: an event that would exceed ``multiline_max_lines`` lines or
``multiline_max_bytes`` (UTF-8 bytes of the joined message) is emitted tagged
``multiline_split``; the continuation lines form the next record, tagged the
same, and the grouping goes on as if no cut happened.

Timing: text lines are held until the line after them shows whether they
continue (any plain line may be followed by a traceback), or until
``flush_expired(now)`` finds that the last line was read more than
``multiline_timeout`` seconds before ``now``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

from agent.events import TAG_MULTILINE_SPLIT, TAG_PARSE_FAILURE, Line, Record, Source
from agent.parsing import tracebacks
from agent.selflog import get_logger

if TYPE_CHECKING:
    from agent.parsing.base import LineFormat, TextInfo
    from agent.parsing.settings import ParseSettings

_log = get_logger("parsing")


def _is_blank(text: str) -> bool:
    return not text or text.isspace()


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Joiner(Protocol):
    """Decides, line by line, where text events begin. Holds its own state."""

    @property
    def in_traceback(self) -> bool:
        """Is the latest accepted line part of a traceback?"""
        ...

    def start(self, text: str) -> None:
        """An event begins with ``text``."""
        ...

    def continues(self, text: str) -> bool:
        """True: ``text`` continues the pending event (accepted). False: it
        starts a new one (the joiner is now in that event's state, as after
        ``start``)."""
        ...

    def reset(self) -> None:
        """The pending event was emitted for another reason (JSON line, timeout, flush)."""
        ...

    # Read right after ``continues`` returned False: the event that just ended
    # is unfinished (a traceback interrupted by another writer's line).
    cut: bool
    # Read right after ``start`` or a False ``continues``: the new event goes on
    # with an interrupted traceback; these are that traceback's earlier lines
    # (message texts). None: it does not.
    resumed: tuple[str, ...] | None


class PatternJoiner:
    """``multiline_start``: a matching line starts an event, others continue it."""

    in_traceback = False
    cut = False
    resumed: tuple[str, ...] | None = None

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

    cut = False
    resumed: tuple[str, ...] | None = None

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


def _union_tags(lines: list[Line], *more: tuple[str, ...]) -> tuple[str, ...]:
    tags: list[str] = []
    for group in [line.tags for line in lines] + list(more):
        for tag in group:
            if tag not in tags:
                tags.append(tag)
    return tuple(tags)


def _traceback_start(texts: list[str]) -> int | None:
    for index, text in enumerate(texts):
        if text == tracebacks.HEADER or tracebacks.is_group_header(text):
            return index
    return None


class SourceParser:
    """Turns one source's Lines into Records; holds the pending multi-line event."""

    def __init__(self, settings: ParseSettings, source: Source, line_format: LineFormat) -> None:
        self.source = source
        self._format = line_format
        self._joiner: Joiner = line_format.joiner()
        self._pattern_mode = settings.multiline_start is not None
        self._keep_original = settings.keep_original
        self._max_lines = settings.multiline_max_lines
        self._max_bytes = settings.multiline_max_bytes
        self._timeout = settings.multiline_timeout
        self._lines: list[Line] = []
        self._bytes = 0
        self._last_read = 0.0
        self._split = False  # the pending event continues one cut at a cap
        self._tb_start: int | None = None  # index in _lines where a traceback begins
        self._info: TextInfo | None = None  # the pending event's head, read when it began
        self._resumed: tuple[str, ...] | None = None  # see Joiner.resumed
        from agent.parsing.base import overrides  # (base imports this module)
        self._bodies = overrides(type(line_format), "body")
        self._out: list[Record] = []
        self._failed_once = False

    # -- public ---------------------------------------------------------------

    def feed(self, line: Line) -> list[Record]:
        """Records completed by ``line`` (often none or one)."""
        try:
            record = self._format.structured(line)
            if record is not None and not self._lines:
                return [record]  # the JSON hot path: nothing pending, nothing to join
            self._feed(line, record)
        except Exception as error:  # noqa: BLE001 - the never-raise promise
            self._recover(error, line)
        return self._drain()

    def flush_expired(self, now: float) -> list[Record]:
        """Emit the pending event if its last line was read over ``timeout`` before ``now``."""
        if self._lines and now - self._last_read > self._timeout:
            return self.flush()
        return []

    def flush(self) -> list[Record]:
        """Emit everything pending (file closed, end of ``--once``)."""
        try:
            if self._lines:
                self._take()
            self._joiner.reset()
        except Exception as error:  # noqa: BLE001
            self._recover(error, None)
        return self._drain()

    def pending(self) -> bool:
        return bool(self._lines)

    # -- the state machine ----------------------------------------------------

    def _feed(self, line: Line, record: Record | None) -> None:
        if record is not None:
            if self._lines:
                self._take()
                self._joiner.reset()
            self._out.append(record)
            return
        text = line.text
        size = _utf8_len(text)
        if not self._lines:
            self._joiner.start(text)
            self._begin(line, size, split=False)
        elif self._joiner.continues(text):
            if len(self._lines) >= self._max_lines or self._bytes + 1 + size > self._max_bytes:
                self._take(split=True)
                self._begin(line, size, split=True)
            else:
                self._lines.append(line)
                self._bytes += 1 + size
                self._last_read = line.read_time
                if self._tb_start is None and self._joiner.in_traceback:
                    self._tb_start = len(self._lines) - 1
        else:  # the joiner has started the new event already
            self._take(split=self._joiner.cut)
            self._begin(line, size, split=False)

    def _begin(self, line: Line, size: int, split: bool) -> None:
        # The head first: if it raises, nothing is half-set (``_recover``).
        info = self._format.head(line.text)
        resumed = self._joiner.resumed
        self._lines = [line]
        self._bytes = size
        self._last_read = line.read_time
        self._split = split or resumed is not None
        self._tb_start = 0 if self._joiner.in_traceback else None
        self._info = info
        self._resumed = resumed

    def _take(self, split: bool = False) -> None:
        """Build the pending event's record, then clear it (in that order, so a
        failure while building leaves the lines for ``_recover``)."""
        record = self._build(split)
        self._lines = []
        self._bytes = 0
        self._split = False
        self._tb_start = None
        self._info = None
        self._resumed = None
        self._out.append(record)

    def _drain(self) -> list[Record]:
        out = self._out
        self._out = []
        return out

    def _build(self, split: bool) -> Record:
        lines = self._lines
        first = lines[0]
        info = self._info
        if info is None:  # (cannot happen: every event begins in _begin)
            info = self._format.head(first.text)
        fields = info.fields
        split = split or self._split
        if len(lines) == 1 and self._tb_start is None:
            text = first.text
            tags = first.tags
            if info.tags or split or len(tags) > 1:  # (a line's own tags may repeat)
                tags = _union_tags(lines, info.tags, (TAG_MULTILINE_SPLIT,) if split else ())
            message = info.message if info.message is not None else text
            return Record(first.source, first.offset, first.end, "" if message.isspace() else message,
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
        tb_start = self._tb_start
        if tb_start is None and self._pattern_mode:
            tb_start = _traceback_start(texts[:last])
        if tb_start is not None and tb_start < last and "error" not in fields:
            if self._resumed is not None:
                self._add_error(fields, list(self._resumed) + texts[tb_start:last], from_start=True)
            else:
                self._add_error(fields, texts[tb_start:last], from_start=not (self._split and tb_start == 0))
        # A head with nothing after its prefix (Triton's table heading): the
        # message starts with what follows, not with an empty line.
        start = 1 if not texts[0] and info.message is not None and last > 1 else 0
        return Record(first.source, first.offset, lines[-1].end, "\n".join(texts[start:last]),
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
        """A bug, not an input problem: emit the lines involved raw, reset."""
        if not self._failed_once:
            self._failed_once = True
            _log.error("parser failed; lines emitted unparsed", exc_info=True,
                       path=self.source.path, error=type(error).__name__)
        lines = self._lines
        if line is not None and not any(pending is line for pending in lines):
            lines = lines + [line]
        self._lines, self._bytes, self._split, self._tb_start = [], 0, False, None
        self._info = self._resumed = None
        try:
            self._joiner.reset()
        except Exception:  # noqa: BLE001
            self._joiner = _BrokenJoiner()
        if not lines:
            return
        reason = f"internal parser error: {type(error).__name__}"
        texts = [pending.text for pending in lines]
        last = len(texts)
        while last and _is_blank(texts[last - 1]):
            last -= 1
        first = lines[0]
        self._out.append(Record(first.source, first.offset, lines[-1].end, "\n".join(texts[:last]),
                                first.read_time, None, {}, _union_tags(lines, (TAG_PARSE_FAILURE,)),
                                "\n".join(texts) if self._keep_original else None, reason, len(lines)))


class _BrokenJoiner:
    """Stand-in after a joiner failed to reset: every line is its own event."""

    in_traceback = False
    cut = False
    resumed: tuple[str, ...] | None = None

    def start(self, text: str) -> None:
        pass

    def continues(self, text: str) -> bool:
        return False

    def reset(self) -> None:
        pass
