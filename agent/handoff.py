"""How the reader thread hands events to the sending side: the one hand-off
of the agent's one delivery path.

    reader --put(group)--> Handoff --append--> queue --take--> batcher --> outputs --ack--> queue

The queue is the disk spool (``DiskQueue``, the default) or, with
``--no-spool``, its memory twin (``MemoryQueue``): same interface, same
hand-off, same batcher, same stop protocol. Events are registered for
acknowledgement in one place, the batcher, as it dispatches them.

Appending (and, with the disk spool's default fsync policy, the fsync) runs
on a spool-writer thread, one group behind the reader, so the reader parses
the next group while the disk syncs the last: ``put`` returns once the group
is queued (at most one waits), and ``flush`` waits until every group put is
in the queue. The reader flushes before it forgets a closed file, so a
deleted file's last lines are in the spool before the agent lets go of it.
When the queue is nearly full the reader is told to pause (``accepting()``
is False) and appending blocks (so, in turn, does ``put``), or, with
``--when-full drop-newest``, the group is dropped and counted. An
append that fails (a disk error) is raised in the reader by the next
``put``/``flush``, and nothing is appended after it: the spool never holds a
group that came after a lost one, so a restart re-reads from the first lost
line.

Logging a full queue, once per episode, not per group: an episode begins
with the first append that cannot be made at once (or, for the reader, the
first ``accepting()`` that is False) and ends once the queue has room and
nothing waited or was dropped for ``QUIET`` seconds, so a queue that the
output empties in bursts while it catches up does not start a new episode at
every group. Blocking logs "reading paused" at the start and "reading
resumed" at the end. Dropping logs every dropped event: their count at the
start, the running total at most every ``DROP_LOG_INTERVAL`` seconds while
it goes on, and what was dropped since the last line when it ends (no
drop for ``QUIET`` seconds, whether the queue had room again or nothing
more was read), at shutdown or at the end of ``--once`` (``finish``); the
``dropped=`` fields add up to the ``events_dropped`` counter. The end is
noticed by the next append or ``accepting()`` (the tailer asks before each
read of a file).

Stopping: ``finish(timeout)`` waits for the writer, bounded by ``timeout``;
once ``abort`` is set every blocked append gives up within half a second,
so a full queue with the output down cannot hold shutdown.

Offsets are committed only when the output acknowledges (see ``acks``).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Sequence

from agent.clock import SYSTEM_CLOCK, Clock
from agent.events import Event
from agent.self_metrics import own_documents
from agent.selflog import get_logger
from agent.spool import DiskQueue, MemoryQueue
from agent.stats import Stats

log = get_logger("handoff")
DROP_LOG_INTERVAL = 10.0  # seconds between two running totals while events are dropped
QUIET = 5.0  # seconds with room, nothing waiting or dropped, that end a full-queue episode
_STOP = object()  # tells the spool-writer thread to end


class Handoff:
    def __init__(self, spool: DiskQueue | MemoryQueue, when_full: str, abort: threading.Event, stats: Stats,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._spool = spool
        self._drop = when_full == "drop-newest"
        self._abort = abort
        self._stats = stats
        self._clock = clock
        self.group_size = spool.group_size
        # The full-queue episode (see the module doc), shared by the reader
        # (accepting) and the spool writer (appends): under ``_lock``.
        self._lock = threading.Lock()
        self._full_since: float | None = None  # monotonic start of the episode; None: none
        self._last_full = 0.0  # when an append last waited or dropped, or the reader was told to pause
        self._waiting = False  # an append is waiting for room now
        self._dropped_total = 0
        self._unreported = 0  # dropped since the last line that counted drops
        self._last_drop_log = 0.0
        # One group queued while the writer appends another: the reader runs
        # at most two groups ahead of the disk.
        self._groups: "queue.Queue[object]" = queue.Queue(maxsize=1)
        self._idle = threading.Condition()
        self._in_flight = 0  # groups put and not yet appended, dropped or abandoned
        self._events = 0  # ... and their events (the modelscribe_handoff_events gauge)
        self._failure: BaseException | None = None
        self._failure_raised = False
        self._writer: threading.Thread | None = None  # started by the first put

    def accepting(self) -> bool:
        """May the reader read on? False while the queue is nearly full
        (always True with drop-newest, which drops instead)."""
        room = self._drop or not self._spool.nearly_full()
        if room:
            self._room()
        else:
            self._full()
        return room

    def _full(self, waiting: bool = False) -> None:
        """Blocking: the queue had no room just now; start (and log) an
        episode, or extend it. (Dropping has its own, ``_dropped``.)"""
        with self._lock:
            self._waiting = self._waiting or waiting
            self._last_full = self._clock.monotonic()
            if self._full_since is not None:
                return
            self._full_since = self._last_full
        if getattr(self._spool, "disk_full", False):  # (the spool said why: a full or read-only disk)
            log.warning(f"{self._spool.kind} cannot be written: reading paused until it can", **self._usage())
        else:
            log.warning(f"{self._spool.kind} full: reading paused until the output catches up", **self._usage())

    def _room(self) -> None:
        """The queue has room (dropping: an append succeeded, or the reader
        asks): end the episode once nothing waited or was dropped for
        ``QUIET`` seconds."""
        with self._lock:
            now = self._clock.monotonic()
            if self._full_since is None or self._waiting or now - self._last_full < QUIET:
                return
            lasted = round(self._last_full - self._full_since, 1)  # without the quiet time
            self._full_since = None
            unreported, self._unreported = self._unreported, 0
        if not self._drop:
            log.info(f"{self._spool.kind} has room again: reading resumed", paused_for=lasted, **self._usage())
        else:
            # No drop for QUIET seconds: the queue had room, or nothing more was read.
            log.warning(f"{self._spool.kind}: no longer dropping new events (--when-full drop-newest)",
                        dropped=unreported, total=self._dropped_total, dropping_for=lasted, **self._usage())

    def _usage(self) -> dict[str, int]:
        return {"used_bytes": self._spool.used_bytes(), "pending": self._spool.pending()}

    def put(self, group: Sequence[Event]) -> None:
        """Queue ``group`` for the spool-writer thread; blocks while it is busy
        and one group already waits (backpressure, as a full spool blocks it).
        Past the shutdown deadline (``abort``) the group is not queued: it was
        never committed, so it is read again after a restart."""
        self._raise_failure()
        if self._abort.is_set():
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="spool-writer", daemon=True)
            self._writer.start()
        with self._idle:
            self._in_flight += 1
            self._events += len(group)
        self._groups.put(group)

    @property
    def paused(self) -> bool:
        """Reading is paused: the queue is (nearly) full (a blocking episode is on)."""
        return not self._drop and self._full_since is not None

    @property
    def events(self) -> int:
        """Events handed over and not in the queue yet (at most two groups: while
        the queue is full, what was read before reading paused)."""
        return self._events

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every group put so far is in the spool (or was dropped,
        or abandoned at shutdown): False if ``timeout`` passed first. Raises
        what the writer failed with."""
        if not self._wait_idle(timeout):
            return False
        self._raise_failure()
        return True

    def finish(self, timeout: float | None = None, give_up: Callable[[], bool] | None = None) -> bool:
        """Wait like ``flush``, then stop the writer thread; False (and the
        writer still running) if ``timeout`` passed first, or ``give_up()``
        was true (asked every half second): set ``abort`` and call again.
        Raises a failed append unless ``put`` or ``flush`` already did. The
        spool batcher is told separately (drain or stop)."""
        if not self._wait_idle(timeout, give_up):
            return False
        if self._writer is not None:
            self._groups.put(_STOP)
            self._writer.join()
            self._writer = None
        self._report_drops()
        if not self._failure_raised:
            self._raise_failure()
        return True

    def waiting_on_disk(self) -> bool:
        """Whether groups wait to be appended to a spool whose disk is full or
        cannot be written (not only for the output to free spool space)."""
        return self._in_flight > 0 and getattr(self._spool, "disk_full", False)

    def _wait_idle(self, timeout: float | None, give_up: Callable[[], bool] | None = None) -> bool:
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                if give_up is not None and give_up():
                    return False
                wait = 0.5 if deadline is None else min(0.5, deadline - self._clock.monotonic())
                if wait <= 0:
                    return False
                self._idle.wait(wait)
        return True

    def _raise_failure(self) -> None:
        if self._failure is not None:
            self._failure_raised = True
            raise self._failure

    def _write_loop(self) -> None:
        while True:
            group = self._groups.get()
            if group is _STOP:
                return
            try:
                if self._failure is None:  # after a failed append, nothing more (see module doc)
                    self._append(group)
            except BaseException as error:  # noqa: BLE001 - handed to the reader, which raises it
                self._failure = error
            finally:
                with self._idle:
                    self._in_flight -= 1
                    self._events -= len(group)  # type: ignore[arg-type]
                    if not self._in_flight:
                        self._idle.notify_all()

    def _append(self, group: Sequence[Event]) -> None:
        if self._abort.is_set():
            return  # given up, with every part of it not appended yet: read again on restart
        try:
            whole = self._append_whole(group)
        except ValueError:
            # The group is larger than the whole (small) spool. A single
            # event that cannot fit is a real error.
            if len(group) == 1:
                raise
            whole = False
        if not whole:  # append it in halves, in order
            half = len(group) // 2
            self._append(group[:half])
            self._append(group[half:])

    def _append_whole(self, group: Sequence[Event]) -> bool:
        """True once ``group`` is spooled (or dropped, or given up at abort);
        False when the disk is full and a part of it may fit where the whole cannot."""
        if self._drop:
            if self._spool.append(group, timeout=0):
                self._room()
            else:
                self._dropped(len(group), own_documents(group)[0])
            return True
        # On a full disk a part may fit at once where the whole does not: split
        # without waiting (each wait cost half a second per halving: audit 5).
        split_now = len(group) > 1 and getattr(self._spool, "disk_full", False)
        if self._spool.append(group, timeout=0 if split_now else 0.5):  # a wait this short is not worth a warning
            self._room()
            return True
        if len(group) > 1 and getattr(self._spool, "disk_full", False):
            return False
        self._full(waiting=True)
        try:
            # Past the shutdown deadline (abort) the group is given up: not
            # spooled, not committed, read again on restart.
            while not self._abort.is_set() and not self._spool.append(group, timeout=0.5):
                if self._spool.disk_full and len(group) > 1:
                    return False
            return True
        finally:
            with self._lock:
                self._waiting = False
                self._last_full = self._clock.monotonic()  # the quiet time counts from here

    def _dropped(self, count: int, own: int = 0) -> None:
        self._stats.add("events_dropped", count, own)
        with self._lock:
            now = self._clock.monotonic()
            self._dropped_total += count
            self._unreported += count
            self._last_full = now
            if self._full_since is None:
                self._full_since = now
                message = f"{self._spool.kind} full: dropping new events (--when-full drop-newest)"
            elif now - self._last_drop_log >= DROP_LOG_INTERVAL:
                message = f"{self._spool.kind} still full: dropping new events (--when-full drop-newest)"
            else:
                return
            self._last_drop_log = now
            unreported, self._unreported = self._unreported, 0
            lasted = round(now - self._full_since, 1)
        log.warning(message, dropped=unreported, total=self._dropped_total, dropping_for=lasted, **self._usage())

    def _report_drops(self) -> None:
        """At the end (shutdown, ``--once``): the drops no line has counted yet."""
        with self._lock:
            unreported, self._unreported = self._unreported, 0
        if unreported:
            log.warning(f"events dropped since the last report ({self._spool.kind} full, --when-full "
                        "drop-newest)", dropped=unreported, total=self._dropped_total)
