"""One spool segment on disk: its data file, its ack file, and reading it back.

Files in the spool directory (created 0700)::

    0000000000000007.seg              segment 7: header + record frames (see frames.py), 0600
    0000000000000007.ack              the acknowledged frames of segment 7, 0600
    .0000000000000007.ack.tmp         an ack file being rewritten (removed at open)
    0000000000000007.seg.unsupported  a segment of another format version, set aside

Segment ids are 16 decimal digits so that names sort like ids; a new segment
gets an id above every ``.seg`` and ``.ack`` file present, so a stale ack file
can never describe a newer segment. A segment file only grows, by whole
batches of frames, written by one thread; it is never rewritten.

Ack file (little-endian)::

    header  b"MSCSPACK" | u32 version 1 | u32 crc32 of the 12 bytes before
    blocks  u32 count | u32 crc32 of body | body = count x u32 frame position
    seal    u32 0xFFFFFFFF | u32 crc32 of body | body = u64 final size of the segment

One block per ``ack()`` call that touched the segment, appended with one
``write`` (so a crash of the process loses none), fsynced per the queue's
policy. A frame is named by its byte position in the segment, which damage
elsewhere in the file cannot change. Reading stops at the first damaged
block and the file is then rewritten with what was intact (temp file, fsync,
rename): a lost ack only means that record is delivered again, which the
output tolerates (deterministic ``doc_id``, ``op_type: create``), so there is
nothing worth resynchronising for.

The seal is written (and synced, unless fsync="never") when a segment stops
being written to: when the queue moves to a new segment, at ``close``, and
at ``open`` for the segments it found. It is how ``open`` notices a segment
that lost whole frames at its end (cut exactly between two frames, which no
frame check can see): such a loss counts as damage. Only the newest segment
may lack a seal (the process died while writing it); losing its tail loses
only the newest records, which the reader re-reads.

A segment is deleted (``.seg`` first, then ``.ack``) only when every intact
record in it is acknowledged and it is not the segment being written. A
crash between the two unlinks leaves an ack file without a segment, which
the next open removes.
"""

from __future__ import annotations

import bisect
import os
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

from agent.events import Event
from agent.spool.frames import FRAME, FRAME_OVERHEAD, HEADER_SIZE, encode_header, read_frame

SEG_SUFFIX = ".seg"
ACK_SUFFIX = ".ack"
UNSUPPORTED_SUFFIX = ".seg.unsupported"
TEMP_SUFFIX = ".ack.tmp"
ID_DIGITS = 16

ACK_MAGIC = b"MSCSPACK"
ACK_VERSION = 1
ACK_HEADER_BODY = ACK_MAGIC + ACK_VERSION.to_bytes(4, "little")
ACK_HEADER = ACK_HEADER_BODY + zlib.crc32(ACK_HEADER_BODY).to_bytes(4, "little")

FILE_MODE = 0o600
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_BIG_ENDIAN = sys.byteorder == "big"
READ_CHUNK = 1 << 20

_sync = getattr(os, "fdatasync", os.fsync)


class RefRun(NamedTuple):
    """Names consecutive spooled records of one segment for ``ack``: the
    segment id, the ordinal of the first record among the segment's intact
    frames, and the byte position of each record's frame (one per record).

    Immutable like the frozen dataclasses that cross stages, but a NamedTuple,
    and one per run of records rather than one per record: ``take`` and
    ``ack`` then cost a few steps per batch instead of several per event.
    """

    segment: int
    first: int
    positions: Sequence[int]


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    """One event with the single-record run that acknowledges it (``Taken.records``)."""

    event: Event
    ref: RefRun


class Taken:
    """What one ``take`` hands out: ``events`` in append order, ``refs`` whose
    runs cover exactly those events in the same order, and the events' data
    bytes. Acknowledge all of it with ``ack(taken.refs)``, or single records
    with the refs of ``records()``."""

    __slots__ = ("events", "refs", "nbytes")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.refs: list[RefRun] = []
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.events)

    def add(self, seg_id: int, first: int, events: Sequence[Event], positions: Sequence[int],
            nbytes: int) -> None:
        self.events.extend(events)
        self.refs.append(RefRun(seg_id, first, positions))
        self.nbytes += nbytes

    def records(self) -> list[SpooledEvent]:
        """One (event, single-record ref) pair per event."""
        out: list[SpooledEvent] = []
        events = iter(self.events)
        for run in self.refs:
            for i, position in enumerate(run.positions):
                out.append(SpooledEvent(next(events), RefRun(run.segment, run.first + i, (position,))))
        return out


def seg_name(seg_id: int) -> str:
    return f"{seg_id:0{ID_DIGITS}d}{SEG_SUFFIX}"


def ack_name(seg_id: int) -> str:
    return f"{seg_id:0{ID_DIGITS}d}{ACK_SUFFIX}"


def parse_id(name: str, suffix: str) -> int | None:
    stem = name[:-len(suffix)] if name.endswith(suffix) else ""
    return int(stem) if len(stem) == ID_DIGITS and stem.isdigit() else None


