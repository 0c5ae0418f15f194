"""Handing spooled records out: ``DiskQueue.take`` and its read cursor.

``TakeMixin`` is the consumer's side of ``DiskQueue``; queue.py sets the
state it uses (``__init__``) and gives the lock order it follows.

Invariants:

* ``take`` hands out records in append order, each at most once per open;
  after ``open`` every unacknowledged intact record is handed out again, in
  order (on-disk format: frames.py, segment.py; what open does: recovery.py).
* ``take`` hands out a ``Taken``: the events and ``RefRun``s, each naming
  consecutive records, so that handing out and acknowledging cost a few
  steps per run, not per record (ack.py takes them back).
* A frame found damaged while running (the disk changed under us) loses the
  records from it to the end of that segment's unread part, with a warning.

Reading: the newest ``cache_bytes`` of appended batches stay in memory
(cache.py), so a consumer that keeps up never reads the disk; one that falls
behind reads segments back in 1 MiB chunks until it catches up.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from agent.errors import StateError
from agent.selflog import get_logger
from agent.spool.ack import _OPEN
from agent.spool.frames import HEADER_SIZE
from agent.spool.segment import Segment, SegmentReader, Taken

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.clock import Clock
    from agent.spool.cache import TailCache

log = get_logger("spool")


class TakeMixin:
    """``DiskQueue``'s consumer side; see the module docstring."""

    # What this side uses of DiskQueue: state set in queue.py's __init__, and
    # methods of queue.py and ack.py.
    _state: str
    _clock: Clock
    _lock: threading.Lock
    _ack_lock: threading.Lock
    _take_lock: threading.Lock
    _readable: threading.Event
    _woken: bool
    _segments: dict[int, Segment]
    _pending: int
    _tail: TailCache
    _cur_seg: int
    _cur_ord: int
    _cur_pos: int
    _reader: SegmentReader | None
    _require_open: Callable[[], bool]
    _delete: Callable[[Segment], None]

    def take(self, max_events: int, max_bytes: int, timeout: float) -> Taken:
        """The next records not handed out yet, in append order: at most
        ``max_events``, and no more data bytes than ``max_bytes`` except that
        the record reaching the limit is included (so at least one always is).
        Waits up to ``timeout`` seconds for at least one; empty if none came,
        if ``wake`` was called, or if the queue was closed."""
        if not self._require_open():
            return Taken()
        deadline = self._clock.monotonic() + timeout
        while True:
            with self._take_lock:
                if self._state != _OPEN:
                    return Taken()
                self._readable.clear()  # before looking: an append after it sets it again
                out = self._collect(max(1, max_events), max(1, max_bytes))
            if out or self._woken:
                self._woken = False
                return out
            wait = deadline - self._clock.monotonic()
            if wait <= 0:
                return out
            self._clock.wait(self._readable, wait)

    def wake(self) -> None:
        """Make a waiting ``take`` return now (with what there is, maybe nothing)."""
        self._woken = True
        self._readable.set()

    def _collect(self, max_events: int, max_bytes: int) -> Taken:
        out = Taken()
        while len(out) < max_events and out.nbytes < max_bytes:
            with self._lock:
                segment = self._advance()
                if segment is None:
                    break
                seg_id = segment.id
                tail_start = self._tail.start_in(seg_id)
                if tail_start is not None and tail_start[0] == self._cur_ord:
                    self._cur_ord, self._cur_pos = self._tail.serve(
                        seg_id, segment.acked, max_events - len(out), max_bytes - out.nbytes, out)
                    continue
                if tail_start is not None and tail_start[0] < self._cur_ord:
                    # Cannot happen (the tail never holds handed-out records);
                    # if it did, looping on it forever would be the worst outcome.
                    log.error("spool memory tail is behind the read cursor; dropping it",
                              segment=seg_id, tail=tail_start[0], cursor=self._cur_ord)
                    self._tail.drop_before(seg_id + 1)
                    continue
                # Read the disk up to where the tail starts, or to the segment's end.
                stop, stop_pos = tail_start or (segment.count, segment.size)
                limit = segment.size
            # Disk reads happen outside _lock: the writer and ackers carry on.
            reader = self._reader
            try:
                if reader is None or reader.seg_id != seg_id:
                    if reader is not None:
                        reader.close()
                    self._reader = None
                    reader = self._reader = SegmentReader(segment)
                ordinal, pos, reason = reader.read(
                    self._cur_ord, self._cur_pos, stop, limit, segment.acked, segment.damaged,
                    max_events - len(out), max_bytes - out.nbytes, out)
            except OSError as error:
                raise StateError(f"cannot read spool segment {segment.path}: {error}") from error
            self._cur_ord, self._cur_pos = ordinal, pos
            if reason:
                self._lose_rest(segment, stop, stop_pos, reason)
        return out

    def _advance(self) -> Segment | None:
        """The segment holding the record at the cursor, moving the cursor past
        finished segments; None at the write head. Called with _lock held."""
        while True:
            segment = self._segments.get(self._cur_seg)
            if segment is not None and self._cur_ord < segment.count:
                return segment
            if segment is not None and not segment.sealed:
                return None
            later = [seg_id for seg_id in self._segments if seg_id > self._cur_seg]
            if not later:
                return None
            self._cur_seg, self._cur_ord, self._cur_pos = later[0], 0, HEADER_SIZE
            # Batches of a segment the cursor left (possible only if refs
            # acknowledged records not handed out yet) can never be served.
            self._tail.drop_before(self._cur_seg)

    def _lose_rest(self, segment: Segment, stop: int, stop_pos: int, reason: str) -> None:
        """A frame read back is damaged: count the records up to ``stop`` (whose
        frame starts at ``stop_pos``) as
        gone so the segment can still be freed. They are not written to the
        ack file: the next open finds the damage again and reports it."""
        with self._ack_lock:
            with self._lock:
                # Stand-in positions: lost records are not written to the ack file.
                lost = segment.mark(self._cur_ord, range(self._cur_ord, stop), [])
                self._pending -= lost
                damaged_at = self._cur_pos
                self._cur_ord, self._cur_pos = stop, stop_pos
                delete = segment.sealed and segment.fully_acked and not segment.deleting
                if delete:
                    segment.deleting = True
            log.warning("spool frame damaged while reading; records lost", segment=str(segment.path),
                        offset=damaged_at, records=lost, reason=reason)
            if delete:
                self._delete(segment)
