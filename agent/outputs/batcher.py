"""Batching: events taken from the queue (disk spool or memory) into bulk requests.

A batch is sent when it reaches ``--bulk-max-docs`` documents or
``--bulk-max-bytes`` of body, or when its first event is ``--flush-interval``
old. At most ``--workers`` batches are in flight; when all workers are busy
the batcher stops taking, the queue fills and the reader pauses: that is the
backpressure path, end to end.

This is the one place where events are registered for acknowledgement
(``AckTracker.register``), as a batch is dispatched: take order is append
order, so each file's events are registered in the order they were read.
Queue space is freed (``queue.ack``) only once the output settled the whole
batch. A batch the deliver function gave up on stays unacknowledged (see
``sender`` for what giving up means).

Output workers are daemon threads: when shutdown passes its deadline the
agent stops waiting for a request still in progress (its events are simply
not committed) instead of letting a hung connection hold the process.
"""

from __future__ import annotations

import queue
import threading
from operator import attrgetter
from typing import TYPE_CHECKING, Callable

from agent.clock import SYSTEM_CLOCK, Clock
from agent.errors import ModelscribeError, OutputError, StateError
from agent.events import MARKER, Event
from agent.selflog import get_logger
from agent.stats import Stats
from agent.supervise import FailureStreak

if TYPE_CHECKING:
    from agent.acks import AckTracker
    from agent.spool import DiskQueue, MemoryQueue, RefRun

_DATA = attrgetter("data")
log = get_logger("batcher")

_ACTION_BYTES = 40  # the {"create":{"_id":...}} line that goes with each document
_STOP = object()
BLOCKED_RECHECK = 0.05  # seconds between looks while the queue's writer waits for room and a batch is in flight
ACK_FAILURE_LOG_INTERVAL = 60.0  # seconds between two warnings while acknowledgements cannot be recorded


class Aborted(Exception):
    """Raised by a deliver function that refuses to send (shutdown deadline
    passed): the batch is neither acknowledged nor counted as failed."""


