"""DiskQueue: the bounded on-disk FIFO of events between reading and sending.

Delivery contract (MUST): spool space is freed only by ``ack``, i.e. after
the output confirmed delivery. A segment file is deleted only when every
intact record in it is acknowledged and it is not the segment being written;
nothing unacknowledged is ever deleted, and a full spool makes ``append``
wait (backpressure) instead of dropping.

``DiskQueue`` is written in three modules, one per side of the queue, each
stating its own invariants: this one (construction, ``open`` and ``close``,
``append``, the space bound, the fsync policy, the gauges), take.py
(``TakeMixin``: the read cursor, ``take``) and ack.py (``AckMixin``: ``ack``,
sealing and deleting segments). The state they share is set in ``__init__``
here, and the lock order below binds all three.

Invariants:

* ``used_bytes`` is the size of the segment files on disk (headers
  included; ack files, 4 bytes per acknowledged record, are not counted) and
  never exceeds ``max_bytes``. A batch that cannot fit even in an empty
  spool is a ValueError; a batch that does not fit now waits for acks.
* Damage never stops the spool: ``open`` counts and skips it (recovery.py);
  ``take`` steps over what it finds while running (take.py).
* A full disk (ENOSPC, EDQUOT) is a full spool, whatever ``max_bytes``
  says: the partial write is cut back (the segment stays intact at its
  previous size), ``append`` waits as for acks and tries again; a warning
  says so, and another when writing resumes: once writes have gone through
  for ``DISK_FULL_QUIET`` seconds, so that a disk that frees and fills again
  in bursts (the spool filling its own disk at every segment's end while the
  output catches up, or a trickle of small writes through a nearly full
  disk) is one episode, and the last word is never "resumed" while writes
  fail (audit 12: "writing resumed" was logged at the first small write that
  went through, then 20 s of silent stall, the next warning held back for a
  minute). ``disk_full_episode`` tells the status file the same. Meanwhile a fully
  acknowledged segment being written is sealed and deleted at the next try,
  or at once when no next try comes (``retire_delivered``). The agent's other
  state writers (registry, health, status) call ``reclaim`` when the disk
  refuses them: the segment being written is sealed then, so it goes with
  its last ack. ``disk_full`` tells the writer it may hand over smaller batches (the
  space left may hold a part of its batch, never the whole). A directory
  that cannot be written now (EROFS: a file system the kernel turned
  read-only after a disk error; EACCES, EPERM: permissions or an immutable
  directory) is waited for the same way: what is spooled is still
  delivered, reading waits. Only other write errors (EIO, a file that
  cannot be cut back) raise StateError. At ``open`` such a directory is a
  ConfigError (exit 2) naming it: recovery must write (seals, torn tails);
  so is a file in it this user may not read, or a ``.seg``/``.ack`` that is
  a directory (a restart cannot fix either).

Durability (``fsync``): every append is one ``write`` of whole frames and
every ack one ``write`` of an ack block, so a crash of the process loses
nothing. Against power loss: ``"batch"`` (default) fdatasyncs the segment
before ``append`` returns, and ack files once a second from a background
thread (an ack lost to a power cut only re-delivers a record, which the
output rejects as a duplicate, so it is not worth an fsync per call);
``"interval"`` leaves both to that background thread that syncs what is dirty
every ``fsync_interval`` seconds (a power loss costs at most that window);
``"never"`` leaves it to the OS. A new segment's header and directory entry,
and a segment and its seal when it is sealed, are synced except with
``"never"``, so an older segment is never less durable than a newer one.
What a power loss takes from the spool's tail was never acknowledged, so
the registry has not committed it: the reader reads it again, as long as
the source file still exists. The fsync policy therefore matters for files
rotated away while the output is down; unsynced acks only cost duplicates.

Sizes: a segment is sealed when the next batch would take it past
``segment_bytes`` (capped at a quarter of ``max_bytes``, so space comes back
in steps of at most 25 %); a batch larger than that gets a segment of its
own. When the spool is full and the segment being written is fully
acknowledged, ``append`` seals and deletes it to make room.

Threads: one writer calls ``append``, one consumer ``take``, any threads
``ack``. Locks, always taken in this order: ``_write_lock`` (the segment
being written), ``_ack_lock`` (ack files, deleting segments), ``_lock`` (the
in-memory tables, held only briefly); ``_take_lock`` (the read cursor) is
taken only by ``take``, before ``_ack_lock``. Disk I/O never runs under
``_lock``, so the writer's fsync does not stall ``take`` or ``ack``.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.clock import SYSTEM_CLOCK, Clock
from agent.errors import ConfigError, StateError
from agent.events import Event
from agent.selflog import get_logger
from agent.spool.ack import _CLOSED, _NEW, _OPEN, AckMixin, _disk_full
from agent.spool.cache import TailCache
from agent.spool.frames import HEADER_SIZE, Encoder
from agent.spool.recovery import Recovery, recover
from agent.spool.segment import Segment, SegmentReader, create_segment, sync_fd, write_all
from agent.spool.take import TakeMixin

log = get_logger("spool")

FSYNC_POLICIES = ("batch", "interval", "never")
MIN_SEGMENT_BYTES = 4096
_WAIT_SLICE = 1.0  # an unbounded wait re-checks this often
_DISK_FULL_LOG_INTERVAL = 60.0  # (ack.py: undeletable segments)
DISK_FULL_QUIET = 5.0  # seconds of writes going through that end a full-disk episode


class DiskQueue(TakeMixin, AckMixin):
    """A bounded, crash-safe FIFO of events on disk; see the module docstring."""

    kind = "spool"
    # The reader hands over groups this large: one append (and, by default,
    # one fsync) per group makes the fsync rare; the tailer's tick still
    # hands over at least every 0.5 s.
    group_size = 2048

    def __init__(self, directory: Path, max_bytes: int, fsync: str = "batch",
                 fsync_interval: float = 1.0, segment_bytes: int = 8 * 1024 * 1024,
                 clock: Clock = SYSTEM_CLOCK, *, cache_bytes: int = 4 * 1024 * 1024) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, not {fsync!r}")
        if max_bytes < 2 * (HEADER_SIZE + MIN_SEGMENT_BYTES):
            raise ValueError(f"max_bytes={max_bytes} is too small for a spool "
                             f"(at least {2 * (HEADER_SIZE + MIN_SEGMENT_BYTES)})")
        if fsync_interval <= 0:
            raise ValueError(f"fsync_interval must be positive, not {fsync_interval}")
        if segment_bytes < MIN_SEGMENT_BYTES or segment_bytes >= 1 << 31:
            raise ValueError(f"segment_bytes must be between {MIN_SEGMENT_BYTES} and 2 GiB, "
                             f"not {segment_bytes}")
        self.directory = Path(directory)
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._fsync_interval = fsync_interval
        self._segment_bytes = max(MIN_SEGMENT_BYTES, min(segment_bytes, max_bytes // 4))
        self._clock = clock
        self._durable = fsync != "never"

        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._ack_lock = threading.Lock()
        self._take_lock = threading.Lock()
        self._readable = threading.Event()  # set when records were appended (or by wake)
        self._woken = False
        self._space = threading.Event()  # set when space was freed
        self._stop = threading.Event()
        self._state = _NEW

        self._segments: dict[int, Segment] = {}  # ascending ids
        self._active: Segment | None = None
        self._next_id = 1
        self._used = 0
        self._pending = 0
        self._ack_dirty: set[Segment] = set()
        self._encoder = Encoder()
        self._disk_full_since: float | None = None  # when a write last failed for want of space
        # The full-disk episode the log and the status file tell (see the module doc), under _episode_lock:
        self._episode_lock = threading.Lock()
        self._episode_since: float | None = None  # when it began (warned); None: none
        self._episode_ok_since: float | None = None  # since when writes go through again; None: failing
        self._episode_error = ""  # the first error's strerror
        self._append_waiting = False  # an append waits for room (``blocked``)
        self._undeleted: dict[int, Segment] = {}  # (ack.py: segments whose files could not be deleted)
        self._undeleted_logged = -_DISK_FULL_LOG_INTERVAL
        self._tail = TailCache(cache_bytes)
        # The read cursor: the next record to hand out (guarded by _take_lock).
        self._cur_seg = 0
        self._cur_ord = 0
        self._cur_pos = HEADER_SIZE
        self._reader: SegmentReader | None = None
        self._flusher: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> Recovery:
        """Create the directory (0700), recover every segment, make every
        unacknowledged intact record available to ``take`` again, in order."""
        if self._state != _NEW:
            raise StateError(f"spool {self.directory} was already opened")
        try:
            if not self.directory.is_dir():
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(self.directory, 0o700)
            recovered = recover(self.directory, self._durable)
        except OSError as error:
            where = f" ({error.filename})" if error.filename else ""
            if error.errno == errno.EISDIR:
                # Nothing the agent writes: a restart cannot fix it (exit 1 made the unit
                # restart every 5 s for ever; audit 11). Exit 2, naming the file.
                raise ConfigError(f"spool directory {self.directory} is not usable: {error.strerror}{where}: the "
                                  "spool's files are regular files, this is none; move it out of the spool "
                                  "directory (it is no spool file) and start again") from error
            if error.errno == errno.EACCES:
                raise ConfigError(f"spool directory {self.directory} cannot be read or written: {error.strerror}"
                                  f"{where}; run the agent as the user that owns the state directory, e.g. with "
                                  "runuser -u modelscribe, or give it back to that user (chown -R), and start "
                                  "again: what the spool holds is delivered then") from error
            if error.errno in (errno.EROFS, errno.EPERM):
                # A start, unlike a running agent, cannot wait for it: recovering cuts torn
                # tails and seals segments. A configuration error (exit 2): the unit does
                # not restart in a loop; the next start delivers what the spool holds.
                raise ConfigError(f"spool directory {self.directory} cannot be written: {error.strerror}{where}; "
                                  "make it writable (an immutable directory or file: chattr -i; a read-only file "
                                  "system: repair it and mount it read-write) and start again: what the spool "
                                  "holds is delivered then") from error
            raise StateError(f"spool directory {self.directory} is not usable: {error}") from error
        with self._lock:
            self._segments = recovered.segments
            self._used = recovered.used_bytes
            self._next_id = recovered.next_id
            self._pending = recovered.recovery.records
            self._state = _OPEN
        if self._pending:
            self._readable.set()
        if self._fsync != "never":
            self._flusher = threading.Thread(target=self._flush_loop, name="spool-fsync", daemon=True)
            self._flusher.start()
        rec = recovered.recovery
        log.info("spool opened", directory=str(self.directory), segments=rec.segments,
                 records=rec.records, damaged_frames=rec.damaged_frames,
                 damaged_bytes=rec.damaged_bytes, used_bytes=self._used)
        return rec

    def close(self) -> None:
        """Sync (unless fsync="never") and close every file. Idempotent; a
        blocked ``append`` returns False, a blocked ``take`` returns []."""
        with self._lock:
            if self._state != _OPEN:
                self._state = _CLOSED
                return
            self._state = _CLOSED
        self._stop.set()
        self._space.set()
        self._readable.set()
        self._settle(self._clock.time(), closing=True)  # (writes went through since the last failure)
        if self._flusher is not None:
            self._flusher.join()
        errors: list[OSError] = []
        with self._write_lock:
            active, self._active = self._active, None
            if active is not None and active.fd is not None:
                try:
                    if self._durable:
                        sync_fd(active.fd)
                except OSError as error:
                    errors.append(error)
                finally:
                    os.close(active.fd)
                    active.fd = None
        with self._ack_lock:
            if active is not None and active.count and not active.deleting:
                try:
                    self._seal(active)
                except OSError as error:
                    errors.append(error)
            for segment in self._segments.values():
                if segment.ack_fd is not None:
                    try:
                        if self._durable and segment in self._ack_dirty:
                            sync_fd(segment.ack_fd)
                    except OSError as error:
                        errors.append(error)
                    os.close(segment.ack_fd)
                    segment.ack_fd = None
            self._ack_dirty.clear()
        with self._take_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        unwritable = [error for error in errors if _disk_full(error)]
        if unwritable:
            # (Audit 6: a full disk made a stop after full delivery exit 1.) The seal
            # and the syncs only spare the next start work: it checks an unsealed
            # segment itself, and an ack that did not reach the disk re-delivers its
            # record under the same id, a duplicate.
            log.warning("spool: could not seal or sync at close (the disk is full or cannot be written); the "
                        "next start checks the last segment again and may send records again, as duplicates",
                        directory=str(self.directory), error=unwritable[0].strerror)
        errors = [error for error in errors if not _disk_full(error)]
        if errors:
            raise StateError(f"cannot sync spool {self.directory} at close: {errors[0]}") from errors[0]

    def _require_open(self) -> bool:
        if self._state == _NEW:
            raise StateError("spool used before open()")
        return self._state == _OPEN

    # -- append ----------------------------------------------------------------

    def append(self, events: Sequence[Event], timeout: float | None = None) -> bool:
        """Write ``events`` as one batch of frames, after every earlier batch.

        Waits while the batch does not fit in ``max_bytes``: True once it is
        written (and synced, with fsync="batch"); False if ``timeout`` passed
        or the queue was closed first, in which case nothing was written.
        """
        if not self._require_open():
            return False
        if not events:
            return True
        data, starts, size = self._encoder.encode(events)
        if size + HEADER_SIZE > self._max_bytes:
            raise ValueError(
                f"a batch of {len(events)} events encodes to {size} bytes, which cannot fit in a "
                f"spool of max_bytes={self._max_bytes} (with the {HEADER_SIZE}-byte segment "
                f"header) even when it is empty; append smaller batches or raise max_bytes")
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        try:
            while True:
                with self._write_lock:
                    if self._state != _OPEN:
                        return False
                    self._space.clear()  # before the check: an ack after it sets it again
                    if self._try_write(events, data, starts, size):
                        return True
                    if self._disk_full_since is not None and self._reclaimable():
                        continue  # the next try frees the delivered segment: no need to wait
                    if self._undeleted:
                        with self._ack_lock:
                            self._retry_deletes()
                if deadline is None:
                    wait = _WAIT_SLICE
                else:
                    wait = deadline - self._clock.monotonic()
                    if wait <= 0:
                        return False
                if not self._append_waiting:
                    self._append_waiting = True
                    self.wake()  # (see ``blocked``)
                self._clock.wait(self._space, wait)
        finally:
            self._append_waiting = False

    def _try_write(self, events: Sequence[Event], data: bytes, starts: list[int], size: int) -> bool:
        with self._lock:
            active = self._active
            # On a full disk, a fully acknowledged active segment is all the
            # agent can free itself: kept only because it is being written,
            # sealing it deletes it (else the spool could stall on its own
            # delivered records, with nothing left to acknowledge).
            roll = (active is None or active.broken
                    or (active.count > 0 and active.size + size > self._segment_bytes)
                    or (self._disk_full_since is not None and self._reclaimable()))
            room = self._max_bytes - self._used
            if size + (HEADER_SIZE if roll else 0) > room:
                # A fully acknowledged active segment is only kept because it
                # is being written: sealing it deletes it and frees its bytes.
                if not (active is not None and active.count > 0 and active.fully_acked
                        and size + HEADER_SIZE <= room + active.size):
                    return False
                roll = True
        if roll:
            try:
                self._roll()
            except StateError as error:
                if not _disk_full(error.__cause__):
                    raise
                self._warn_disk_full(error.__cause__)  # the next try rolls again
                return False
        active = self._active
        assert active is not None and active.fd is not None
        base = active.size
        try:
            write_all(active.fd, data)
            if self._fsync == "batch":
                sync_fd(active.fd)
        except OSError as error:
            try:
                os.ftruncate(active.fd, base)
                os.lseek(active.fd, base, os.SEEK_SET)
            except OSError:
                # (A read-only file system refuses the cut too.) The next write starts a
                # new segment; frames of this batch left whole in this one only come
                # again after a restart, under the same ids: duplicates, never losses.
                active.broken = True
            else:
                if _disk_full(error):
                    self._warn_disk_full(error)
                    return False
                active.broken = True
            if _disk_full(error):
                self._warn_disk_full(error)
                return False
            raise StateError(f"cannot write spool segment {active.path}: {error}") from error
        now = self._clock.time()
        if self._disk_full_since is not None:
            self._disk_full_since = None
            with self._episode_lock:
                if self._episode_since is not None and self._episode_ok_since is None:
                    self._episode_ok_since = now  # (resumed once it lasts: ``_settle``)
        if self._episode_since is not None:
            self._settle(now)
        count = len(events)
        with self._lock:
            first = active.count
            active.acked.extend(bytes(count))
            active.count = first + count
            active.size = base + size
            active.data_dirty = self._fsync == "interval"
            active.append_time(first, now)
            self._used += size
            self._pending += count
            self._tail.add(active.id, first, base, starts, events, size)
        self._readable.set()
        return True

    def _reclaimable(self) -> bool:
        """Whether the active segment holds records, all acknowledged (sealing it deletes it)."""
        active = self._active
        return active is not None and active.count > 0 and active.fully_acked

    @property
    def disk_full(self) -> bool:
        """Whether the last write found the disk full (and none has succeeded since):
        a batch that waits may then be written in smaller parts."""
        return self._disk_full_since is not None

    @property
    def blocked(self) -> bool:
        """Whether nothing new can come before what was handed out is
        acknowledged: an append waits for room, or the disk is full. A
        consumer then sends what it holds instead of waiting to fill a batch
        (a spool smaller than a few reader groups waited out --flush-interval
        at every turn: 25,000 lines took 52 s with 400 KiB, 1.3 s with 4 MiB).
        A ``take`` waiting when an append starts to wait returns at once."""
        return self._append_waiting or self._disk_full_since is not None

    def _warn_disk_full(self, error: OSError) -> None:
        now = self._clock.time()
        if self._disk_full_since is None:
            self._disk_full_since = now
            # A consumer waiting for more records to fill its batch gets none until
            # what it has is delivered: it is told now (``disk_full``), not at its deadline.
            self.wake()
        with self._episode_lock:
            if self._episode_since is not None:
                # An episode on (the log's last word is that the disk is full): it goes on.
                # A disk the spool itself fills is full at every segment's end until the
                # output catches up: one warning for all of it, not one a second.
                self._episode_ok_since = None
                return
            self._episode_since, self._episode_ok_since = now, None
            self._episode_error = error.strerror or str(error)
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                log.warning("spool: the disk is full; reading waits until space is freed (acknowledged "
                            "records, or space freed by others), nothing is lost", directory=str(self.directory),
                            error=error.strerror)
            else:
                log.warning("spool: the spool directory cannot be written; reading waits until it can (a "
                            "read-only file system must be repaired and mounted read-write), what is spooled "
                            "is still delivered, nothing is lost", directory=str(self.directory),
                            error=error.strerror)

    def _settle(self, now: float, closing: bool = False) -> None:
        """End the full-disk episode (and log it) once writes have gone through
        for ``DISK_FULL_QUIET`` seconds (at close: once the last one did)."""
        with self._episode_lock:
            since, ok_since = self._episode_since, self._episode_ok_since
            if since is None or ok_since is None or (now - ok_since < DISK_FULL_QUIET and not closing):
                return
            self._episode_since = self._episode_ok_since = None
        log.warning("spool: writing resumed", directory=str(self.directory), full_for=round(ok_since - since, 1))

    def disk_full_episode(self) -> dict[str, Any] | None:
        """The full-disk episode on now, for the status file: ``{"for": seconds
        since it began, "error": the error's text, "writing": whether writes go
        through again (not yet for DISK_FULL_QUIET seconds)}``, or None. What
        the log says: the episode begins with the warning and ends with
        "writing resumed", which this logs when it is due and no write came to
        log it (the agent calls this every second)."""
        if self._episode_since is None:
            return None
        now = self._clock.time()
        self._settle(now)
        with self._episode_lock:
            if self._episode_since is None:
                return None
            return {"for": round(max(0.0, now - self._episode_since), 1), "error": self._episode_error,
                    "writing": self._episode_ok_since is not None}

    def retire_delivered(self) -> None:
        """On a full disk, delete the segment being written once every record
        in it is delivered (the next append starts a new one). ``append``
        does so itself when it waits; this is for an agent with nothing more
        to write, which kept up to a segment of delivered records on a full
        disk (the model server's own logs may need it) until the next line.
        Called by ``ack`` (an output thread), holding no lock of the queue."""
        if self._disk_full_since is None or not self._reclaimable():
            return
        with self._write_lock:
            if self._state != _OPEN or not self._reclaimable():
                return
            try:
                self._retire_active()
            except StateError as error:  # (a seal the disk refused: the next append rolls it)
                log.debug("spool: could not retire the delivered segment", error=str(error))

    def reclaim(self) -> bool:
        """Another writer on the spool's disk (the registry, health's journal or
        checkpoint, the status file) found it full (ENOSPC, EDQUOT): free what
        the spool can, as its own full write does. The segment being written
        is sealed now (the next append starts a new one): deleted at once if
        every record in it is delivered, else as soon as its last one is (a
        sealed segment goes with its last ack; while being written it never
        would, with new records coming all the time). Audit 11: on a 3 MiB
        state disk the spool kept a 1.27 MB segment of delivered records while
        health left out 2,001 of 10,000 events and the registry could not be
        saved. A delivered segment whose deletion failed before is deleted
        again. True if bytes were freed now: the caller may write again at
        once. Any thread, holding no lock of the queue (its locks, in order)."""
        if self._state != _OPEN:
            return False
        used = self._used
        if self._undeleted:
            with self._ack_lock:
                if self._state == _OPEN:
                    self._retry_deletes()
        active = self._active
        if active is not None and active.count > 0:
            with self._write_lock:
                if self._state == _OPEN and self._active is active:
                    try:
                        self._retire_active()
                    except StateError as error:  # (the seal refused: sealed in memory all the same)
                        log.debug("spool: could not seal the segment being written", error=str(error))
        freed = max(0, used - self._used)
        if freed:
            log.info("spool: another state file found the disk full; the spool freed its delivered records",
                     directory=str(self.directory), freed_bytes=freed)
        return freed > 0

    def _roll(self) -> None:
        """Seal the active segment (deleting it if fully acknowledged) and start
        a new one. Called with _write_lock held."""
        self._retire_active()
        seg_id = self._next_id
        try:
            segment = create_segment(self.directory, seg_id, self._clock.time(), self._durable)
        except OSError as error:
            raise StateError(f"cannot create spool segment in {self.directory}: {error}") from error
        with self._lock:
            self._next_id = seg_id + 1
            self._segments[seg_id] = segment
            self._active = segment
            self._used += segment.size

    def _retire_active(self) -> None:
        """Seal the active segment (deleting it if fully acknowledged); none is
        active after. Called with _write_lock held."""
        old = self._active
        if old is not None:
            # Whatever fails below, the old segment is sealed in memory and
            # the next append starts a new one; an unsealed segment on disk
            # only makes the next open more careful.
            problem: OSError | None = None
            if old.fd is not None:
                try:
                    if self._durable and old.data_dirty:
                        sync_fd(old.fd)
                except OSError as error:
                    problem = error
                finally:
                    os.close(old.fd)
                    old.fd = None
            with self._ack_lock:
                with self._lock:
                    old.sealed = True
                    self._active = None
                    delete = old.fully_acked and not old.deleting
                    if delete:
                        old.deleting = True
                if delete:
                    self._delete(old)
                elif problem is None:
                    try:
                        self._seal(old)
                    except OSError as error:
                        problem = error
            if problem is not None:
                raise StateError(f"cannot seal spool segment {old.path}: {problem}") from problem

    # -- background sync ("interval") ------------------------------------------

    def _flush_loop(self) -> None:
        # Real time, not the clock seam: this only bounds how stale the disk may be.
        while not self._stop.wait(self._fsync_interval):
            try:
                self._flush()
            except OSError as error:
                log.error("spool sync failed; will retry", directory=str(self.directory),
                          error=str(error))

    def _flush(self) -> None:
        with self._write_lock:
            active = self._active
            if active is not None and active.fd is not None and active.data_dirty:
                active.data_dirty = False
                sync_fd(active.fd)
        with self._ack_lock:
            dirty, self._ack_dirty = self._ack_dirty, set()
            for segment in dirty:
                if segment.ack_fd is not None:
                    sync_fd(segment.ack_fd)

    # -- gauges ----------------------------------------------------------------

    def nearly_full(self) -> bool:
        """True a little before the spool is full, so the reader pauses while
        the group it is building still fits. A fully acknowledged segment
        being written does not count: the next append deletes it, and only an
        append can (counted, a reader paused by it waited for ever with every
        record delivered, when one group took most of a small spool)."""
        used = self._used
        active = self._active
        if active is not None and active.count > 0 and active.fully_acked:
            used -= active.size
        return used >= self._max_bytes - min(self._max_bytes // 10, 16 * 1024 * 1024)

    def used_bytes(self) -> int:
        """Bytes of segment files on disk."""
        return self._used

    def max_bytes(self) -> int:
        return self._max_bytes

    def pending(self) -> int:
        """Records appended (or recovered) and not acknowledged yet, handed out or not."""
        return self._pending

    def oldest_unacked_age(self) -> float | None:
        """Seconds since the oldest unacknowledged record was appended (to about a
        second; for records recovered at open, since their segment was created),
        or None if every record is acknowledged."""
        with self._lock:
            for segment in self._segments.values():
                appended = segment.oldest_unacked_time()
                if appended is not None:
                    return max(0.0, self._clock.time() - appended)
        return None
