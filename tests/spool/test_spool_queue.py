"""DiskQueue on real files: round trip, order, waiting, space, deletion, acks
across restarts, pending_by_source, file modes, gauges."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.errors import StateError
from agent.events import Event
from agent.spool import DiskQueue, RefRun, SpooledEvent
from agent.spool.frames import HEADER_SIZE
from agent.spool.segment import Segment
from small_disk import small_disk

MiB = 1024 * 1024


def events(n: int, start: int = 0, key: str = "src", size: int = 100, target: str | None = None) -> list[Event]:
    return [Event(key, i * 10, i * 10 + 10, f"{key}-{i}", f"{i:08d}".encode() * (size // 8), target)
            for i in range(start, start + n)]


def seg_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".seg"))


def disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.name.endswith(".seg"))


def opened(directory: Path, **kwargs) -> DiskQueue:
    kwargs.setdefault("max_bytes", 16 * MiB)
    queue = DiskQueue(directory, **kwargs)
    queue.open()
    return queue


def drain(queue: DiskQueue) -> list[SpooledEvent]:
    out: list[SpooledEvent] = []
    while True:
        got = queue.take(1000, 1 << 40, 0).records()
        if not got:
            return out
        out.extend(got)


@pytest.fixture(params=[4 * MiB, 0], ids=["cache", "disk"])
def cache_bytes(request: pytest.FixtureRequest) -> int:
    return request.param


def test_round_trip_keeps_every_field_and_the_order(tmp_path: Path, cache_bytes: int) -> None:
    queue = opened(tmp_path / "spool", cache_bytes=cache_bytes)
    sent = events(50) + events(50, start=50, key="other", target="logs-x")
    assert queue.append(sent[:30])
    assert queue.append(sent[30:])
    assert queue.pending() == 100
    got = queue.take(40, 1 << 30, 0).records() + queue.take(1000, 1 << 30, 0).records()
    assert [s.event for s in got] == sent
    assert queue.take(10, 1 << 30, 0).records() == []
    queue.ack(s.ref for s in got)
    assert queue.pending() == 0
    assert queue.oldest_unacked_age() is None
    queue.close()


def test_the_spool_carries_every_event_field() -> None:
    # If Event grows a field, the spool format must grow with it (frames.py).
    names = list(Event._fields)
    assert names == ["source_key", "offset", "end", "doc_id", "data", "target"]


def test_take_respects_max_events_and_max_bytes(tmp_path: Path, cache_bytes: int) -> None:
    queue = opened(tmp_path / "spool", cache_bytes=cache_bytes)
    queue.append(events(10, size=100))
    assert len(queue.take(3, 1 << 30, 0).records()) == 3
    assert len(queue.take(100, 250, 0).records()) == 3  # stops once 250 data bytes are reached
    assert len(queue.take(100, 1, 0).records()) == 1  # the first record always comes
    assert len(queue.take(100, 1 << 30, 0).records()) == 3
    queue.close()


def test_take_hands_out_runs_that_skip_records_acknowledged_before(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    queue = opened(directory)
    sent = events(10)
    queue.append(sent)
    got = queue.take(100, 1 << 30, 0).records()
    queue.ack(got[i].ref for i in (2, 3, 7))  # one by one, as a partial failure would
    queue.close()
    again = opened(directory)
    taken = again.take(100, 1 << 30, 0)
    assert taken.events == [sent[i] for i in (0, 1, 4, 5, 6, 8, 9)]
    assert [(run.first, list(run.positions)) for run in taken.refs] == [
        (0, [got[0].ref.positions[0], got[1].ref.positions[0]]),
        (4, [got[i].ref.positions[0] for i in (4, 5, 6)]),
        (8, [got[i].ref.positions[0] for i in (8, 9)])]
    assert taken.nbytes == sum(len(event.data) for event in taken.events)
    again.ack(taken.refs)
    assert again.pending() == 0
    again.close()


def test_acking_a_run_counts_only_records_not_acknowledged_yet(tmp_path: Path, cache_bytes: int) -> None:
    queue = opened(tmp_path / "spool", cache_bytes=cache_bytes)
    queue.append(events(6))
    taken = queue.take(100, 1 << 30, 0)
    assert len(taken.refs) == 1  # consecutive records: one run
    queue.ack([taken.records()[4].ref])
    assert queue.pending() == 5
    queue.ack(taken.refs)
    assert queue.pending() == 0
    queue.ack(taken.refs)  # a repeat changes nothing
    assert queue.pending() == 0
    queue.close()


def test_segment_mark_counts_only_records_not_acknowledged_yet(tmp_path: Path) -> None:
    segment = Segment(tmp_path, 1, 0.0)
    segment.count, segment.acked = 5, bytearray(5)
    newly: list[int] = []
    assert segment.mark(1, [10, 20], newly) == 2 and newly == [10, 20]
    newly = []
    assert segment.mark(0, [0, 10, 20, 30], newly) == 2 and newly == [0, 30]  # 1 and 2 were already
    assert segment.mark(4, [40, 50], []) == 1  # ordinal 5 is not in the segment
    assert segment.n_acked == 5 and segment.fully_acked


def test_wake_makes_a_waiting_take_return_at_once(tmp_path: Path) -> None:
    queue = opened(tmp_path / "spool")
    waker = threading.Timer(0.05, queue.wake)
    waker.start()
    started = time.monotonic()
    assert not queue.take(10, 1 << 20, 30.0)
    waker.join()
    assert time.monotonic() - started < 10.0
    queue.close()


def test_take_times_out_with_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    queue = opened(tmp_path / "spool", clock=clock)
    before = clock.monotonic()
    assert queue.take(10, 1000, 5.0).records() == []
    assert clock.monotonic() - before == pytest.approx(5.0)
    queue.close()


def test_take_waits_for_an_append_from_another_thread(tmp_path: Path) -> None:
    queue = opened(tmp_path / "spool")
    writer = threading.Timer(0.05, lambda: queue.append(events(3)))
    writer.start()
    started = time.monotonic()
    got = queue.take(10, 1 << 20, 10.0).records()
    writer.join()
    assert [s.event.doc_id for s in got] == ["src-0", "src-1", "src-2"][:len(got)]
    assert got and time.monotonic() - started < 5.0
    queue.close()


def test_append_blocks_while_full_until_an_ack_frees_a_segment(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    queue = opened(directory, max_bytes=64 * 1024, segment_bytes=8 * 1024)
    written = 0
    while queue.append(events(8, start=written), timeout=0):
        written += 8
    assert queue.used_bytes() <= queue.max_bytes()
    blocked_batch = events(8, start=written)
    used = queue.used_bytes()
    assert queue.append(blocked_batch, timeout=0.05) is False
    assert queue.used_bytes() == used == disk_bytes(directory)  # nothing written

    result: list[bool] = []
    appender = threading.Thread(target=lambda: result.append(queue.append(blocked_batch, timeout=10)))
    appender.start()
    time.sleep(0.05)
    assert result == []
    got = queue.take(1000, 1 << 30, 0).records()
    oldest = [s.ref for s in got if s.ref.segment == got[0].ref.segment]
    queue.ack(oldest[1:])
    time.sleep(0.05)
    assert result == []  # the oldest segment still holds one unacknowledged record
    queue.ack(oldest[:1])
    appender.join(10)
    assert result == [True]
    assert queue.used_bytes() == disk_bytes(directory) <= queue.max_bytes()
    queue.close()


def test_a_batch_larger_than_the_spool_is_an_error(tmp_path: Path) -> None:
    queue = opened(tmp_path / "spool", max_bytes=64 * 1024)
    with pytest.raises(ValueError, match="max_bytes=65536"):
        queue.append(events(1, size=70 * 1024))
    assert queue.used_bytes() == 0
    queue.close()


def test_a_segment_is_deleted_only_when_every_record_is_acked(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    queue = opened(directory, segment_bytes=4096, max_bytes=MiB)
    for batch in range(6):
        queue.append(events(10, start=batch * 10))  # ~1.3 KB per batch: 3 batches a segment
    assert len(seg_files(directory)) == 2
    got = queue.take(1000, 1 << 30, 0).records()
    by_segment: dict[int, list[RefRun]] = {}
    for s in got:
        by_segment.setdefault(s.ref.segment, []).append(s.ref)
    first, second = sorted(by_segment)
    queue.ack(reversed(by_segment[first][1:]))  # out of order, all but one
    assert len(seg_files(directory)) == 2
    queue.ack(by_segment[first][:1])
    assert len(seg_files(directory)) == 1
    assert not (directory / f"{first:016d}.ack").exists()
    # The segment being written stays even when fully acknowledged...
    queue.ack(by_segment[second])
    assert len(seg_files(directory)) == 1
    assert queue.used_bytes() == disk_bytes(directory)
    # ...until the next segment starts.
    queue.append(events(30, start=100))
    assert f"{second:016d}.seg" not in seg_files(directory)
    queue.close()


def test_a_full_spool_whose_active_segment_is_acked_makes_room(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    queue = opened(directory, max_bytes=64 * 1024)  # segments of 16 KiB (a quarter)
    written = 0
    while queue.append(events(8, start=written), timeout=0):
        written += 8
    got = queue.take(10000, 1 << 30, 0).records()
    active = max(s.ref.segment for s in got)
    queue.ack(s.ref for s in got if s.ref.segment == active)
    assert f"{active:016d}.seg" in seg_files(directory)  # still being written
    assert queue.append(events(8, start=written), timeout=0)
    assert f"{active:016d}.seg" not in seg_files(directory)
    assert queue.used_bytes() == disk_bytes(directory) <= queue.max_bytes()
    queue.close()


def test_a_delivered_segment_being_written_does_not_make_the_spool_nearly_full(tmp_path: Path) -> None:
    # One group can take most of a small spool (a segment of its own). Once it is
    # all delivered only the next append frees it; counted as used, it kept the
    # reader paused, and so no append ever came (the agent waited for ever).
    queue = opened(tmp_path / "spool", max_bytes=64 * 1024)
    assert queue.append(events(60, size=1000), timeout=0)
    assert queue.nearly_full() and queue.used_bytes() > 0.9 * queue.max_bytes()
    got = queue.take(10000, 1 << 30, 0).records()
    queue.ack(s.ref for s in got[:-1])
    assert queue.nearly_full(), "one record of it still waits for the output"
    queue.ack([got[-1].ref])
    assert not queue.nearly_full()
    assert queue.append(events(60, start=60, size=1000), timeout=0)
    assert queue.used_bytes() == disk_bytes(tmp_path / "spool") <= queue.max_bytes()
    queue.close()


def test_acks_survive_a_restart_and_only_unacked_records_come_back(tmp_path: Path, cache_bytes: int) -> None:
    directory = tmp_path / "spool"
    queue = opened(directory, segment_bytes=4096, cache_bytes=cache_bytes)
    sent = events(60)
    for i in range(0, 60, 10):
        queue.append(sent[i:i + 10])
    got = queue.take(1000, 1 << 30, 0).records()
    acked = {s.event.doc_id for s in got if int(s.event.doc_id.split("-")[1]) % 3 != 1}
    queue.ack(s.ref for s in reversed(got) if s.event.doc_id in acked)
    queue.close()
    queue.close()  # idempotent

    again = DiskQueue(directory, 16 * MiB, segment_bytes=4096, cache_bytes=cache_bytes)
    recovery = again.open()
    expected = [e for e in sent if e.doc_id not in acked]
    assert recovery.records == len(expected) == again.pending()
    assert recovery.damaged_frames == 0
    assert [s.event for s in drain(again)] == expected
    again.close()


def test_pending_by_source_is_where_reading_may_resume(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    queue = opened(directory)
    a = [Event("a", o, o + 7, f"a{o}", b"x") for o in range(0, 70, 7)]
    b = [Event("b", o, o + 5, f"b{o}", b"y") for o in range(100, 150, 5)]
    queue.append(a[:5] + b[:5])
    queue.append(b[5:] + a[5:])
    got = queue.take(1000, 1 << 30, 0).records()
    queue.ack(s.ref for s in got if s.event.source_key == "a")  # all of a delivered, b pending
    queue.close()
    recovery = DiskQueue(directory, 16 * MiB).open()
    # a's records are acknowledged but still in the spool: delivered, so the
    # reader resumes after them too.
    assert recovery.pending_by_source == {"a": 70, "b": 150}
    assert recovery.records == 10


def test_pending_by_source_stops_at_a_gap(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    queue = opened(directory)
    queue.append([Event("a", 0, 10, "a0", b"x"), Event("a", 10, 20, "a1", b"x"),
                  Event("a", 30, 40, "a3", b"x")])
    queue.close()
    assert DiskQueue(directory, 16 * MiB).open().pending_by_source == {"a": 20}


def test_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "spool"
    queue = opened(directory, segment_bytes=4096)
    for i in range(4):
        queue.append(events(10, start=i * 10))
    queue.ack([s.ref for s in queue.take(5, 1 << 30, 0).records()])
    queue.close()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    names = sorted(p.name for p in directory.iterdir())
    assert any(n.endswith(".seg") for n in names) and any(n.endswith(".ack") for n in names)
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_used_bytes_counts_segment_files(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    queue = opened(directory, segment_bytes=4096)
    assert queue.used_bytes() == 0
    queue.append(events(5))
    assert queue.used_bytes() == disk_bytes(directory) > HEADER_SIZE
    assert queue.max_bytes() == 16 * MiB
    queue.close()


def test_oldest_unacked_age_follows_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    queue = opened(tmp_path / "spool", clock=clock)
    assert queue.oldest_unacked_age() is None
    queue.append(events(2))
    clock.advance(10)
    queue.append(events(2, start=2))
    clock.advance(5)
    assert queue.oldest_unacked_age() == pytest.approx(15)
    got = queue.take(10, 1 << 30, 0).records()
    queue.ack([got[0].ref, got[1].ref])
    assert queue.oldest_unacked_age() == pytest.approx(5)
    queue.ack([got[2].ref, got[3].ref, got[3].ref])  # a repeated ref is ignored
    assert queue.oldest_unacked_age() is None
    assert queue.pending() == 0
    queue.close()


def test_close_wakes_a_blocked_append_and_later_calls_are_harmless(tmp_path: Path) -> None:
    queue = opened(tmp_path / "spool", max_bytes=64 * 1024)
    while queue.append(events(8), timeout=0):
        pass
    result: list[bool] = []
    appender = threading.Thread(target=lambda: result.append(queue.append(events(8))))
    appender.start()
    time.sleep(0.05)
    queue.close()
    appender.join(10)
    assert result == [False]
    assert queue.take(10, 100, 0).records() == []
    assert queue.append(events(1)) is False
    queue.ack([RefRun(1, 0, (HEADER_SIZE,))])


def test_use_before_open_is_an_error(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path / "spool", 16 * MiB)
    with pytest.raises(StateError):
        queue.append(events(1))
    with pytest.raises(ValueError, match="fsync"):
        DiskQueue(tmp_path / "spool", 16 * MiB, fsync="sometimes")


def test_an_unusable_directory_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateError, match="not usable"):
        DiskQueue(tmp_path / "file" / "spool", 16 * MiB).open()


@pytest.mark.parametrize("policy", ["batch", "interval", "never"])
def test_every_fsync_policy_round_trips(tmp_path: Path, policy: str) -> None:
    directory = tmp_path / "spool"
    queue = opened(directory, fsync=policy, fsync_interval=0.01, segment_bytes=4096)
    sent = events(40)
    for i in range(0, 40, 8):
        queue.append(sent[i:i + 8])
    time.sleep(0.05)  # let the "interval" thread run at least once
    got = queue.take(1000, 1 << 30, 0).records()
    queue.ack(s.ref for s in got[:20])
    queue.close()
    again = DiskQueue(directory, 16 * MiB, fsync=policy)
    again.open()
    assert [s.event for s in drain(again)] == sent[20:]
    again.close()


def test_a_slow_consumer_reads_back_from_disk_then_from_memory(tmp_path: Path) -> None:
    # A cache of ~2 batches: the consumer falls behind, reads the disk, catches up.
    queue = opened(tmp_path / "spool", cache_bytes=3000, segment_bytes=4096)
    sent = events(200)
    got: list[SpooledEvent] = []
    for i in range(0, 200, 10):
        queue.append(sent[i:i + 10])
        if i % 30 == 0:
            got.extend(queue.take(7, 1 << 30, 0).records())
    got.extend(drain(queue))
    assert [s.event for s in got] == sent
    queue.ack(s.ref for s in got)
    assert queue.pending() == 0
    queue.close()


def test_concurrent_writer_consumer_and_ackers(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    queue = opened(directory, max_bytes=128 * 1024, segment_bytes=8 * 1024, cache_bytes=4096)
    sent = events(3000, size=40)
    received: list[Event] = []
    over_limit: list[int] = []

    def writer() -> None:
        for i in range(0, len(sent), 25):
            assert queue.append(sent[i:i + 25], timeout=30)
            if queue.used_bytes() > queue.max_bytes():
                over_limit.append(queue.used_bytes())

    def acker(refs: list[RefRun]) -> None:
        queue.ack(refs)

    thread = threading.Thread(target=writer)
    thread.start()
    ackers: list[threading.Thread] = []
    while len(received) < len(sent):
        taken = queue.take(64, 1 << 30, 5.0)
        assert taken, "the consumer starved"
        received.extend(taken.events)
        refs = taken.refs  # whole runs, as the batcher acknowledges them
        for part in (refs[1::2], refs[::2]):  # two workers, any order
            ackers.append(threading.Thread(target=acker, args=(part,)))
            ackers[-1].start()
    thread.join()
    for a in ackers:
        a.join()
    assert received == sent
    assert over_limit == []
    assert queue.pending() == 0
    queue.close()
    assert len(seg_files(directory)) <= 1


def test_stale_files_are_cleaned_and_foreign_ones_ignored(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    (directory / "0000000000000009.ack").write_bytes(b"orphan")
    (directory / ".0000000000000003.ack.tmp").write_bytes(b"temp")
    (directory / "notes.txt").write_text("hello")
    queue = DiskQueue(directory, 16 * MiB)
    recovery = queue.open()
    assert recovery.segments == 0
    queue.append(events(1))
    queue.close()
    names = sorted(os.listdir(directory))
    # A new segment gets an id above every file seen, even an orphan ack file.
    assert names == ["0000000000000010.ack", "0000000000000010.seg", "notes.txt"]


class _DiskFills:
    """``write_all`` that, while ``full`` is set, writes part of the data and
    then fails as a full disk does (ENOSPC or EDQUOT)."""

    def __init__(self, real, code: int) -> None:
        self.real, self.code, self.full, self.failures = real, code, False, 0

    def __call__(self, fd: int, data) -> None:
        if self.full:
            self.failures += 1
            os.write(fd, bytes(data)[: max(1, len(data) // 2)])
            raise OSError(self.code, os.strerror(self.code))
        self.real(fd, data)


@pytest.mark.parametrize("code", ["ENOSPC", "EDQUOT"])
def test_a_full_disk_makes_append_wait_and_loses_nothing(tmp_path: Path, monkeypatch, code: str) -> None:
    import errno as errno_module

    import agent.spool.queue as queue_module
    import agent.spool.segment as segment_module

    fills = _DiskFills(queue_module.write_all, getattr(errno_module, code))
    monkeypatch.setattr(queue_module, "write_all", fills)
    monkeypatch.setattr(segment_module, "write_all", fills)  # a new segment's header, seals
    queue = opened(tmp_path / "spool", segment_bytes=64 * 1024, max_bytes=16 * MiB)
    sent = events(30)
    assert queue.append(sent[:10])
    fills.full = True
    assert queue.append(sent[10:20], timeout=0.3) is False  # waits, then gives up: nothing written
    assert fills.failures >= 1
    writer = threading.Thread(target=queue.append, args=(sent[10:20],))
    writer.start()
    time.sleep(0.3)
    assert writer.is_alive()  # still waiting for space, not dead
    fills.full = False
    writer.join(10)
    assert not writer.is_alive()
    assert queue.append(sent[20:])
    assert [r.event for r in drain(queue)] == sent
    queue.close()
    reopened = DiskQueue(tmp_path / "spool", 16 * MiB)
    assert reopened.open().damaged_frames == 0  # the partial writes were cut back
    assert [r.event for r in drain(reopened)] == sent
    reopened.close()


def test_a_full_disk_when_a_segment_must_roll(tmp_path: Path, monkeypatch) -> None:
    import errno as errno_module

    import agent.spool.segment as segment_module

    fills = _DiskFills(segment_module.write_all, errno_module.ENOSPC)
    monkeypatch.setattr(segment_module, "write_all", fills)  # the new segment's header fails
    queue = opened(tmp_path / "spool", segment_bytes=4096, max_bytes=16 * MiB)
    sent = events(20, size=4000)  # every batch of 10 takes a segment of its own
    assert queue.append(sent[:10])
    fills.full = True
    assert queue.append(sent[10:], timeout=0.3) is False
    assert fills.failures >= 1
    fills.full = False
    assert queue.append(sent[10:])
    assert len(seg_files(tmp_path / "spool")) == 2
    assert [r.event for r in drain(queue)] == sent
    queue.close()


def test_other_write_errors_still_raise(tmp_path: Path, monkeypatch) -> None:
    import errno as errno_module

    import agent.spool.queue as queue_module

    fills = _DiskFills(queue_module.write_all, errno_module.EIO)
    monkeypatch.setattr(queue_module, "write_all", fills)
    queue = opened(tmp_path / "spool")
    fills.full = True
    with pytest.raises(StateError, match="cannot write spool segment"):
        queue.append(events(3), timeout=0.3)
    queue.close()


def test_a_full_disk_frees_the_acknowledged_segment_being_written(tmp_path: Path, monkeypatch) -> None:
    # Found by audit 4: a spool that filled the disk with its own delivered
    # records stalled for good (2,341 of 20,000 lines), as the active segment
    # was freed only when max_bytes, not the disk, ran out.
    directory = tmp_path / "spool"
    directory.mkdir()
    disk = small_disk(monkeypatch, directory, capacity=20_000)
    queue = opened(directory, segment_bytes=1 * MiB, max_bytes=16 * MiB)
    sent, delivered = events(200, size=400), []
    for start in range(0, 200, 10):
        assert queue.append(sent[start:start + 10], timeout=2), f"stalled at event {start}"
        records = queue.take(1000, 1 << 40, 0).records()
        delivered += [r.event for r in records]
        queue.ack(r.ref for r in records)
    assert delivered == sent and disk.failures >= 1  # (the disk did fill)
    queue.close()


def test_a_read_only_file_system_makes_append_wait_and_deletes_come_later(tmp_path: Path, monkeypatch) -> None:
    # Audit 5: a state directory the kernel turned read-only (EROFS, after a disk
    # error) stopped the agent (exit 1) when the spool was in it, the default.
    import errno as errno_module

    import agent.spool.ack as ack_module
    import agent.spool.queue as queue_module
    import agent.spool.segment as segment_module

    fills = _DiskFills(queue_module.write_all, errno_module.EROFS)
    monkeypatch.setattr(queue_module, "write_all", fills)
    monkeypatch.setattr(segment_module, "write_all", fills)
    real_truncate, real_delete = os.ftruncate, ack_module.delete_files

    def refused(real):
        def call(*args):
            if fills.full:
                raise OSError(errno_module.EROFS, os.strerror(errno_module.EROFS))
            return real(*args)
        return call

    monkeypatch.setattr(os, "ftruncate", refused(real_truncate))  # (the cut back is refused too)
    monkeypatch.setattr(ack_module, "delete_files", refused(real_delete))
    directory = tmp_path / "spool"
    queue = opened(directory, segment_bytes=4096, max_bytes=16 * MiB)
    sent = events(30, size=400)
    assert queue.append(sent[:10]) and queue.append(sent[10:20])  # two segments, the first sealed
    first = queue.take(10, 1 << 40, 0).records()
    fills.full = True
    queue.ack(r.ref for r in first)  # delivered: its segment cannot be deleted now
    assert len(seg_files(directory)) == 2 and queue.used_bytes() > 0
    assert queue.append(sent[20:], timeout=0.3) is False  # waits, no exception
    writer = threading.Thread(target=queue.append, args=(sent[20:],))
    writer.start()
    time.sleep(0.3)
    assert writer.is_alive()
    fills.full = False
    writer.join(10)
    assert not writer.is_alive()
    rest = drain(queue)
    assert [r.event for r in first] + [r.event for r in rest] == sent
    queue.ack(r.ref for r in rest[:10])  # (the second segment: sealed, now fully delivered)
    assert seg_files(directory) == ["0000000000000003.seg"]  # the first deleted at last, with it
    queue.close()


def test_close_on_a_full_disk_warns_and_loses_nothing(tmp_path: Path, monkeypatch, caplog) -> None:
    # Audit 6: a daemon stopped on a full spool disk, after delivering everything,
    # exited 1 ("cannot sync spool ... at close: No space left on device"): the
    # seal of the last segment could not be written.
    import errno as errno_module

    import agent.spool.queue as queue_module
    import agent.spool.segment as segment_module

    import agent.spool.ack as ack_module

    fills = _DiskFills(queue_module.write_all, errno_module.ENOSPC)
    for module in (queue_module, segment_module, ack_module):  # (ack blocks and the seal: ack.py)
        monkeypatch.setattr(module, "write_all", fills)
    directory = tmp_path / "spool"
    queue = opened(directory, max_bytes=16 * MiB)
    sent = events(10)
    assert queue.append(sent)
    taken = queue.take(5, 1 << 40, 0).records()
    fills.full = True
    with pytest.raises(StateError, match="cannot record acknowledgements"):
        queue.ack(r.ref for r in taken)  # (in memory; the batcher logs that they may come again)
    with caplog.at_level(logging.WARNING, logger="modelscribe"):
        queue.close()  # no exception
    assert any("could not seal or sync at close" in r.getMessage() for r in caplog.records)
    fills.full = False
    reopened = DiskQueue(directory, 16 * MiB)
    reopened.open()
    assert [r.event for r in drain(reopened)][-5:] == sent[5:]  # nothing lost (the acked may come again)
    reopened.close()


def test_a_spool_that_cannot_be_written_at_start_is_a_configuration_error(tmp_path: Path, monkeypatch) -> None:
    # Audit 7: started while its directory was still immutable, the agent exited 1
    # ("is not usable": a stage died), and the unit restarted it in a loop. Exit 2
    # (not restarted), naming the directory and what to do; nothing is lost.
    import errno

    import agent.spool.recovery as recovery_module
    from agent.errors import ConfigError

    directory = tmp_path / "spool"
    killed = opened(directory)
    assert killed.append(events(5))  # its segment is left unsealed, as by a kill
    real_open_ack_file = recovery_module.open_ack_file

    def immutable(segment, *args):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(segment.ack_path))

    monkeypatch.setattr(recovery_module, "open_ack_file", immutable)
    with pytest.raises(ConfigError, match=r"spool directory .* cannot be written: Operation not permitted "
                                          r"\(.*\.ack\); make it writable .*chattr -i"):
        DiskQueue(directory, 16 * MiB).open()
    monkeypatch.setattr(recovery_module, "open_ack_file", real_open_ack_file)
    again = opened(directory)
    assert [s.event for s in drain(again)] == events(5)
    again.close()


def test_on_a_full_disk_the_delivered_segment_being_written_is_deleted_without_a_next_append(
        tmp_path: Path, monkeypatch) -> None:
    # An agent with nothing more to write kept a segment of delivered records on a
    # full disk (the model server's own logs may need the space) until the next line.
    directory = tmp_path / "spool"
    directory.mkdir()
    disk = small_disk(monkeypatch, directory, capacity=20_000)
    queue = opened(directory)
    sent = []
    while queue.append(batch := events(10, start=len(sent), size=400), timeout=0.2):
        sent += batch
    assert queue.disk_full and sent and seg_files(directory)
    records = queue.take(10000, 1 << 40, 0).records()
    assert [r.event for r in records] == sent
    queue.ack(r.ref for r in records)
    assert seg_files(directory) == [] and queue.used_bytes() == 0 and disk.free() > 15_000
    assert queue.append(events(10, start=len(sent), size=400), timeout=0)  # a new segment for the next line
    assert [r.event for r in drain(queue)] == events(10, start=len(sent), size=400)
    queue.close()


def test_an_acknowledgement_the_full_disk_refuses_frees_the_delivered_segment(tmp_path: Path, monkeypatch) -> None:
    # The disk filled up (by others) after the last append: the ack block cannot be
    # written. The records are delivered, so their segment goes, space comes back.
    directory = tmp_path / "spool"
    queue = opened(directory)
    sent = events(10, size=400)
    assert queue.append(sent)
    records = queue.take(100, 1 << 40, 0).records()
    assert not queue.disk_full
    small_disk(monkeypatch, directory, capacity=sum(p.stat().st_size for p in directory.iterdir() if p.is_file()))
    with pytest.raises(StateError, match="cannot record acknowledgements"):
        queue.ack(r.ref for r in records)
    assert queue.disk_full and seg_files(directory) == [] and queue.used_bytes() == 0
    queue.close()


def test_reclaim_frees_the_delivered_segment_being_written_at_once(tmp_path: Path) -> None:
    # Audit 11: health's journal and the registry failed with ENOSPC on the state
    # disk while the spool kept a 1.27 MB segment of delivered records, which it
    # freed only when its own write failed. ``reclaim`` is how they tell it.
    directory = tmp_path / "spool"
    queue = opened(directory)
    assert queue.reclaim() is False  # nothing written: nothing to free
    sent = events(10, size=400)
    assert queue.append(sent)
    records = queue.take(100, 1 << 40, 0).records()
    queue.ack(r.ref for r in records)
    assert seg_files(directory) == ["0000000000000001.seg"]  # kept: it is being written
    assert queue.reclaim() is True
    assert seg_files(directory) == [] and queue.used_bytes() == 0 and not queue.disk_full
    more = events(5, start=10, size=400)
    assert queue.append(more, timeout=0)  # the next line starts a new segment
    assert [r.event for r in drain(queue)] == more
    queue.close()


def test_reclaim_keeps_undelivered_records_and_frees_them_once_delivered(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    queue = opened(directory)
    assert queue.append(events(10, size=400))
    records = queue.take(100, 1 << 40, 0).records()
    queue.ack(r.ref for r in records[:5])
    assert queue.reclaim() is False  # five records are not delivered: never deleted
    assert seg_files(directory) == ["0000000000000001.seg"] and queue.pending() == 5
    queue.ack(r.ref for r in records[5:])  # sealed by reclaim: it goes with its last ack
    assert seg_files(directory) == [] and queue.used_bytes() == 0
    queue.close()
    reopened = opened(directory)
    assert drain(reopened) == []  # nothing lost, nothing sent again
    reopened.close()


def test_a_spool_file_that_is_a_directory_is_a_configuration_error(tmp_path: Path) -> None:
    # Audit 11: "spool directory ... is not usable: [Errno 21] Is a directory: '...ack'",
    # exit 1, and the unit restarted the agent every 5 s for ever. Exit 2, naming the
    # file and what to do.
    from agent.errors import ConfigError

    for name in ("0000000000000002.ack", "0000000000000002.seg"):
        directory = tmp_path / name / "spool"
        queue = opened(directory)
        assert queue.append(events(5))
        queue.close()
        if name.endswith(".seg"):
            (directory / "0000000000000001.ack").unlink()
            (directory / "0000000000000001.seg").unlink()
        (directory / name).mkdir()
        with pytest.raises(ConfigError, match=rf"spool directory {directory} is not usable: Is a directory "
                                              rf"\({directory / name}\).*move it out of the spool directory"):
            DiskQueue(directory, 16 * MiB).open()


def test_a_spool_file_this_user_may_not_read_is_a_configuration_error(tmp_path: Path, monkeypatch) -> None:
    # (Root-owned after a ``sudo modelscribe run``. The tests run as root, where
    # permissions do not refuse: the refusal is made where recovery opens the segment.)
    import builtins
    import errno

    import agent.spool.recovery as recovery_module
    from agent.errors import ConfigError

    directory = tmp_path / "spool"
    queue = opened(directory)
    assert queue.append(events(5))
    queue.close()
    segment = str(directory / "0000000000000001.seg")

    def refusing(path, *args, **kwargs):
        if str(path) == segment:
            raise PermissionError(errno.EACCES, "Permission denied", segment)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(recovery_module, "open", refusing, raising=False)
    with pytest.raises(ConfigError, match=rf"spool directory {directory} cannot be read or written: Permission "
                                          rf"denied \({segment}\); run the agent as the user that owns the state "
                                          r"directory, e.g. with runuser -u modelscribe"):
        DiskQueue(directory, 16 * MiB).open()
    monkeypatch.undo()
    again = opened(directory)
    assert [s.event for s in drain(again)] == events(5)  # nothing was moved or lost
    again.close()


def test_a_disk_that_stays_full_is_not_said_to_have_resumed(tmp_path: Path, monkeypatch, caplog) -> None:
    """Audit 12: on a nearly full state disk the spool could not free, a small
    write went through, "spool: writing resumed" was logged, the next write
    failed at once and writing stalled for 20 s in silence (the next warning
    was held back for a minute), with nothing in ``status`` either. Now the
    episode ends, and "writing resumed" is logged, only once writes have gone
    through for DISK_FULL_QUIET seconds; the status file is told it
    (``disk_full_episode``); a later episode is warned of again."""
    import errno as errno_module

    import agent.spool.queue as queue_module

    fills = _DiskFills(queue_module.write_all, errno_module.ENOSPC)
    monkeypatch.setattr(queue_module, "write_all", fills)
    clock = FakeClock()
    queue = opened(tmp_path / "spool", segment_bytes=64 * 1024, clock=clock)
    sent = events(40)

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("spool: ")]

    with caplog.at_level(logging.INFO, logger="modelscribe.spool"):
        assert queue.append(sent[:10])
        fills.full = True
        assert queue.append(sent[10:20], timeout=0) is False
        assert said() == ["spool: the disk is full; reading waits until space is freed (acknowledged records, or "
                          "space freed by others), nothing is lost"]
        fills.full = False
        clock.advance(1)
        assert queue.append(sent[10:15])  # a small write goes through...
        fills.full = True
        assert queue.append(sent[15:20], timeout=0) is False  # ... and the next fails at once
        clock.advance(1)
        assert len(said()) == 1, said()  # not "writing resumed": it has not
        assert queue.disk_full_episode() == {"for": 2.0, "error": "No space left on device", "writing": False}
        fills.full = False
        assert queue.append(sent[15:20])
        assert queue.disk_full_episode() == {"for": 2.0, "error": "No space left on device", "writing": True}
        clock.advance(queue_module.DISK_FULL_QUIET)  # writes have gone through since (and no write came)
        assert queue.disk_full_episode() is None
        assert said()[1:] == ["spool: writing resumed"]
        assert [r for r in caplog.records if r.getMessage() == "spool: writing resumed"][0].kv["full_for"] == 2.0
        fills.full = True
        clock.advance(10)  # a new episode, within the minute: warned of again
        assert queue.append(sent[20:30], timeout=0) is False
        assert said()[2:] == [said()[0]]
        fills.full = False
        assert queue.append(sent[20:40])
    assert [r.event for r in drain(queue)] == sent
    queue.close()
