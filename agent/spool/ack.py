"""Acknowledging spooled records: ``DiskQueue.ack``, sealing and deleting segments.

``AckMixin`` is the side of ``DiskQueue`` that frees space; queue.py sets
the state it uses (``__init__``) and gives the lock order it follows.
In a running queue, segment files are deleted and ``used_bytes`` lowered only
here (``_delete``), and only for a sealed segment whose records are all
acknowledged: by ``ack``, by ``append`` rolling away a fully acknowledged
segment, or by ``take`` for records lost to damage.

Invariants:

* Acks are persisted per segment (segment.py). A restart re-delivers exactly
  the unacknowledged records, plus any record whose ack had not reached the
  disk: allowed, because the output dedupes by ``doc_id`` (deterministic id,
  ``op_type: create``).
* A ref is meaningful only to the DiskQueue that handed it out: its ordinals
  are that instance's. Unknown and repeated refs are ignored.
* A segment whose files cannot be deleted (a read-only file system, a
  directory made immutable) stays counted in ``used_bytes`` and is deleted
  again at every ``ack`` and every wait of ``append`` until it goes; it is
  never an error of the caller's (deleting frees space, it saves nothing).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from agent.clock import Clock
from agent.errors import StateError
from agent.selflog import get_logger
from agent.spool.segment import (RefRun, Segment, delete_files, encode_ack_block, encode_seal_block,
                                 open_ack_file, sync_fd, write_all)

# The queue's lifecycle, which every side of DiskQueue checks. Defined here,
# in a module queue.py and take.py both import: in queue.py it would be an
# import cycle (queue.py imports this module and take.py).
_NEW, _OPEN, _CLOSED = "new", "open", "closed"


def _disk_full(error: BaseException | None) -> bool:
    """Whether a write failed for a reason that may pass (see queue.py's docstring)."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                                          errno.EPERM)


_UNDELETED_LOG_INTERVAL = 60.0
log = get_logger("spool")


class AckMixin:
    """``DiskQueue``'s acknowledging side; see the module docstring."""

    # What this side uses of DiskQueue: state set in queue.py's __init__.
    directory: Path
    _state: str
    _durable: bool
    _lock: threading.Lock
    _ack_lock: threading.Lock
    _space: threading.Event
    _segments: dict[int, Segment]
    _used: int
    _pending: int
    _ack_dirty: set[Segment]
    _undeleted: dict[int, Segment]  # sealed, fully acknowledged, their files not deleted yet
    _undeleted_logged: float
    _clock: Clock
    retire_delivered: Callable[[], None]  # (queue.py)
    _warn_disk_full: Callable[[OSError], None]

    # -- ack ---------------------------------------------------------------------

    def ack(self, refs: Iterable[RefRun]) -> None:
        """Mark records delivered, in any order, from any thread. Their ack
        blocks are written before this returns (synced by the background
        thread within a second, see queue.py's Durability); a segment whose
        records are all acknowledged is deleted, unless it is being written.
        Unknown or repeated refs are ignored. StateError when the blocks
        could not be written: the records are acknowledged in memory all the
        same, and a restart would only deliver them again."""
        with self._ack_lock:
            if self._state != _OPEN:
                return
            if self._undeleted:
                self._retry_deletes()
            touched: dict[Segment, list[int]] = {}
            to_delete: list[Segment] = []
            with self._lock:
                segments = self._segments
                acked = 0
                for run in refs:
                    segment = segments.get(run.segment)
                    if segment is None or segment.deleting:
                        continue
                    positions = touched.get(segment)
                    if positions is None:
                        positions = touched[segment] = []
                    acked += segment.mark(run.first, run.positions, positions)
                self._pending -= acked
                freed = False
                for segment in touched:
                    if segment.fully_acked:
                        if segment.sealed:
                            segment.deleting = True
                            to_delete.append(segment)
                        else:
                            freed = True  # append may seal and delete it
            problem: Exception | None = None
            for segment, positions in touched.items():
                if positions and not segment.deleting:
                    try:
                        self._write_acks(segment, positions)
                    except OSError as error:
                        problem = problem or error
            for segment in to_delete:
                self._delete(segment)
        if freed:
            self._space.set()
            self.retire_delivered()  # (a full disk only)
        if problem is not None:
            if _disk_full(problem):
                self._warn_disk_full(problem)  # (an idle agent learns of a full disk here)
                self.retire_delivered()
            # The records stay acknowledged in memory; only their persistence
            # failed, which costs re-delivery after a restart, never data.
            raise StateError(f"cannot record acknowledgements in {self.directory}: {problem}") from problem

    def _write_acks(self, segment: Segment, positions: list[int]) -> None:
        if segment.ack_fd is None:
            segment.ack_fd = open_ack_file(segment, self.directory, self._durable)
        write_all(segment.ack_fd, encode_ack_block(positions))
        self._ack_dirty.add(segment)  # synced by the background thread (see Durability)

    def _seal(self, segment: Segment) -> None:
        """Record the final size of a segment no longer written to (segment.py
        explains why). Called with _ack_lock held."""
        if segment.ack_fd is None:
            segment.ack_fd = open_ack_file(segment, self.directory, self._durable)
        write_all(segment.ack_fd, encode_seal_block(segment.size))
        if self._durable:
            sync_fd(segment.ack_fd)
        self._ack_dirty.discard(segment)

    def _delete(self, segment: Segment) -> None:
        """Remove a fully acknowledged, sealed segment; one whose files cannot
        be deleted now is kept for ``_retry_deletes``. Called with _ack_lock held."""
        self._ack_dirty.discard(segment)
        try:
            delete_files(segment)
        except OSError as error:
            if segment.id not in self._undeleted:
                self._undeleted[segment.id] = segment
                now = self._clock.monotonic()
                if now - self._undeleted_logged >= _UNDELETED_LOG_INTERVAL:
                    self._undeleted_logged = now
                    log.warning("spool: a delivered segment cannot be deleted; its space stays taken and "
                                "deleting is tried again, nothing is lost", path=str(segment.path),
                                error=error.strerror)
            return
        self._undeleted.pop(segment.id, None)
        with self._lock:
            self._segments.pop(segment.id, None)
            self._used -= segment.size
        self._space.set()

    def _retry_deletes(self) -> None:
        """Delete again the segments ``_delete`` could not. Called with _ack_lock held."""
        for segment in list(self._undeleted.values()):
            self._delete(segment)
