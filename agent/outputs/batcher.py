"""Batching: events from the bounded queue into bulk requests.

The queue carries lists of events (the reader hands them over in small
groups, which keeps the per-line locking off the hot path) and the END
sentinel. A batch is flushed when it reaches ``--bulk-max-docs`` documents or
``--bulk-max-bytes`` of body, or when its first event is ``--flush-interval``
old. At most ``--workers`` batches are in flight; when all workers are busy
the batcher stops taking from the queue, the queue fills and the reader
blocks: that is the backpressure path, end to end.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable

from agent.clock import SYSTEM_CLOCK, Clock
from agent.errors import OutputError
from agent.events import Event
from agent.selflog import get_logger
from agent.stats import Stats

if TYPE_CHECKING:
    from agent.acks import AckTracker
    from agent.spool import DiskQueue, RefRun

log = get_logger("batcher")

END = object()  # put on the queue after the last event: flush and stop


class Aborted(Exception):
    """Raised by a deliver function that refuses to send (shutdown deadline
    passed): the batch is neither acknowledged nor counted as failed."""
_ACTION_BYTES = 40  # the {"create":{"_id":...}} line that goes with each document


class _Workers:
    """At most ``workers`` batches in flight; a full pool blocks ``submit``
    (that is the backpressure). Failures are recorded, never raised: the
    events of a failed batch stay unacknowledged."""

    def __init__(self, deliver: Callable[[list[Event]], None], workers: int, stats: Stats) -> None:
        self._deliver = deliver
        self._stats = stats
        self._slots = threading.Semaphore(workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="output")
        self.failures: list[OutputError] = []

    def submit(self, events: list[Event], after: Callable[[], None] | None = None) -> None:
        """Deliver ``events`` on a worker, then call ``after`` if it worked."""
        self._slots.acquire()
        self._pool.submit(self._work, events, after)

    def _work(self, events: list[Event], after: Callable[[], None] | None) -> None:
        try:
            self._deliver(events)
            if after is not None:
                after()
        except Aborted:
            pass  # not sent, not acknowledged: read again (or taken from the spool) after a restart
        except OutputError as error:
            self.failures.append(error)
            self._stats.add("batches_failed")
            self._stats.error(str(error))
            log.error("gave up delivering a batch; its lines stay unacknowledged", count=len(events),
                      error=str(error))
        except Exception as error:  # a bug: keep the agent alive, report loudly
            self.failures.append(OutputError(f"unexpected error: {error!r}"))
            log.error("unexpected error while delivering a batch", exc_info=True, error=repr(error))
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class _Limits:
    """What both batchers share: the flush limits and the worker pool."""

    def __init__(self, deliver: Callable[[list[Event]], None], max_docs: int, max_bytes: int,
                 flush_interval: float, workers: int, stats: Stats, clock: Clock) -> None:
        self._max_docs = max_docs
        self._max_bytes = max_bytes
        self._interval = flush_interval
        self._clock = clock
        self._workers = _Workers(deliver, workers, stats)
        self.failures = self._workers.failures


class Batcher(_Limits):
    def __init__(self, events: "queue.Queue[object]", deliver: Callable[[list[Event]], None],
                 max_docs: int, max_bytes: int, flush_interval: float, workers: int, stats: Stats,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(deliver, max_docs, max_bytes, flush_interval, workers, stats, clock)
        self._queue = events

    def run(self) -> None:
        """Thread body: batch until END, then wait for every in-flight batch."""
        batch: list[Event] = []
        size = 0
        deadline = 0.0
        try:
            while True:
                timeout = max(0.0, deadline - self._clock.monotonic()) if batch else 0.5
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if item is END:
                    break
                if item:  # a list of events, in emission order
                    for event in item:  # type: ignore[union-attr]
                        if not batch:
                            deadline = self._clock.monotonic() + self._interval
                        batch.append(event)
                        size += len(event.data) + _ACTION_BYTES
                        if len(batch) >= self._max_docs or size >= self._max_bytes:
                            self._dispatch(batch)
                            batch, size = [], 0
                if batch and self._clock.monotonic() >= deadline:
                    self._dispatch(batch)
                    batch, size = [], 0
            if batch:
                self._dispatch(batch)
        finally:
            self._workers.close()

    def _dispatch(self, batch: list[Event]) -> None:
        self._workers.submit(batch)


class SpoolBatcher(_Limits):
    """Batches taken from the disk spool instead of the memory queue.

    Events are registered with the ack tracker as they are taken (take
    order is append order, so each file's events stay in order), and their
    spool records are acknowledged only after the output settled the whole
    batch. A batch the output gave up on stays in the spool and is sent
    again after a restart.
    """

    def __init__(self, spool: "DiskQueue", deliver: Callable[[list[Event]], None], acks: "AckTracker",
                 max_docs: int, max_bytes: int, flush_interval: float, workers: int, stats: Stats,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(deliver, max_docs, max_bytes, flush_interval, workers, stats, clock)
        self._spool = spool
        self._acks = acks
        self.drain = threading.Event()  # the reader is done: take what is left, then stop (--once)
        self.stop = threading.Event()   # stop taking now; the rest stays in the spool (shutdown)

    def run(self) -> None:
        """Thread body: a batch is sent when full (docs or bytes) or when its
        first event is --flush-interval old; with ``drain``, until the spool
        has nothing left to hand out."""
        events: list[Event] = []
        refs: list["RefRun"] = []
        size = 0
        deadline = 0.0
        try:
            while not self.stop.is_set():
                draining = self.drain.is_set()  # read before take: nothing appended after it is missed
                if draining:
                    timeout = 0.0
                elif events:
                    timeout = max(0.0, deadline - self._clock.monotonic())
                else:
                    timeout = 0.5
                taken = self._spool.take(self._max_docs - len(events), max(1, self._max_bytes - size), timeout)
                if taken:
                    if not events:
                        deadline = self._clock.monotonic() + self._interval
                    events.extend(taken.events)
                    refs.extend(taken.refs)
                    size += taken.nbytes + _ACTION_BYTES * len(taken)
                full = len(events) >= self._max_docs or size >= self._max_bytes
                if events and (full or (draining and not taken) or self._clock.monotonic() >= deadline):
                    self._dispatch(events, refs)
                    events, refs, size = [], [], 0
                elif not taken and draining:
                    break
        finally:
            self._workers.close()

    def finish(self, drain: bool) -> None:
        """No more events are coming from the reader: send what the spool
        holds, then stop (``drain``, for --once), or stop now and leave it there."""
        (self.drain if drain else self.stop).set()
        self._spool.wake()  # a take waiting for records returns at once

    def _dispatch(self, events: list[Event], refs: list["RefRun"]) -> None:
        self._acks.register(events)
        # Spool space is freed only once the output settled the whole batch.
        self._workers.submit(events, lambda: self._spool.ack(refs))
