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
``--when-full drop-newest``, the group is dropped, counted and logged. An
append that fails (a disk error) is raised in the reader by the next
``put``/``flush``, and nothing is appended after it: the spool never holds a
group that came after a lost one, so a restart re-reads from the first lost
line.

Stopping: ``finish(timeout)`` waits for the writer, bounded by ``timeout``;
once ``abort`` is set every blocked append gives up within half a second,
so a full queue with the output down cannot hold shutdown.

Offsets are committed only when the output acknowledges (see ``acks``).
"""

from __future__ import annotations

import queue
import threading
from typing import Sequence

from agent.clock import SYSTEM_CLOCK, Clock
from agent.events import Event
from agent.selflog import get_logger
from agent.spool import DiskQueue, MemoryQueue
from agent.stats import Stats

log = get_logger("handoff")
_DROP_LOG_INTERVAL = 10.0
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
        self._dropped_since_log = 0
        self._last_drop_log = float("-inf")
        self._blocked_logged = False
        self._paused = False
        # One group queued while the writer appends another: the reader runs
        # at most two groups ahead of the disk.
        self._groups: "queue.Queue[object]" = queue.Queue(maxsize=1)
        self._idle = threading.Condition()
        self._in_flight = 0  # groups put and not yet appended, dropped or abandoned
        self._failure: BaseException | None = None
        self._failure_raised = False
        self._writer: threading.Thread | None = None  # started by the first put

    def accepting(self) -> bool:
        if self._drop:
            return True
        room = not self._spool.nearly_full()
        if room == self._paused:  # a change: say so once
            self._paused = not room
            if self._paused:
                log.warning(f"{self._spool.kind} full: reading paused until the output catches up",
                            **self._usage())
            else:
                log.info(f"{self._spool.kind} has room again: reading resumed", **self._usage())
        return room

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
        self._groups.put(group)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every group put so far is in the spool (or was dropped,
        or abandoned at shutdown): False if ``timeout`` passed first. Raises
        what the writer failed with."""
        if not self._wait_idle(timeout):
            return False
        self._raise_failure()
        return True

    def finish(self, timeout: float | None = None) -> bool:
        """Wait like ``flush``, then stop the writer thread; False (and the
        writer still running) if ``timeout`` passed first: set ``abort`` and
        call again. Raises a failed append unless ``put`` or ``flush``
        already did. The spool batcher is told separately (drain or stop)."""
        if not self._wait_idle(timeout):
            return False
        if self._writer is not None:
            self._groups.put(_STOP)
            self._writer.join()
            self._writer = None
        if not self._failure_raised:
            self._raise_failure()
        return True

    def _wait_idle(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with self._idle:
            while self._in_flight:
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
                    if not self._in_flight:
                        self._idle.notify_all()

    def _append(self, group: Sequence[Event]) -> None:
        try:
            self._append_whole(group)
        except ValueError:
            # The group is larger than the whole (small) spool: append it in
            # halves, in order. A single event that cannot fit is a real error.
            if len(group) == 1:
                raise
            half = len(group) // 2
            self._append(group[:half])
            self._append(group[half:])

    def _append_whole(self, group: Sequence[Event]) -> None:
        if self._drop:
            if not self._spool.append(group, timeout=0):
                self._dropped(len(group))
            return
        # Past the shutdown deadline (abort) the group is given up: not
        # spooled, not committed, read again on restart.
        while not self._abort.is_set() and not self._spool.append(group, timeout=0.5):
            if not self._blocked_logged:
                log.warning(f"{self._spool.kind} full: reading paused until the output catches up",
                            **self._usage())
                self._blocked_logged = True
        self._blocked_logged = False

    def _dropped(self, count: int) -> None:
        self._stats.add("events_dropped", count)
        self._dropped_since_log += count
        now = self._clock.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
            log.warning(f"{self._spool.kind} full: dropping new events (--when-full drop-newest)",
                        dropped=self._dropped_since_log, **self._usage())
            self._dropped_since_log = 0
            self._last_drop_log = now
