"""Crash and corruption on real files: open() always succeeds, counts the
damage, names it in a warning, and delivers every intact unacknowledged
record, in order."""

from __future__ import annotations

import logging
import os
import random
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from agent.events import Event
from agent.spool import DiskQueue, SpooledEvent
from agent.spool.frames import HEADER_SIZE

MiB = 1024 * 1024


def frame(event: Event) -> bytes:
    """The frame of ``event`` as the format in frames.py defines it, built independently."""
    payload = msgpack.packb([1, event.source_key, event.offset, event.end, event.doc_id,
                             event.data, event.target])
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def drain(queue: DiskQueue) -> list[SpooledEvent]:
    out: list[SpooledEvent] = []
    while True:
        got = queue.take(1000, 1 << 40, 0).records()
        if not got:
            return out
        out.extend(got)


def segments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".seg"))


def seg_contents(directory: Path) -> bytes:
    return b"\0".join(p.read_bytes() for p in segments(directory))


@pytest.fixture
def spool_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("modelscribe.spool")
    handler = Keep(logging.DEBUG)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def warnings_of(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.levelno >= logging.WARNING]


class Built:
    def __init__(self, directory: Path, sent: list[Event], acked: set[str]) -> None:
        self.directory = directory
        self.sent = sent
        self.acked = acked

    def expected(self) -> list[Event]:
        """Unacknowledged events whose frame is still intact on disk."""
        contents = seg_contents(self.directory)
        return [e for e in self.sent if e.doc_id not in self.acked and frame(e) in contents]


def build(directory: Path, batches: int = 12, ack_every: int = 4, seed: int = 0) -> Built:
    rng = random.Random(seed)
    queue = DiskQueue(directory, 16 * MiB, fsync="never", segment_bytes=4096)
    queue.open()
    sent: list[Event] = []
    offsets = {"a": 0, "b": 0}
    for _ in range(batches):
        batch = []
        for _ in range(rng.randint(1, 8)):
            key = rng.choice("ab")
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
            start = offsets[key]
            offsets[key] += len(data) + 1
            batch.append(Event(key, start, offsets[key], f"{key}-{start}", data,
                               rng.choice([None, "logs-x"])))
        queue.append(batch)
        sent.extend(batch)
    got = queue.take(100000, 1 << 40, 0).records()
    acked = [s for i, s in enumerate(got) if i % ack_every == 0]
    queue.ack(s.ref for s in acked)
    queue.close()
    return Built(directory, sent, {s.event.doc_id for s in acked})


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("pristine") / "spool")


def copy_of(pristine: Built, tmp_path: Path) -> Built:
    directory = tmp_path / "spool"
    shutil.copytree(pristine.directory, directory)
    return Built(directory, pristine.sent, pristine.acked)


def reopen(built: Built) -> tuple[DiskQueue, list[Event]]:
    queue = DiskQueue(built.directory, 16 * MiB, fsync="never", segment_bytes=4096)
    recovery = queue.open()
    delivered = [s.event for s in drain(queue)]
    assert recovery.records == len(delivered)
    return queue, delivered


def test_the_pristine_spool_delivers_exactly_the_unacked_records(pristine: Built, tmp_path: Path) -> None:
    built = copy_of(pristine, tmp_path)
    assert len(segments(built.directory)) >= 3
    queue = DiskQueue(built.directory, 16 * MiB)
    recovery = queue.open()
    assert (recovery.damaged_frames, recovery.damaged_bytes) == (0, 0)
    assert [s.event for s in drain(queue)] == [e for e in built.sent if e.doc_id not in built.acked]
    assert recovery.pending_by_source == {
        key: max(e.end for e in built.sent if e.source_key == key) for key in "ab"}
    queue.close()


