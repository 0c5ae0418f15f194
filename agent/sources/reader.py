"""Cutting one file's bytes into ``Line`` values.

``LineReader`` is fed the bytes of a file in order (whatever chunks the
tailer read) and returns the complete lines they hold. It keeps the unfinished
last line until its newline arrives or the tailer decides to ``flush`` it as a
partial line.

Guarantees:

* offsets: ``Line.offset`` is the file offset of the line's first byte and
  ``Line.end`` the offset just after its newline (after the bytes emitted, for
  a partial line). Consecutive lines tile the file: one's ``end`` is the
  next one's ``offset``, also across a flushed partial line and over-long lines;
* text is UTF-8 without the ``\\n`` and one trailing ``\\r``; undecodable bytes
  are replaced (U+FFFD) and the line tagged ``TAG_INVALID_UTF8``;
* a line longer than ``max_line_bytes`` keeps its first ``max_line_bytes``
  bytes (never cutting a UTF-8 character in two), the rest is skipped up to the
  newline without being held in memory, and it is tagged ``TAG_TRUNCATED``.
  Memory per file is bounded by ``max_line_bytes`` plus one chunk;
* ``cuts`` (from ``agent.cuts``: where partial lines ended when the bytes
  were read before a crash): a line is cut at each of those offsets as the
  earlier ``flush`` cut it, tagged ``TAG_PARTIAL``, whatever follows there
  now, so a file read again gives the same lines;
* NUL bytes are no text: a log writer never writes them, a file system or a
  preallocating writer leaves them (a region extended by ``ftruncate`` or
  ``fallocate``, a memory-mapped appender's unwritten tail, the unwritten
  blocks a power loss leaves in a file). They are left out of a line's text
  and do not count towards ``max_line_bytes`` (a megabyte of them before a
  line must not push the line out), but their bytes stay inside the line's
  ``offset``..``end``, so lines still tile the file. A run of them at the end
  of what was fed may be bytes not written yet: ``trailing_nuls`` says how
  many, ``unread_trailing_nuls`` gives them back (the tailer reads them again
  once the file changed), ``skip_zeros`` takes a file system hole as NULs
  without reading it; ``nul_bytes`` counts those left out of lines.

It is the hot loop of the agent: it splits whole chunks with ``bytes.split``
and never walks bytes one at a time in Python.
"""

from __future__ import annotations

from agent.events import TAG_INVALID_UTF8, TAG_PARTIAL, TAG_TRUNCATED, Line, Source, new

_NO_TAGS: tuple[str, ...] = ()
_INVALID = (TAG_INVALID_UTF8,)
_CUT = (TAG_TRUNCATED,)


def decode(raw: bytes) -> tuple[str, tuple[str, ...]]:
    """Text of a line's bytes (terminator already removed except a ``\\r``)."""
    try:
        text = raw.decode()
        tags = _NO_TAGS
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
        tags = _INVALID
    if text[-1:] == "\r":
        text = text[:-1]
    return text, tags


def decode_cut(raw: bytes) -> tuple[str, tuple[str, ...]]:
    """Text of the kept head of an over-long line.

    The cut may fall inside a multi-byte character; that fragment is dropped
    rather than reported as invalid UTF-8, since the writer did nothing wrong.
    """
    try:
        return raw.decode(), _NO_TAGS
    except UnicodeDecodeError as error:
        if error.reason == "unexpected end of data" and len(raw) - error.start < 4:
            return decode(raw[:error.start])
        return raw.decode("utf-8", "replace"), _INVALID