class Segment:
    """What the queue knows about one segment file.

    ``acked`` has one byte per intact record (1 = acknowledged); ``damaged``
    maps the start of each damaged region found at open to its end, so the
    reader steps over it exactly as the scan did. ``time_ords``/``time_vals``
    record when records were appended, at most one entry per second.
    """

    __slots__ = ("id", "path", "ack_path", "size", "count", "acked", "n_acked", "low",
                 "sealed", "deleting", "broken", "damaged", "time_ords", "time_vals",
                 "fd", "ack_fd", "data_dirty", "ack_dirty")

    def __init__(self, directory: Path, seg_id: int, created: float) -> None:
        self.id = seg_id
        self.path = directory / seg_name(seg_id)
        self.ack_path = directory / ack_name(seg_id)
        self.size = 0
        self.count = 0
        self.acked = bytearray()
        self.n_acked = 0
        self.low = 0  # no unacknowledged record below this ordinal
        self.sealed = False
        self.deleting = False
        self.broken = False  # a failed write: never append to it again
        self.damaged: dict[int, int] = {}
        self.time_ords: list[int] = [0]
        self.time_vals: list[float] = [created]
        self.fd: int | None = None
        self.ack_fd: int | None = None
        self.data_dirty = False
        self.ack_dirty = False

    @property
    def fully_acked(self) -> bool:
        return self.n_acked == self.count

    def first_unacked(self) -> int | None:
        if self.n_acked == self.count:
            return None
        index = self.acked.find(0, self.low)
        self.low = index
        return index

    def oldest_unacked_time(self) -> float | None:
        """When the oldest unacknowledged record was appended (to about a second)."""
        ordinal = self.first_unacked()
        if ordinal is None:
            return None
        slot = bisect.bisect_right(self.time_ords, ordinal) - 1
        return self.time_vals[max(slot, 0)]

    def mark(self, first: int, positions: Sequence[int], newly: list[int]) -> int:
        """Mark the records ``first, first + 1, ...`` (one per entry of
        ``positions``) acknowledged; append to ``newly`` the positions of those
        that were not yet, and return how many. Ordinals outside the segment
        are ignored."""
        stop = first + len(positions)
        flags = self.acked
        if 0 <= first and stop <= self.count and flags.find(1, first, stop) < 0:
            # The usual case, a run none of which was acknowledged: in bulk.
            flags[first:stop] = b"\x01" * (stop - first)
            newly.extend(positions)
            count = stop - first
        else:
            count = 0
            for index, position in zip(range(first, stop), positions):
                if 0 <= index < self.count and not flags[index]:
                    flags[index] = 1
                    newly.append(position)
                    count += 1
        self.n_acked += count
        return count

    def append_time(self, ordinal: int, now: float) -> None:
        if now - self.time_vals[-1] >= 1.0:
            self.time_ords.append(ordinal)
            self.time_vals.append(now)


# -- files -------------------------------------------------------------------

def sync_fd(fd: int) -> None:
    _sync(fd)


def sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def create_segment(directory: Path, seg_id: int, created: float, durable: bool) -> Segment:
    """A new, empty segment file (header only), open for appending."""
    segment = Segment(directory, seg_id, created)
    unlink_quietly(segment.ack_path)  # belt and braces: ids are above every ack file already
    fd = os.open(segment.path, _WRITE_FLAGS, FILE_MODE)
    try:
        write_all(fd, encode_header(created))
        if durable:
            sync_fd(fd)
            sync_dir(directory)
    except BaseException:
        os.close(fd)
        unlink_quietly(segment.path)
        raise
    segment.fd = fd
    segment.size = HEADER_SIZE
    return segment


def close_fds(segment: Segment) -> None:
    for name in ("fd", "ack_fd"):
        fd = getattr(segment, name)
        if fd is not None:
            setattr(segment, name, None)
            os.close(fd)


def delete_files(segment: Segment) -> None:
    close_fds(segment)
    unlink_quietly(segment.path)
    unlink_quietly(segment.ack_path)


# -- ack files ----------------------------------------------------------------

SEAL_COUNT = 0xFFFFFFFF
_U64 = struct.Struct("<Q")


def encode_seal_block(size: int) -> bytes:
    body = _U64.pack(size)
    return FRAME.pack(SEAL_COUNT, zlib.crc32(body)) + body


def encode_ack_block(positions: list[int]) -> bytes:
    body = array("I", positions)
    if _BIG_ENDIAN:
        body.byteswap()
    raw = body.tobytes()
    return FRAME.pack(len(positions), zlib.crc32(raw)) + raw


@dataclass
class AckState:
    """What an ack file says: acknowledged positions, the seal, and "" or why
    the file is not entirely intact (or was missing)."""

    acked: set[int]
    sealed_size: int | None
    problem: str
    missing: bool = False