@pytest.mark.parametrize("seed", range(12))
def test_truncation_at_any_byte_loses_only_the_cut_frames(pristine: Built, tmp_path: Path, seed: int,
                                                          spool_log: list[logging.LogRecord]) -> None:
    built = copy_of(pristine, tmp_path)
    rng = random.Random(seed)
    victim = rng.choice(segments(built.directory))
    cut = rng.randrange(victim.stat().st_size)
    os.truncate(victim, cut)
    queue, delivered = reopen(built)
    assert delivered == built.expected()
    report = warnings_of(spool_log)
    # Every truncation of a sealed segment is seen: a cut frame, or the seal.
    assert report and any(r.kv.get("segment") == str(victim) for r in report)
    queue.close()


@pytest.mark.parametrize("seed", range(12))
def test_flipped_bytes_lose_only_the_frames_they_hit(pristine: Built, tmp_path: Path, seed: int,
                                                     spool_log: list[logging.LogRecord]) -> None:
    built = copy_of(pristine, tmp_path)
    rng = random.Random(seed)
    victim = rng.choice(segments(built.directory))
    raw = bytearray(victim.read_bytes())
    hits = sorted(rng.randrange(len(raw)) for _ in range(rng.randint(1, 4)))
    for pos in hits:
        raw[pos] ^= rng.randrange(1, 256)
    victim.write_bytes(bytes(raw))
    queue = DiskQueue(built.directory, 16 * MiB, fsync="never")
    recovery = queue.open()
    delivered = [s.event for s in drain(queue)]
    assert delivered == built.expected()
    lost = [e for e in built.sent if e.doc_id not in built.acked and e not in delivered]
    if lost:
        assert recovery.damaged_frames >= 1
        damage = [r for r in warnings_of(spool_log) if r.getMessage() == "spool frame damaged; skipped"]
        assert all(r.kv["segment"] == str(victim) and isinstance(r.kv["offset"], int) for r in damage)
        assert damage[0].kv["offset"] <= hits[0] + 8 or hits[0] < HEADER_SIZE
    queue.close()


def test_a_torn_last_write_is_counted_and_everything_else_kept(pristine: Built, tmp_path: Path) -> None:
    built = copy_of(pristine, tmp_path)
    last = segments(built.directory)[-1]
    torn = frame(Event("a", 10**6, 10**6 + 5, "never-finished", b"x" * 200))[:150]
    with open(last, "ab") as handle:
        handle.write(torn)
    queue = DiskQueue(built.directory, 16 * MiB)
    recovery = queue.open()
    assert (recovery.damaged_frames, recovery.damaged_bytes) == (1, 150)
    assert [s.event for s in drain(queue)] == built.expected()
    # The damage is after every record: the runs are unaffected.
    assert recovery.pending_by_source == {
        key: max(e.end for e in built.sent if e.source_key == key) for key in "ab"}
    queue.close()