class LineReader:
    """The line-cutting state of one file's content.

    ``offset`` is the file offset of the first byte not yet emitted;
    ``read_pos`` the offset of the next byte to feed.
    """

    __slots__ = ("offset", "max_line_bytes", "nul_bytes", "_pending", "_skipped", "_nuls", "_trailing", "_cuts")

    def __init__(self, offset: int, max_line_bytes: int, cuts: list[int] | None = None) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self.offset = offset
        self.max_line_bytes = max_line_bytes
        self.nul_bytes = 0  # NUL bytes left out of the lines emitted (and the unfinished one)
        self._pending = bytearray()  # kept bytes of the unfinished line
        self._skipped = 0  # bytes of the unfinished line dropped past max_line_bytes
        self._nuls = 0  # NUL bytes of the unfinished line (not kept)
        self._trailing = 0  # of those, the run at its end (maybe not written yet)
        self._cuts: list[int] = []
        if cuts:
            self.cut_at(cuts)

    def cut_at(self, cuts: list[int]) -> None:
        """Cut a line at each of these offsets (ahead of ``read_pos``) as ``flush`` did there before."""
        start = self.read_pos
        self._cuts = sorted(point for point in set(cuts) | set(self._cuts) if point > start)

    @property
    def read_pos(self) -> int:
        return self.offset + len(self._pending) + self._skipped + self._nuls

    @property
    def has_pending(self) -> bool:
        """True if bytes of an unfinished line are held."""
        return bool(self._pending) or self._skipped > 0 or self._nuls > 0

    @property
    def trailing_nuls(self) -> int:
        """The NUL bytes that end what was fed, after the last newline (0 if none)."""
        return self._trailing

    def unread_trailing_nuls(self) -> int:
        """Give back the ``trailing_nuls`` (``read_pos`` moves back before
        them): they may be a region not written yet, to be read again."""
        count = self._trailing
        self._nuls -= count
        self.nul_bytes -= count
        self._trailing = 0
        return count

    def skip_zeros(self, count: int, source: Source | None, now: float) -> list[Line]:
        """``feed`` of ``count`` NUL bytes (a hole the file system reported),
        without reading or making them."""
        if self._cuts and self._cuts[0] <= self.read_pos + count:
            return self.feed(bytes(count), source, now)  # a recorded cut inside: cut it there
        self._nuls += count
        self._trailing += count
        self.nul_bytes += count
        return []

    def reset(self, offset: int) -> None:
        """Forget the unfinished line and the cuts; continue at ``offset`` (truncation: new content)."""
        self._forget(offset)
        self._cuts = []

    def _forget(self, offset: int) -> None:
        self.offset = offset
        self._pending = bytearray()
        self._skipped = 0
        self._nuls = 0
        self._trailing = 0

    def feed(self, data: bytes, source: Source | None, now: float) -> list[Line]:
        """The lines completed by ``data``, the bytes at ``read_pos``.

        ``source`` may be None only if the caller knows ``data`` holds no
        newline (identity is assigned when the first line is about to be emitted).
        """
        cuts = self._cuts
        if cuts and cuts[0] <= self.read_pos + len(data):
            return self._feed_cut(data, source, now)
        return self._feed(data, source, now)

    def _feed_cut(self, data: bytes, source: Source | None, now: float) -> list[Line]:
        """``feed`` where a cut falls: the bytes up to it, the partial line it ends, the rest."""
        lines: list[Line] = []
        cuts = self._cuts
        while cuts and cuts[0] <= self.read_pos + len(data):
            split = cuts.pop(0) - self.read_pos
            if split > 0:
                lines += self._feed(data[:split], source, now)
                data = data[split:]
            if self.has_pending:
                lines.append(self._take(source, now, (TAG_PARTIAL,), 0))
        return lines + self._feed(data, source, now)

    def _feed(self, data: bytes, source: Source | None, now: float) -> list[Line]:
        lines: list[Line] = []
        if not data:
            return lines
        if data[:1] == b"\0" and data == bytes(len(data)):
            # Only NULs (a preallocated tail read again): counted, not scanned
            # byte by byte (bytes.replace takes 18 ms a megabyte).
            count = len(data)
            self._nuls += count
            self._trailing += count
            self.nul_bytes += count
            return lines
        start = 0
        if self._pending or self._skipped or self._nuls:
            newline = data.find(b"\n")
            if newline < 0:
                self._hold(data)
                return lines
            self._hold(data[:newline])
            lines.append(self._take(source, now, _NO_TAGS, 1))
            start = newline + 1
        data = data[start:] if start else data
        offset = self.offset
        limit = self.max_line_bytes
        append = lines.append
        nul = b"\0" in data
        if data.isascii() and b"\r" not in data and not nul:
            # The common chunk: one decode for all its lines (a character is a
            # byte), no line to repair, none ending in a carriage return.
            texts = data.decode("ascii").split("\n")
            tail_text = texts.pop()
            for text in texts:
                size = len(text)
                end = offset + size + 1
                if size <= limit:
                    append(new(Line, (source, offset, end, text, now, _NO_TAGS)))
                else:
                    append(new(Line, (source, offset, end, text[:limit], now, _CUT)))
                offset = end
            self.offset = offset
            if tail_text:
                self._hold(tail_text.encode("ascii"))
            return lines
        parts = data.split(b"\n")
        tail = parts.pop()
        for raw in parts:
            end = offset + len(raw) + 1
            if nul:
                size = len(raw)
                raw = raw.replace(b"\0", b"")
                self.nul_bytes += size - len(raw)
            size = len(raw)
            if size <= limit:
                # decode() inlined: this loop runs once per line read.
                try:
                    text = raw.decode()
                    tags = _NO_TAGS
                except UnicodeDecodeError:
                    text = raw.decode("utf-8", "replace")
                    tags = _INVALID
                if text[-1:] == "\r":
                    text = text[:-1]
            else:
                text, tags = decode_cut(raw[:limit])
                tags = (TAG_TRUNCATED, *tags)
            append(new(Line, (source, offset, end, text, now, tags)))  # (events.new: every field, in order)
            offset = end
        self.offset = offset
        if tail:
            self._hold(tail)
        return lines

    def flush(self, source: Source | None, now: float) -> Line | None:
        """Emit the unfinished line as a partial line (None if there is none)."""
        if not self.has_pending:
            return None
        return self._take(source, now, (TAG_PARTIAL,), 0)

    def _hold(self, data: bytes) -> None:
        if b"\0" in data:
            written = data.rstrip(b"\0")
            kept = written.replace(b"\0", b"") if b"\0" in written else written
            self._nuls += len(data) - len(kept)
            self.nul_bytes += len(data) - len(kept)
            self._trailing = len(data) - len(written) if written else self._trailing + len(data)
            data = kept
        elif data:
            self._trailing = 0
        if self._skipped:
            self._skipped += len(data)
            return
        self._pending += data
        excess = len(self._pending) - self.max_line_bytes
        if excess > 0:
            del self._pending[self.max_line_bytes:]
            self._skipped = excess

    def _take(self, source: Source | None, now: float, extra: tuple[str, ...],
              terminator: int) -> Line:
        """The held line as a Line ending ``terminator`` bytes after it; forget it."""
        raw = bytes(self._pending)
        if self._skipped:
            text, tags = decode_cut(raw)
            tags = (TAG_TRUNCATED, *tags)
        else:
            text, tags = decode(raw)
        end = self.read_pos + terminator
        line = Line(source, self.offset, end, text, now, (*extra, *tags))  # type: ignore[arg-type]
        self._forget(end)
        return line

