"""How the reader thread hands events to the sending side.

Two ways, one interface (``put(group)``, ``accepting()``, ``finish()``):

- ``SpoolHandoff`` (the default): groups are appended to the disk spool,
  so an absent output costs disk, not memory, and files rotated or deleted
  during an outage are already safe. When the spool is full the reader is
  told to pause (``accepting()`` is False) and ``put`` blocks, or, with
  ``--when-full drop-newest``, the group is dropped, counted and logged.
- ``MemoryHandoff`` (``--no-spool``): groups go through a bounded memory
  queue; a full queue blocks the reader (backpressure).

Either way, offsets are committed only when the output acknowledges (the
ack tracker registers events in each file's order: at ``put`` time for the
memory queue, at ``take`` time for the spool).
"""

from __future__ import annotations

import queue
import threading
from typing import Sequence

from agent.acks import AckTracker
from agent.clock import SYSTEM_CLOCK, Clock
from agent.events import Event
from agent.outputs.batcher import END
from agent.selflog import get_logger
from agent.spool import DiskQueue
from agent.stats import Stats

log = get_logger("handoff")
_DROP_LOG_INTERVAL = 10.0


class MemoryHandoff:
    group_size = 256  # small groups: the memory queue is bounded in groups

    def __init__(self, events: "queue.Queue[object]", acks: AckTracker) -> None:
        self._queue = events
        self._acks = acks

    def put(self, group: Sequence[Event]) -> None:
        self._acks.register(group)
        self._queue.put(group)

    def accepting(self) -> bool:
        return True  # put() blocks instead: the queue is small

    def finish(self) -> None:
        self._queue.put(END)


class SpoolHandoff:
    # One append (and, by default, one fsync) per group: bigger groups make
    # the fsync rare; the tailer's tick still hands over at least every 0.5 s.
    group_size = 2048

    def __init__(self, spool: DiskQueue, when_full: str, abort: threading.Event, stats: Stats,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._spool = spool
        self._drop = when_full == "drop-newest"
        self._abort = abort
        self._stats = stats
        self._clock = clock
        # Pause reading a little before the spool is full, so the group being
        # built when the pause starts still fits.
        self._headroom = min(spool.max_bytes() // 10, 16 * 1024 * 1024)
        self._dropped_since_log = 0
        self._last_drop_log = float("-inf")
        self._blocked_logged = False
        self._paused = False

    def accepting(self) -> bool:
        if self._drop:
            return True
        room = self._spool.used_bytes() < self._spool.max_bytes() - self._headroom
        if room == self._paused:  # a change: say so once
            self._paused = not room
            if self._paused:
                log.warning("spool full: reading paused until the output catches up",
                            used_bytes=self._spool.used_bytes(), max_bytes=self._spool.max_bytes())
            else:
                log.info("spool has room again: reading resumed", used_bytes=self._spool.used_bytes())
        return room

    def put(self, group: Sequence[Event]) -> None:
        if self._drop:
            if not self._spool.append(group, timeout=0):
                self._dropped(len(group))
            return
        while not self._spool.append(group, timeout=0.5):
            if self._abort.is_set():
                return  # shutting down: not spooled, not committed, read again on restart
            if not self._blocked_logged:
                log.warning("spool full: reading paused until the output catches up",
                            used_bytes=self._spool.used_bytes(), max_bytes=self._spool.max_bytes())
                self._blocked_logged = True
        self._blocked_logged = False

    def _dropped(self, count: int) -> None:
        self._stats.add("events_dropped", count)
        self._dropped_since_log += count
        now = self._clock.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
            log.warning("spool full: dropping new events (--when-full drop-newest)",
                        dropped=self._dropped_since_log, max_bytes=self._spool.max_bytes())
            self._dropped_since_log = 0
            self._last_drop_log = now

    def finish(self) -> None:
        pass  # the spool batcher is told separately (drain or stop)