class _Workers:
    """At most ``workers`` batches in flight; a full pool blocks ``submit``
    (that is the backpressure). An OutputError is recorded, not raised: the
    events of that batch stay unacknowledged. Any other exception is a bug:
    ``on_death`` is told, and the agent stops with a non-zero exit code."""

    def __init__(self, deliver: Callable[[list[Event]], None], workers: int, stats: Stats,
                 on_death: Callable[[str, BaseException], None] | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self._deliver = deliver
        self._stats = stats
        self._busy_lock = threading.Lock()
        self.busy = 0  # batches submitted and not settled yet
        # (Once a minute: an idle agent's rare acknowledgements on a full disk warned every 2 s.)
        self._ack_failing = FailureStreak(log, clock, "the spool could not record acknowledgements; after a "
                                          "restart those records are sent again and land as duplicates of their "
                                          "ids, nothing is lost", "the spool records acknowledgements again",
                                          ACK_FAILURE_LOG_INTERVAL, level="warning")
        self._on_death = on_death
        self._slots = threading.Semaphore(workers)
        self._jobs: "queue.Queue[object]" = queue.Queue()
        self._threads = [threading.Thread(target=self._loop, name=f"output-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()
        self.failures: list[OutputError] = []

    def submit(self, events: list[Event], after: Callable[[], None] | None = None,
               quit_: threading.Event | None = None) -> bool:
        """Deliver ``events`` on a worker, then call ``after`` if it worked.
        Waits for a free worker; False (nothing submitted) if ``quit_`` is set first."""
        while not self._slots.acquire(timeout=0.5):
            if quit_ is not None and quit_.is_set():
                return False
        with self._busy_lock:
            self.busy += 1
        self._jobs.put((events, after))
        return True

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            events, after = job  # type: ignore[misc]
            try:
                self._work(events, after)
            finally:
                with self._busy_lock:
                    self.busy -= 1
                self._slots.release()

    def _work(self, events: list[Event], after: Callable[[], None] | None) -> None:
        try:
            if events:  # (a batch of markers only has nothing to send)
                self._deliver(events)
            if after is not None:
                self._release(after)
        except Aborted:
            pass  # not sent, not acknowledged: read again (or taken from the spool) after a restart
        except OutputError as error:
            self.failures.append(error)
            self._stats.add("batches_failed")
            self._stats.error(str(error))
            log.error("gave up delivering a batch; its lines stay unacknowledged", count=len(events),
                      error=str(error))
        except ModelscribeError as error:
            # Raised on purpose to stop the agent (the console's reader went
            # away): no failure to report here, the supervisor says it once.
            self.failures.append(OutputError(str(error)))
            if self._on_death is not None:
                self._on_death("output", error)
        except Exception as error:  # a bug: never hidden, stops the agent
            self.failures.append(OutputError(f"unexpected error: {error!r}"))
            self._stats.error(repr(error))
            log.error("unexpected error while delivering a batch", exc_info=True, error=repr(error))
            if self._on_death is not None:
                self._on_death("output", error)

    def _release(self, after: Callable[[], None]) -> None:
        """Free the batch's spool records. Their acknowledgement is already in
        memory when the spool cannot write it (a full disk): a restart would
        only deliver them again, as duplicates of their ids. Not worth
        stopping the agent for; logged."""
        try:
            after()
        except StateError as error:
            self._stats.error(str(error))
            self._ack_failing.failed(error=str(error))
        else:
            self._ack_failing.succeeded()

    def close(self, quit_: threading.Event | None = None) -> None:
        """Let the batches in flight finish, then stop the workers; stop
        waiting once ``quit_`` is set (the workers are daemon threads: a
        request still in progress is left to the process's end)."""
        for _ in self._threads:
            self._jobs.put(_STOP)
        for thread in self._threads:
            while thread.is_alive() and not (quit_ is not None and quit_.is_set()):
                thread.join(0.5)


class Batcher:
    """Takes events from the queue, batches them, dispatches them to workers."""

    def __init__(self, spool: "DiskQueue | MemoryQueue", deliver: Callable[[list[Event]], None],
                 acks: "AckTracker", max_docs: int, max_bytes: int, flush_interval: float, workers: int,
                 stats: Stats, clock: Clock = SYSTEM_CLOCK,
                 on_death: Callable[[str, BaseException], None] | None = None) -> None:
        self._spool = spool
        self._acks = acks
        self._max_docs = max_docs
        self._max_bytes = max_bytes
        self._interval = flush_interval
        self._clock = clock
        self._workers = _Workers(deliver, workers, stats, on_death, clock)
        self.failures = self._workers.failures
        self.drain = threading.Event()  # the reader is done: take what is left, then stop (--once)
        self.stop = threading.Event()   # stop taking now; the rest stays in the queue (shutdown)
        self._quit = threading.Event()  # stop waiting for batches in flight (past the deadline)

    def run(self) -> None:
        """Thread body: a batch is sent when full (docs or bytes) or when its
        first event is --flush-interval old; with ``drain``, until the queue
        has nothing left to hand out. Then waits for the batches in flight."""
        events: list[Event] = []
        refs: list["RefRun"] = []
        size = 0
        deadline = 0.0
        try:
            while not self.stop.is_set():
                draining = self.drain.is_set()  # read before take: nothing appended after it is missed
                # A queue that is full takes nothing new until what it holds is
                # delivered: waiting out the flush interval for more made each freed
                # segment cost one (audit 5: 257 lines/s with 600 KiB free). A full
                # disk: sent at once. An append waiting for room: sent once no batch
                # in flight can free any, looked at every 50 ms meanwhile (sending at
                # every wait, or waking the take when the last batch in flight settled,
                # made batches small: a 4 MiB spool shipped at half speed; waiting for
                # the flush interval made a 1 MiB one take 8 s for 25,000 lines).
                stuck = events and (getattr(self._spool, "disk_full", False)
                                    or (self._spool.blocked and not self._workers.busy))
                if draining or stuck:
                    timeout = 0.0
                elif events:
                    timeout = max(0.0, deadline - self._clock.monotonic())
                    if self._spool.blocked:  # (a batch in flight: look again soon, it may settle)
                        timeout = min(timeout, BLOCKED_RECHECK)
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
                if events and (full or ((draining or stuck) and not taken) or self._clock.monotonic() >= deadline):
                    self._dispatch(events, refs)
                    events, refs, size = [], [], 0
                elif not taken and draining:
                    break
        finally:
            # Events taken but not dispatched were never registered: they stay
            # in the queue (the spool hands them out again after a restart).
            self._workers.close(self._quit)

    def finish(self, drain: bool) -> None:
        """No more events are coming from the reader: send what the queue
        holds, then stop (``drain``, for --once), or stop now and leave it there."""
        (self.drain if drain else self.stop).set()
        self._spool.wake()  # a take waiting for records returns at once

    def quit(self) -> None:
        """Past the shutdown deadline: stop waiting for requests in flight."""
        self.stop.set()
        self._quit.set()
        self._spool.wake()

    def _dispatch(self, events: list[Event], refs: list["RefRun"]) -> None:
        self._acks.register(events)
        if not all(map(_DATA, events)):  # markers: offsets to commit, nothing to send (agent.events.MARKER)
            self._acks.acknowledge([event for event in events if event.data == MARKER])
            events = [event for event in events if event.data != MARKER]
        # Queue space is freed only once the output settled the whole batch.
        self._workers.submit(events, lambda: self._spool.ack(refs), self._quit)