def load_acks(path: Path) -> AckState:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return AckState(set(), None, "", missing=True)
    if raw[:len(ACK_HEADER)] != ACK_HEADER:
        return AckState(set(), None, "bad ack file header")
    state = AckState(set(), None, "")
    pos = len(ACK_HEADER)
    while pos < len(raw):
        if pos + FRAME_OVERHEAD > len(raw):
            state.problem = f"torn ack block at byte {pos}"
            break
        count, crc = FRAME.unpack_from(raw, pos)
        length = _U64.size if count == SEAL_COUNT else 4 * count
        body = raw[pos + FRAME_OVERHEAD:pos + FRAME_OVERHEAD + length]
        if len(body) != length:
            state.problem = f"torn ack block at byte {pos}"
            break
        if zlib.crc32(body) != crc:
            state.problem = f"ack block checksum mismatch at byte {pos}"
            break
        if count == SEAL_COUNT:
            state.sealed_size = _U64.unpack(body)[0]
        else:
            values = array("I")
            values.frombytes(body)
            if _BIG_ENDIAN:
                values.byteswap()
            state.acked.update(values)
        pos += FRAME_OVERHEAD + length
    return state


def open_ack_file(segment: Segment, directory: Path, durable: bool) -> int:
    """The segment's ack file, open for appending; created with its header if missing."""
    try:
        return os.open(segment.ack_path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        pass
    fd = os.open(segment.ack_path, _WRITE_FLAGS | os.O_APPEND, FILE_MODE)
    try:
        write_all(fd, ACK_HEADER)
        if durable:
            sync_fd(fd)
            sync_dir(directory)
    except BaseException:
        os.close(fd)
        raise
    return fd


def rewrite_ack_file(segment: Segment, directory: Path, positions: list[int], sealed_size: int) -> None:
    """Replace the ack file atomically with exactly ``positions`` and a seal."""
    temp = directory / f".{ack_name(segment.id)}.tmp"
    unlink_quietly(temp)
    fd = os.open(temp, _WRITE_FLAGS, FILE_MODE)
    try:
        write_all(fd, ACK_HEADER + (encode_ack_block(positions) if positions else b"")
                  + encode_seal_block(sealed_size))
        sync_fd(fd)
    finally:
        os.close(fd)
    os.replace(temp, segment.ack_path)
    sync_dir(directory)


# -- reading records back ------------------------------------------------------

class SegmentReader:
    """Reads frames of one segment through a buffer of up to ``READ_CHUNK`` bytes.

    Only bytes below the ``limit`` given by the caller (what the writer has
    finished writing) are ever read, so a frame being written is never seen
    half done. Used by one thread at a time (the queue's take lock).
    """

    def __init__(self, segment: Segment) -> None:
        self.seg_id = segment.id
        self._fd: int | None = os.open(segment.path, _READ_FLAGS)
        self._buf = b""
        self._base = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _ensure(self, pos: int, size: int, limit: int) -> None:
        if self._base <= pos and pos + size <= self._base + len(self._buf):
            return
        assert self._fd is not None
        self._buf = os.pread(self._fd, min(max(size, READ_CHUNK), limit - pos), pos)
        self._base = pos

    def read(self, ordinal: int, pos: int, stop: int, limit: int, acked: bytearray,
             damaged: dict[int, int], max_events: int, max_bytes: int,
             taken: Taken) -> tuple[int, int, str]:
        """Add to ``taken`` the unacknowledged records from ``ordinal`` (at byte
        ``pos``) up to ordinal ``stop``, within ``max_events``/``max_bytes``.
        Returns (next ordinal, its position, "" or the reason the frame at
        that position could not be read)."""
        seg_id = self.seg_id
        nbytes = 0
        added = 0
        # The current run of consecutive unacknowledged records.
        run_first = ordinal
        run_events: list[Event] = []
        run_positions: list[int] = []
        run_bytes = 0
        reason = ""
        while ordinal < stop and added < max_events and nbytes < max_bytes:
            skip = damaged.get(pos) if damaged else None
            if skip is not None:
                pos = skip
                continue
            if pos + FRAME_OVERHEAD > limit:
                reason = "frame header past the written end"
                break
            self._ensure(pos, FRAME_OVERHEAD, limit)
            length = FRAME.unpack_from(self._buf, pos - self._base)[0]
            total = FRAME_OVERHEAD + length
            if pos + total > limit:
                reason = "frame runs past the written end"
                break
            self._ensure(pos, total, limit)
            rel = pos - self._base
            event, nxt, reason = read_frame(self._buf, rel, rel + total)
            if event is None:
                break
            if acked[ordinal]:
                if run_events:
                    taken.add(seg_id, run_first, run_events, run_positions, run_bytes)
                    run_events, run_positions, run_bytes = [], [], 0
                run_first = ordinal + 1
            else:
                run_events.append(event)
                run_positions.append(pos)
                run_bytes += len(event.data)
                nbytes += len(event.data)
                added += 1
            ordinal += 1
            pos += total
        if run_events:
            taken.add(seg_id, run_first, run_events, run_positions, run_bytes)
        return ordinal, pos, reason
