"""Opening a spool directory: scan every segment, apply its ack file, report.

Guarantees of ``recover``:

* it never refuses to start because of what is in the files: a torn or
  corrupt frame is counted, logged (segment file, byte offset, reason) and
  stepped over (see frames.py for the resynchronisation), and the intact
  frames before and after it, in this segment and in every other, are kept;
* a segment of another format version is renamed ``*.seg.unsupported`` and
  left alone (never interpreted, never deleted); its ack file is removed,
  and it counts as damage for ``pending_by_source`` (below): what it holds
  is read again from the files, as far as they still exist;
* a damaged ack file is rewritten with its intact blocks (the lost acks only
  cause re-delivery); an ack file without its segment is removed;
* a segment shorter than its seal (segment.py) lost frames at its end: that
  counts as one damaged region;
* a segment whose intact records are all acknowledged (including one with no
  intact record at all) is deleted now; every other one is sealed at its
  current size;
* each damaged region is described by its intact neighbours (``Damage``,
  from ``agent.spool.damage``: for each source they point to, the offsets
  between which its lines were in the damage), for ``explain_damage`` to
  tell with the registry whether those lines are read again or lost;
* only OSError (an unreadable directory or file) escapes; ``DiskQueue.open``
  turns it into StateError (ConfigError for a file this user may not read
  or a spool file that is a directory: a restart cannot fix those).

``pending_by_source[key]`` is where the reader may resume ``key`` without
losing anything: the ``end`` of the run of the source's records that starts
at its first record still in the spool and continues while each record
starts where the previous one ended (acknowledged records count: they were
delivered). Because a damaged region may have held a record of any source,
the first damage (or an older segment without a seal, whose end cannot be
checked) ends every run, and a source first seen after it gets no entry.
The reader should resume at max(registry offset, this value); a source with
no entry at its registry offset. What that re-reads and was spooled already
is delivered twice, which the output dedupes.

Not detected: a segment file deleted by hand. Segments are deleted after
delivery too, so a missing one cannot be told from a delivered one; the
runs then start after it, the reader resumes after them, and what it held
is lost, whatever the registry offset (measured: 1,992 lines, with the
offset still at 0). Resuming at the registry offset whenever the first
spooled record lies above it would not tell either: after every crash the
registry lags the spool's deletions by up to a second, and it would read
the whole spooled backlog again.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from agent.spool.frames import (HEADER_DAMAGED, HEADER_SIZE, HEADER_UNSUPPORTED, decode_header,
                                scan)
from agent.spool.segment import (ACK_SUFFIX, SEG_SUFFIX, TEMP_SUFFIX, UNSUPPORTED_SUFFIX, Segment,
                                 ack_name, delete_files, encode_seal_block, load_acks,
                                 open_ack_file, parse_id, rewrite_ack_file, seg_name, sync_fd,
                                 unlink_quietly, write_all)
from agent.selflog import get_logger
from agent.spool.damage import Damage, Neighbours

log = get_logger("spool")
@dataclass(frozen=True)
class Recovery:
    """What ``DiskQueue.open`` found.

    ``segments``: segment files scanned; ``records``: intact unacknowledged
    records made available to ``take``; ``damaged_frames``: damaged regions
    (a torn or corrupt frame or a run of them, a damaged header, the missing
    end of a sealed segment), each counted once; ``damaged_bytes``: their
    total size (for a missing end, the bytes missing).
    ``pending_by_source``: see the module docstring. ``damage``: each
    damaged region with what its neighbours say it held (``explain_damage``
    tells, with the registry, whether that is read again or lost).
    """

    segments: int = 0
    records: int = 0
    damaged_frames: int = 0
    damaged_bytes: int = 0
    pending_by_source: Mapping[str, int] = field(default_factory=dict)
    damage: tuple[Damage, ...] = ()


class _Runs:
    """Computes ``pending_by_source`` from records and damage in spool order."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._excluded: set[str] = set()
        self._damaged = False

    def record(self, key: str, offset: int, end: int) -> None:
        run_end = self._open.get(key)
        if run_end is not None:
            if offset == run_end:
                self._open[key] = end
            else:
                self._done[key] = self._open.pop(key)
        elif key in self._done or key in self._excluded:
            return
        elif self._damaged:
            self._excluded.add(key)
        else:
            self._open[key] = end

    def damage(self) -> None:
        self._damaged = True
        self._done.update(self._open)
        self._open.clear()

    def result(self) -> dict[str, int]:
        return {**self._done, **self._open}


@dataclass
class Recovered:
    segments: dict[int, Segment]
    recovery: Recovery
    used_bytes: int
    next_id: int


