"""The spool's in-memory tail: the newest appended batches, so that a
consumer keeping up with the writer is served without reading the disk.

Guarantee: what the cache holds, from ``head`` of its first batch to the end,
is a contiguous run of records not handed out yet that ends at the write
head, with exactly the events and frame positions that are on disk. It is
bounded by ``limit`` encoded bytes: when over, the oldest batches are
dropped, and the consumer reads them from the disk instead. Not thread-safe:
the queue calls it under its table lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from agent.events import Event
from agent.spool.segment import RecordRef, SpooledEvent

# (segment id, ordinal of the first record, position of the batch, frame
# starts relative to it, events, encoded size)
_Batch = tuple[int, int, int, list[int], tuple[Event, ...], int]


class TailCache:
    __slots__ = ("limit", "_batches", "_bytes", "_head")

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._batches: deque[_Batch] = deque()
        self._bytes = 0
        self._head = 0  # records of the first batch before this were handed out

    def add(self, seg_id: int, first: int, base: int, starts: list[int],
            events: Sequence[Event], size: int) -> None:
        if not self.limit:
            return
        # A copy: the caller may reuse its list.
        self._batches.append((seg_id, first, base, starts, tuple(events), size))
        self._bytes += size
        while self._bytes > self.limit:
            self._drop_first()

    def _drop_first(self) -> None:
        self._bytes -= self._batches.popleft()[5]
        self._head = 0

    def drop_before(self, seg_id: int) -> None:
        """Forget batches of segments before ``seg_id`` (the cursor left them)."""
        while self._batches and self._batches[0][0] < seg_id:
            self._drop_first()

    def start_in(self, seg_id: int) -> tuple[int, int] | None:
        """(ordinal, position) of the first cached record if it is in ``seg_id``."""
        if not self._batches or self._batches[0][0] != seg_id:
            return None
        _, first, base, starts, _, _ = self._batches[0]
        return first + self._head, base + starts[self._head]

    def serve(self, seg_id: int, acked: bytearray, max_events: int, max_bytes: int,
              out: list[SpooledEvent]) -> tuple[int, int, int]:
        """Hand out unacknowledged records of the first batch, which must start
        at the cursor. Returns (next ordinal, its position, data bytes added)."""
        _, first, base, starts, events, size = self._batches[0]
        i, n = self._head, len(events)
        nbytes = 0
        taken = 0
        while i < n and taken < max_events and nbytes < max_bytes:
            event = events[i]
            if not acked[first + i]:
                out.append(SpooledEvent(event, RecordRef(seg_id, first + i, base + starts[i])))
                nbytes += len(event.data)
                taken += 1
            i += 1
        if i == n:
            self._drop_first()
            return first + n, base + size, nbytes
        self._head = i
        return first + i, base + starts[i], nbytes
