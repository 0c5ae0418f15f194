"""What a damaged region of the spool held, and whether it is lost.

``recover`` (``agent.spool.recovery``) feeds a ``Neighbours`` every intact
record and every damaged frame of the segments, in spool order; it gives one
``Damage`` per damaged region (consecutive damaged frames with no intact
record between them), with a ``LostRange`` per source its intact neighbours
point to. ``explain_damage`` then asks the registry, at start-up, whether
each range is read again from its file (the file is still there and the
reader resumes at or before it), was delivered before (the registry
committed past it), or is lost (the file is gone or rotated away), logs it
naming the file and offsets, and returns the bytes lost for the
``lost_bytes`` counter.

Guarantees: each damaged record is counted for one source only; a figure
is exact where both bounds are known, else an estimate from the source's
average line that is never above what the region held; where the split
between two sources cannot be told, the range says "none to about N" and
is not counted. Nothing here reads or writes a file but ``os.stat`` of the
sources.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.selflog import get_logger

if TYPE_CHECKING:
    from agent.spool.recovery import Recovery

log = get_logger("spool")
_RECENT = 64  # records before a damaged region whose sources may have lost their tail in it


@dataclass(frozen=True)
class LostRange:
    """Lines of one source a damaged region may have held, as its intact
    neighbours in the spool tell: ``start``, the end of the source's last
    intact record before the damage (None: none in the spool), ``stop``, the
    offset of its first one after it (None: none after). ``lines``: about how
    many lines (from the source's average line length, or, with a bound
    unknown, from the part of the region's size left to it and the source's
    average frame). ``most``: for a source whose tail was in the damage
    (``stop`` None) while the head of another source was too, and the split
    between the two cannot be told (the other's lines before its first intact
    record could fill the region): ``lines`` is 0 and ``most`` is as many
    as the region could have held of it (None otherwise)."""

    source_key: str
    start: int | None
    stop: int | None
    lines: int
    line_bytes: float  # the source's average line length in the spool (0.0: unknown)
    most: int | None = None


@dataclass(frozen=True)
class Damage:
    """One damaged region (consecutive damaged frames with no intact record
    between them count as one): where, how large, why, and what it held."""

    segment: str
    offset: int
    bytes: int
    reason: str
    ranges: tuple[LostRange, ...]


class _Region:
    __slots__ = ("segment", "offset", "bytes", "reasons", "bounds", "recent", "after", "open")

    def __init__(self, segment: str, offset: int) -> None:
        self.segment, self.offset, self.bytes = segment, offset, 0
        self.reasons: list[str] = []
        self.bounds: dict[str, list[int | None]] = {}  # source key -> [start, stop]
        self.recent: dict[str, int] = {}  # the sources of the intact records right before, how many each
        self.after: str | None = None  # ... and right after
        self.open = True  # no intact record seen after it yet


class Neighbours:
    """What each damaged region held, from the intact records around it, in
    spool order: for every source with records before the damage, the end
    of its last one (``start``) and the offset of its next one after it
    (``stop``): a gap between the two was in the damage. The sources of the
    records right before the damage (the last ``_RECENT``) may have lost their
    tail there (no record after: ``stop`` None), the one right after its head
    (no record before: ``start`` None).

    The region's bytes are split among them, each record counted once (audit
    12: the whole region was counted for the tail source and again for the
    head source, 1,429 bytes said lost for 576): first the gaps of the
    sources with both bounds (exact), then the head source's lines (at most
    its first offset after the damage over its shortest line: it cannot have
    held more of it), and
    what is left is shared among the tail sources as the records right before
    the damage were, each at its own average frame size. Where the head
    source's bound does not bind (it alone could have filled what is left),
    the split cannot be told: the tail sources get ``lines`` 0 and ``most``."""

    def __init__(self) -> None:
        self.regions: list[_Region] = []
        self._last_end: dict[str, int] = {}
        self._recent: deque[str] = deque(maxlen=_RECENT)
        self._waiting: dict[str, _Region] = {}  # source -> the oldest region waiting for its next record
        self._line_sizes: dict[str, list[int]] = {}  # source -> [line bytes, records, frame bytes, shortest line]
        self._frame_bytes = self._frames = 0

    def damage(self, segment: str, start: int, stop: int, reason: str) -> None:
        last = self.regions[-1] if self.regions else None
        if last is not None and last.open:  # no intact record between: the same region
            last.bytes += stop - start
            if reason not in last.reasons:
                last.reasons.append(reason)
            return
        region = _Region(segment, start)
        region.bytes, region.reasons, region.recent = stop - start, [reason], dict(Counter(self._recent))
        for key, end in self._last_end.items():
            if key not in self._waiting:  # (else an earlier region, with no record of it since, has it)
                self._waiting[key] = region
                region.bounds[key] = [end, None]
        self.regions.append(region)

    def record(self, key: str, offset: int, end: int, frame: int) -> None:
        if self.regions and self.regions[-1].open:
            region = self.regions[-1]
            region.open = False
            region.after = key
            if key not in region.bounds and key not in self._waiting:
                region.bounds[key] = [None, offset]
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            waiting.bounds[key][1] = offset
        self._last_end[key] = end
        self._recent.append(key)
        sizes = self._line_sizes.setdefault(key, [0, 0, 0, end - offset])
        sizes[0] += max(0, end - offset)
        sizes[1] += 1
        sizes[2] += frame
        sizes[3] = min(sizes[3], max(0, end - offset))
        self._frame_bytes += frame
        self._frames += 1

    def _sizes(self, key: str, frame: float) -> tuple[float, float]:
        """The source's average line and frame sizes (0.0, or the spool's average frame: unknown)."""
        total, count, frames, _ = self._line_sizes.get(key, (0, 0, 0, 0))
        return (total / count, frames / count) if count else (0.0, frame)

    def _shortest(self, key: str) -> int:
        return self._line_sizes[key][3] if key in self._line_sizes else 0

    def result(self) -> tuple[Damage, ...]:
        frame = self._frame_bytes / self._frames if self._frames else 0.0
        out = []
        for region in self.regions:
            gaps, heads, tails = [], [], []
            for key, (start, stop) in region.bounds.items():
                if start is not None and stop is not None:
                    if stop <= start:
                        continue  # nothing of it was in the damage
                    gaps.append(key)
                elif start is not None:
                    if key in region.recent:  # (else a source that simply wrote nothing more)
                        tails.append(key)
                elif key == region.after:
                    heads.append(key)
            ranges: dict[str, LostRange] = {}
            left = float(region.bytes)  # the region's bytes not yet put down to a source
            for key in gaps:
                start, stop = region.bounds[key]
                line, its_frame = self._sizes(key, frame)
                lines = max(1, round((stop - start) / line)) if line else (
                    round(left / its_frame) if its_frame else 0)
                left -= lines * its_frame
                ranges[key] = LostRange(key, start, stop, lines, line)
            left = max(0.0, left)
            open_ended = False  # the head source alone could have filled what is left
            before_heads = left
            for key in heads:
                stop = region.bounds[key][1]
                line, its_frame = self._sizes(key, frame)
                room = left / its_frame if its_frame else 0.0
                shortest = self._shortest(key)  # (its lines before ``stop``: at most these)
                held = stop / shortest if shortest else room
                if held >= room:
                    # More than one line over what fits: its lines before the damage were not all in it (delivered,
                    # their segment deleted), so how much of the region was its cannot be told.
                    open_ended = bool(tails) and held > room + 1
                    held = room
                lines = max(1, round(held))
                left = max(0.0, left - held * its_frame)
                ranges[key] = LostRange(key, None, stop, lines, line)
            shares = sum(region.recent[key] for key in tails)
            for key in tails:
                line, its_frame = self._sizes(key, frame)
                held = left * region.recent[key] / shares / its_frame if its_frame else 0.0
                if round(held) == 0 and (gaps or heads) and not open_ended:
                    continue  # the others' lines fill the region: nothing of it was in the damage
                if open_ended:  # (at most: the whole region but the gaps)
                    most = before_heads * region.recent[key] / shares / its_frame if its_frame else 0.0
                    ranges[key] = LostRange(key, region.bounds[key][0], None, 0, line, max(1, round(most)))
                else:
                    ranges[key] = LostRange(key, region.bounds[key][0], None, max(1, round(held)), line)
            out.append(Damage(region.segment, region.offset, region.bytes, "; ".join(region.reasons),
                              tuple(ranges[key] for key in region.bounds if key in ranges)))
        return tuple(out)


def _still_there(entry: Any) -> bool:
    """Whether the file of a registry entry is still where the registry last saw it."""
    if entry.gone:
        return False
    try:
        found = os.stat(entry.path)
    except OSError:
        return False
    return (found.st_dev, found.st_ino) == (entry.dev, entry.inode)


def explain_damage(recovery: Recovery, entry_of: Callable[[str], Any]) -> int:
    """Say, for each damaged region ``recovery`` found, what it held: the
    lines of each source its intact neighbours point to (``LostRange``) are
    either read again from their file (the registry knows the file, it is
    still there, and the reader resumes at or before them) or lost (the file
    is gone or rotated away); a range the registry committed past was
    delivered before the damage. ``entry_of``: the registry's ``get`` (an
    entry with ``path``, ``dev``, ``inode``, ``offset``, ``gone``, or None).
    Returns the bytes lost, for the ``lost_bytes`` counter (estimated, from
    the average line, where the damage took the end of what was spooled;
    never more than the region held: a source whose share of a region it
    shared with another's head cannot be told is said to have lost "none to
    about N" lines and is not counted). (Audit 11: "skipped bytes=N" was all
    the log said, the same whether 698 lines were lost or none.)"""
    lost_total = 0
    for damage in recovery.damage:
        where = {"segment": damage.segment, "offset": damage.offset, "bytes": damage.bytes}
        if not damage.ranges:
            log.warning("spool damage: no intact record around it names a source; what it held cannot be told",
                        **where)
            continue
        for lost in damage.ranges:
            entry = entry_of(lost.source_key)
            if entry is None:
                log.warning("spool damage: its source is not in the registry; whether its lines are read again "
                            "cannot be told", source_key=lost.source_key, start=lost.start if lost.start is not None
                            else "-", stop=lost.stop if lost.stop is not None else "-", lines=lost.lines, **where)
                continue
            committed = entry.offset
            start = committed if lost.start is None else max(lost.start, committed)
            stop = lost.stop
            if stop is None and lost.start is not None:  # (the damage took the end of what was spooled of it)
                stop_est = lost.start + round((lost.most if lost.most is not None else lost.lines) * lost.line_bytes)
                if lost.line_bytes and start >= stop_est:
                    stop = stop_est  # the registry committed past the estimated end
            if stop is not None and start >= stop:
                log.info("spool damage: the lines it held were delivered before (the registry committed them)",
                         file=entry.path, committed=committed, **where)
                continue
            if _still_there(entry):
                resume = max(committed, recovery.pending_by_source.get(lost.source_key, 0))
                log.warning(f"spool damage: re-read from {entry.path} at {resume}; nothing is lost (lines "
                            "spooled after it may be sent twice, as duplicates)", file=entry.path, resume_at=resume,
                            **where)
                continue
            if lost.stop is not None:
                size = lost.stop - start
                lines = max(1, round(size / lost.line_bytes)) if lost.line_bytes else lost.lines
                until = str(lost.stop)
            elif lost.most is not None:  # (the split with another source's lines cannot be told)
                most_end = lost.start + round(lost.most * lost.line_bytes)
                most = max(1, round((most_end - start) / lost.line_bytes)) if lost.line_bytes else lost.most
                log.error(f"spool damage: lost: {entry.path} lines from offset {start}, how many cannot be told: none "
                          f"to about {most} (to about offset {max(start, most_end)}; the damage also held the first "
                          "lines of another file; the file is gone or rotated away, so they cannot be read again; "
                          "not counted in lost_bytes)", file=entry.path, start=start, stop="-", lines=f"0-{most}",
                          lost_bytes=0, **where)
                continue
            else:  # (the damage took the end of what was spooled of it: from the estimate of its lines)
                end = lost.start + lost.lines * lost.line_bytes if lost.start is not None else start
                size = max(0, round(end - start))
                lines = max(1, round(size / lost.line_bytes)) if lost.line_bytes else lost.lines
                until = f"about {start + size} (the end of what was spooled)"
            lost_total += size
            log.error(f"spool damage: lost: {entry.path} offsets {start} to {until}, about {lines} lines (the file "
                      "is gone or rotated away, so they cannot be read again; counted in lost_bytes)",
                      file=entry.path, start=start, stop=lost.stop if lost.stop is not None else "-", lines=lines,
                      lost_bytes=size, **where)
    return lost_total
