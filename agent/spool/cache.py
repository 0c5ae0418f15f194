"""The spool's cache of its in-memory tail: the newest appended batches, so that a
consumer keeping up with the writer is served without reading the disk.

Guarantee: what the cache holds, from ``head`` of its first batch to the end,
is a contiguous run of records not handed out yet that ends at the write
head, with exactly the events and frame positions that are on disk. It is
bounded by ``limit`` encoded bytes: when over, the oldest batches are
dropped, and the consumer reads them from the disk instead. Not thread-safe:
the queue calls it under its table lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from itertools import accumulate
from operator import attrgetter

from agent.events import Event
from agent.spool.segment import Taken

_DATA = attrgetter("data")

# (segment id, ordinal of the first record, absolute frame positions, events,
# cumulative data bytes (len(events) + 1 entries, from 0), encoded size)
_Batch = tuple[int, int, list[int], tuple[Event, ...], list[int], int]


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
        # map over C callables: no Python-level step per event.
        positions = list(map(base.__add__, starts))
        events = tuple(events)  # a copy: the caller may reuse its list
        cumulative = list(accumulate(map(len, map(_DATA, events)), initial=0))
        self._batches.append((seg_id, first, positions, events, cumulative, size))
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
        _, first, positions, _, _, _ = self._batches[0]
        return first + self._head, positions[self._head]

    def serve(self, seg_id: int, acked: bytearray, max_events: int, max_bytes: int,
              taken: Taken) -> tuple[int, int]:
        """Hand out unacknowledged records of the first batch, which must start
        at the cursor, as runs of consecutive records (slices, not a step per
        record). Returns (next ordinal, its position)."""
        _, first, positions, events, cumulative, size = self._batches[0]
        i, n = self._head, len(events)
        nbytes = 0
        while i < n and max_events > 0 and nbytes < max_bytes:
            if acked[first + i]:  # acknowledged before it was handed out: skip it
                i += 1
                continue
            found = acked.find(1, first + i, first + n)
            stop = n if found < 0 else found - first
            stop = min(stop, i + max_events)
            # Records are taken while the bytes before them are under the
            # budget: the one that reaches it is the last.
            stop = bisect_left(cumulative, cumulative[i] + max_bytes - nbytes, i + 1, stop)
            run_bytes = cumulative[stop] - cumulative[i]
            taken.add(seg_id, first + i, events[i:stop], positions[i:stop], run_bytes)
            nbytes += run_bytes
            max_events -= stop - i
            i = stop
        if i == n:
            self._drop_first()
            return first + n, positions[0] + size  # the batch's first frame is at its base
        self._head = i
        return first + i, positions[i]