def test_a_sealed_segment_cut_between_two_frames_is_detected(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    queue = DiskQueue(directory, 16 * MiB, segment_bytes=4096)
    queue.open()
    a = [Event("a", i, i + 1, f"a{i}", b"x" * 200) for i in range(30)]
    queue.append(a[:15])
    late = [Event("late", 0, 10, "late0", b"y")]
    queue.append(a[15:] + late)
    queue.close()
    first = segments(directory)[0]
    content = first.read_bytes()
    os.truncate(first, content.index(frame(a[10])))  # exactly between frames
    recovery = DiskQueue(directory, 16 * MiB).open()
    assert recovery.damaged_frames == 1
    # a's run ends at the loss; "late" is first seen after it, so it gets no
    # entry: the reader resumes it from the registry.
    assert recovery.pending_by_source == {"a": 10}


def test_a_deleted_ack_file_redelivers_that_segment(pristine: Built, tmp_path: Path) -> None:
    built = copy_of(pristine, tmp_path)
    victim = segments(built.directory)[0]
    victim.with_suffix(".ack").unlink()
    in_victim = victim.read_bytes()
    queue, delivered = reopen(built)
    assert delivered == [e for e in built.sent if e.doc_id not in built.acked or frame(e) in in_victim]
    queue.close()


def test_a_damaged_ack_file_keeps_its_intact_blocks(tmp_path: Path,
                                                    spool_log: list[logging.LogRecord]) -> None:
    directory = tmp_path / "spool"
    queue = DiskQueue(directory, 16 * MiB)
    queue.open()
    sent = [Event("a", i, i + 1, f"a{i}", b"x" * 10) for i in range(10)]
    queue.append(sent)
    got = queue.take(100, 1 << 20, 0).records()
    queue.ack([got[0].ref, got[1].ref])  # block 1
    queue.ack([got[5].ref])  # block 2
    queue.close()  # block 3: the seal
    ack_file = segments(directory)[0].with_suffix(".ack")
    raw = bytearray(ack_file.read_bytes())
    raw[-16 - 3] ^= 0xFF  # inside block 2: it and the seal after it are lost
    ack_file.write_bytes(bytes(raw))

    queue = DiskQueue(directory, 16 * MiB)
    recovery = queue.open()
    assert recovery.damaged_frames == 0  # ack damage costs re-delivery, not records
    assert [s.event for s in drain(queue)] == sent[2:]
    assert any(r.getMessage().startswith("spool ack file damaged") for r in spool_log)
    queue.close()
    spool_log.clear()
    queue = DiskQueue(directory, 16 * MiB)
    queue.open()  # the file was rewritten: clean now
    assert warnings_of(spool_log) == []
    assert len(drain(queue)) == 8
    queue.close()


def test_a_damaged_header_still_yields_the_frames(pristine: Built, tmp_path: Path) -> None:
    built = copy_of(pristine, tmp_path)
    victim = segments(built.directory)[0]
    raw = bytearray(victim.read_bytes())
    raw[0:8] = b"garbage!"
    victim.write_bytes(bytes(raw))
    queue = DiskQueue(built.directory, 16 * MiB)
    recovery = queue.open()
    assert (recovery.damaged_frames, recovery.damaged_bytes) == (1, HEADER_SIZE)
    assert [s.event for s in drain(queue)] == built.expected()
    queue.close()


def test_an_unsupported_version_is_set_aside(pristine: Built, tmp_path: Path) -> None:
    built = copy_of(pristine, tmp_path)
    victim = segments(built.directory)[0]
    raw = bytearray(victim.read_bytes())
    raw[8:12] = struct.pack("<I", 99)
    raw[24:28] = struct.pack("<I", zlib.crc32(bytes(raw[:24])))
    victim.write_bytes(bytes(raw))
    queue = DiskQueue(built.directory, 16 * MiB)
    had_acks = victim.with_suffix(".ack").exists()
    recovery = queue.open()
    assert recovery.damaged_frames == 0
    assert victim.with_name(victim.name + ".unsupported").exists()
    assert had_acks and not victim.with_suffix(".ack").exists()
    # Its records are unknown: no source may resume past them, the reader goes back to the
    # registry's offsets (the set-aside segment was the oldest, so every source starts there).
    assert recovery.pending_by_source == {}
    assert [s.event for s in drain(queue)] == built.expected()
    queue.close()


def test_a_segment_with_nothing_intact_is_removed(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / "0000000000000001.seg").write_bytes(b"")
    (directory / "0000000000000002.seg").write_bytes(b"\x01\x02\x03")
    queue = DiskQueue(directory, 16 * MiB)
    recovery = queue.open()
    assert (recovery.segments, recovery.records, recovery.damaged_frames) == (2, 0, 1)
    assert segments(directory) == []
    queue.append([Event("a", 0, 1, "a0", b"x")])
    assert [s.event.doc_id for s in queue.take(10, 1000, 0).records()] == ["a0"]
    queue.close()


def test_damage_found_while_running_loses_only_that_segment_tail(tmp_path: Path,
                                                                  spool_log: list[logging.LogRecord]) -> None:
    directory = tmp_path / "spool"
    queue = DiskQueue(directory, 16 * MiB, segment_bytes=4096, cache_bytes=0)
    queue.open()
    sent = [Event("a", i, i + 1, f"a{i}", b"z" * 200) for i in range(60)]
    for i in range(0, 60, 10):
        queue.append(sent[i:i + 10])
    first = segments(directory)[0]
    raw = bytearray(first.read_bytes())
    pos = raw.index(frame(sent[5]))
    raw[pos + 20] ^= 0xFF
    first.write_bytes(bytes(raw))
    got = [s.event for s in drain(queue)]
    in_first = [e for e in sent if frame(e) in bytes(raw) or e is sent[5]]
    assert got == sent[:5] + [e for e in sent if e not in in_first]
    assert any(r.getMessage().startswith("spool frame damaged while reading") for r in spool_log)
    queue.close()


def test_damage_names_the_lines_it_held_and_explain_damage_says_reread_or_lost(tmp_path: Path, spool_log) -> None:
    # Audit 11: "spool frame damaged; skipped bytes=N" was all that was said.
    from types import SimpleNamespace

    from agent.spool.damage import explain_damage

    directory = tmp_path / "spool"
    queue = DiskQueue(directory, 16 * MiB)
    queue.open()
    # Two files, interleaved, 100-byte lines: a0 b0 a1 b1 ...
    sent = [Event(key, i * 100, i * 100 + 100, f"{key}{i:03d}", b"d" * 200) for i in range(40) for key in "ab"]
    assert queue.append(sent)
    queue.close()
    (segment,) = segments(directory)
    body = segment.read_bytes()
    starts = [HEADER_SIZE]
    for event in sent:
        starts.append(starts[-1] + len(frame(event)))
    assert starts[-1] == len(body)
    # Garble a20 (the 41st frame), then cut the segment after b29 (a30 onwards lost).
    garbled = starts[40]
    body = body[:garbled + 12] + b"\xff" * 8 + body[garbled + 20:starts[60]]
    segment.write_bytes(body)
    recovery = DiskQueue(directory, 16 * MiB).open()
    first, second = recovery.damage
    assert [(r.source_key, r.start, r.stop, r.lines) for r in first.ranges] == [("a", 2000, 2100, 1)]
    # The cut: a30 to a39 and b30 to b39, shared as the records before it were.
    assert sorted((r.source_key, r.start, r.stop, r.lines) for r in second.ranges) == [("a", 3000, None, 10),
                                                                                        ("b", 3000, None, 10)]

    log_file = tmp_path / "a.log"
    log_file.write_text("x")
    here = os.stat(log_file)
    entries = {"a": SimpleNamespace(path=str(log_file), dev=here.st_dev, inode=here.st_ino, offset=0, gone=False),
               "b": SimpleNamespace(path=str(tmp_path / "b.log"), dev=1, inode=2, offset=0, gone=False)}
    spool_log.clear()
    assert explain_damage(recovery, entries.get) == 10 * 100  # b: gone; a: read again
    said = sorted(r.getMessage() for r in spool_log if r.getMessage().startswith("spool damage:"))
    assert said[0].startswith(f"spool damage: lost: {tmp_path / 'b.log'} offsets 3000 to about 4000 (the end of "
                              "what was spooled), about 10 lines")
    assert said[1].startswith(f"spool damage: re-read from {log_file} at 2000;")  # (where the run of a ends)
    assert said[2].startswith(f"spool damage: re-read from {log_file} at 2000;")
    entries["a"] = SimpleNamespace(**{**vars(entries["a"]), "gone": True, "offset": 2100})
    spool_log.clear()
    explain_damage(recovery, entries.get)
    assert "delivered before" in spool_log[0].getMessage()  # a committed past the garbled line: nothing lost


def _two_files_damaged_across(tmp_path: Path, b_first: int) -> tuple[Path, list[Event], list[int]]:
    """A spool of 40 lines of a (100 bytes each, large frames) then 40 of b
    (20 bytes each from offset ``b_first``, small frames); a36 to b5 (the
    tail of a, the head of b) overwritten."""
    directory = tmp_path / "spool"
    queue = DiskQueue(directory, 16 * MiB)
    queue.open()
    sent = ([Event("a", i * 100, i * 100 + 100, f"a{i:03d}", b"d" * 300) for i in range(40)]
            + [Event("b", b_first + i * 20, b_first + i * 20 + 20, f"b{i:03d}", b"e" * 40) for i in range(40)])
    assert queue.append(sent)
    queue.close()
    (segment,) = segments(directory)
    body = bytearray(segment.read_bytes())
    starts = [HEADER_SIZE]
    for event in sent:
        starts.append(starts[-1] + len(frame(event)))
    assert starts[-1] == len(body)
    body[starts[36]:starts[46]] = b"\xff" * (starts[46] - starts[36])
    segment.write_bytes(bytes(body))
    return directory, sent, starts


def _gone(tmp_path: Path, key: str, offset: int = 0):
    from types import SimpleNamespace

    return SimpleNamespace(path=str(tmp_path / f"{key}.log"), dev=1, inode=2, offset=offset, gone=True)


def test_damage_across_two_files_counts_each_record_once(tmp_path: Path, spool_log) -> None:
    """Audit 12: a damaged region holding the tail of one file and the head of
    the next was counted whole for both: lost_bytes 1,429 for 576 lost, and the
    "to about" offset extrapolated from that."""
    from agent.spool.damage import explain_damage

    directory, _, starts = _two_files_damaged_across(tmp_path, 0)
    recovery = DiskQueue(directory, 16 * MiB).open()
    (damage,) = recovery.damage
    assert damage.bytes == starts[46] - starts[36]
    assert sorted((r.source_key, r.start, r.stop, r.lines) for r in damage.ranges) == [
        ("a", 3600, None, 4), ("b", None, 120, 6)]
    entries = {"a": _gone(tmp_path, "a"), "b": _gone(tmp_path, "b")}
    spool_log.clear()
    assert explain_damage(recovery, entries.get) == 4 * 100 + 6 * 20  # (not 9 lines of a: 900 + 120)
    said = sorted(r.getMessage() for r in spool_log if r.getMessage().startswith("spool damage:"))
    assert said[0].startswith(f"spool damage: lost: {tmp_path / 'a.log'} offsets 3600 to about 4000 (the end of "
                              "what was spooled), about 4 lines")
    assert said[1].startswith(f"spool damage: lost: {tmp_path / 'b.log'} offsets 0 to 120, about 6 lines")


def test_damage_across_two_files_whose_split_cannot_be_told_is_not_counted_for_the_tail(
        tmp_path: Path, spool_log) -> None:
    # b's first intact line is at 10120: its lines before (up to 506 of them) could have filled the region,
    # so how many of a's the region held cannot be told: "none to about N", not counted, never above.
    from agent.spool.damage import explain_damage

    directory, _, _ = _two_files_damaged_across(tmp_path, 10000)
    recovery = DiskQueue(directory, 16 * MiB).open()
    (damage,) = recovery.damage
    ranges = {r.source_key: r for r in damage.ranges}
    assert (ranges["a"].lines, ranges["b"].stop) == (0, 10120)
    assert ranges["a"].most is not None and ranges["a"].most >= 4
    entries = {"a": _gone(tmp_path, "a"), "b": _gone(tmp_path, "b", offset=10000)}
    spool_log.clear()
    assert explain_damage(recovery, entries.get) == 6 * 20  # b's, from its committed offset; a's: not counted
    said = sorted(r.getMessage() for r in spool_log if r.getMessage().startswith("spool damage:"))
    assert said[0].startswith(f"spool damage: lost: {tmp_path / 'a.log'} lines from offset 3600, how many cannot "
                              f"be told: none to about {ranges['a'].most} ")
    assert said[1].startswith(f"spool damage: lost: {tmp_path / 'b.log'} offsets 10000 to 10120, about 6 lines")