def recover(directory: Path, durable: bool) -> Recovered:
    names = os.listdir(directory)
    seg_ids = sorted(i for i in (parse_id(n, SEG_SUFFIX) for n in names) if i is not None)
    ack_ids = {i for i in (parse_id(n, ACK_SUFFIX) for n in names) if i is not None}
    aside_ids = {i for i in (parse_id(n, UNSUPPORTED_SUFFIX) for n in names) if i is not None}
    next_id = max([0, *seg_ids, *ack_ids, *aside_ids]) + 1

    for name in names:
        if name.startswith(".") and name.endswith(TEMP_SUFFIX):
            unlink_quietly(directory / name)  # a rewrite interrupted before its rename
    for orphan in ack_ids.difference(seg_ids):
        unlink_quietly(directory / ack_name(orphan))

    runs = _Runs()
    neighbours = Neighbours()
    totals = {"records": 0, "damaged_frames": 0, "damaged_bytes": 0}
    segments: dict[int, Segment] = {}
    used = 0
    for seg_id in seg_ids:
        segment = _recover_segment(directory, seg_id, seg_id == seg_ids[-1], runs, totals, durable, neighbours)
        if segment is None:
            continue
        if segment.fully_acked:
            if segment.damaged or segment.count == 0:
                log.warning("spool segment has no unacknowledged intact record left; deleting it",
                            segment=str(segment.path), records=segment.count,
                            damaged_regions=len(segment.damaged))
            delete_files(segment)
            continue
        segment.sealed = True
        segments[seg_id] = segment
        used += segment.size
        totals["records"] += segment.count - segment.n_acked

    recovery = Recovery(segments=len(seg_ids), records=totals["records"],
                        damaged_frames=totals["damaged_frames"],
                        damaged_bytes=totals["damaged_bytes"],
                        pending_by_source=MappingProxyType(runs.result()), damage=neighbours.result())
    return Recovered(segments, recovery, used, next_id)


def _recover_segment(directory: Path, seg_id: int, newest: bool, runs: _Runs,
                     totals: dict[str, int], durable: bool, neighbours: Neighbours) -> Segment | None:
    path = directory / seg_name(seg_id)
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        size = stat.st_size
        view: mmap.mmap | bytes = (mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                                   if size else b"")
    try:
        status, version, created = decode_header(view)
        if status == HEADER_UNSUPPORTED:
            aside = path.with_name(path.name[:-len(SEG_SUFFIX)] + UNSUPPORTED_SUFFIX)
            os.replace(path, aside)
            # Its records are unknown to this version: like damage, it ends every source's
            # run, so the reader resumes at the registry's offsets and reads them again.
            runs.damage()
            unlink_quietly(directory / ack_name(seg_id))  # the acks of records never read
            log.warning("spool segment has an unsupported format version; set aside, its lines are read "
                        "again from the files", segment=str(path), version=version, moved_to=str(aside))
            return None
        segment = Segment(directory, seg_id, created if status != HEADER_DAMAGED else stat.st_mtime)
        segment.size = size

        def damage(start: int, stop: int, reason: str) -> None:
            totals["damaged_frames"] += 1
            totals["damaged_bytes"] += stop - start
            runs.damage()
            neighbours.damage(str(path), start, stop, reason)
            log.warning("spool frame damaged; skipped", segment=str(path), offset=start, bytes=stop - start,
                        reason=reason)  # (what it held: ``explain_damage``, once the registry is read)

        if status == HEADER_DAMAGED and size:  # an empty file: its creation was cut short
            damage(0, min(size, HEADER_SIZE), "damaged segment header")
        ack_state = load_acks(segment.ack_path)
        acks = ack_state.acked
        kept: list[int] = []
        acked = segment.acked
        for pos, nxt, event, reason in scan(view, HEADER_SIZE, size):
            if event is None:
                segment.damaged[pos] = nxt
                damage(pos, nxt, reason)
                continue
            if pos in acks:
                acked.append(1)
                kept.append(pos)
            else:
                acked.append(0)
            runs.record(event.source_key, event.offset, event.end)
            neighbours.record(event.source_key, event.offset, event.end, nxt - pos)
        segment.count = len(acked)
        segment.n_acked = len(kept)
        sealed = ack_state.sealed_size
        if sealed is not None and size < sealed:
            damage(size, sealed, "segment is shorter than when it was sealed")
        elif sealed is None and not newest and size:
            # Only the newest segment may be unsealed (the process died while
            # writing it); here a cut between two frames could go unseen.
            runs.damage()
            log.warning("spool segment has no seal; a loss at its end cannot be ruled out",
                        segment=str(path), ack_file=str(segment.ack_path),
                        error=ack_state.problem or ("ack file missing" if ack_state.missing else "no seal block"))
    finally:
        if isinstance(view, mmap.mmap):
            view.close()

    if segment.fully_acked:
        return segment
    if ack_state.problem:
        log.warning("spool ack file damaged; its intact part is kept, the rest will be delivered again",
                    ack_file=str(segment.ack_path), error=ack_state.problem)
        rewrite_ack_file(segment, directory, kept, size)
    elif sealed != size:
        # Seal what was found, so that the next open checks against it.
        segment.ack_fd = open_ack_file(segment, directory, durable)
        write_all(segment.ack_fd, encode_seal_block(size))
        if durable:
            sync_fd(segment.ack_fd)
    return segment
