"""The tailer on real files: appends, discovery, rotation, truncation, deletion, restart."""

from __future__ import annotations

import os
import threading
import time

import pytest

from agent.clock import FakeClock
from agent.events import TAG_PARTIAL
from agent.registry import Registry
from agent.sources import tailer as tailer_module
from tailkit import RecordingSink, age, append, make, tiles


def test_appends_are_read_in_order_with_offsets(tmp_path):
    log = tmp_path / "a.log"
    append(log, "one\ntwo\n")
    tailer, sink, registry = make(tmp_path)
    with tailer:
        tailer.run_once()
        append(log, "three\n")
        tailer.run_once()
        tailer.run_once()
    assert [(l.text, l.offset, l.end) for l in sink.lines] == [
        ("one", 0, 4), ("two", 4, 8), ("three", 8, 14)]
    assert len({l.source.key for l in sink.lines}) == 1
    assert sink.lines[0].source.path == str(log)
    assert sink.ticks, "run_once ticks the sink"
    entry = registry.get(sink.lines[0].source.key)
    assert entry is not None and entry.offset == 0 and entry.path == str(log)


def test_empty_file_has_no_identity_until_its_first_line(tmp_path):
    log = tmp_path / "a.log"
    log.touch()
    tailer, sink, registry = make(tmp_path)
    with tailer:
        tailer.run_once()
        assert tailer.open_files() == 1 and registry.entries() == []
        append(log, "first\n")
        tailer.run_once()
    assert sink.texts() == ["first"] and len(registry.entries()) == 1


def test_several_files_and_a_file_appearing_later(tmp_path):
    append(tmp_path / "a.log", "a1\n")
    append(tmp_path / "b.log", "b1\n")
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once()
        append(tmp_path / "c.log", "c1\n")
        append(tmp_path / "a.log", "a2\n")
        tailer.run_once()
        assert tailer.open_files() == 3
    assert sorted(sink.texts()) == ["a1", "a2", "b1", "c1"]
    assert len({l.source.key for l in sink.lines}) == 3


def test_new_file_found_by_the_periodic_scan(tmp_path):
    clock = FakeClock()
    append(tmp_path / "a.log", "a1\n")
    tailer, sink, _ = make(tmp_path, clock=clock, scan_interval=10.0)
    with tailer:
        tailer.poll()
        append(tmp_path / "b.log", "b1\n")
        clock.advance(5)
        tailer.poll()
        assert sink.texts() == ["a1"], "not scanned yet"
        clock.advance(5)
        tailer.poll()
    assert sink.texts() == ["a1", "b1"]


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_watchdog_wakes_the_loop_for_new_files_and_rotation(tmp_path):
    from agent.clock import SYSTEM_CLOCK
    append(tmp_path / "a.log", "a1\n")
    registry = Registry(tmp_path / "state")
    sink = RecordingSink()
    # A scan interval of an hour: only watchdog events can find b.log in time.
    tailer, _, _ = make(tmp_path, registry=registry, clock=SYSTEM_CLOCK, sink=sink,
                        use_watchdog=True, scan_interval=3600.0)
    stop = threading.Event()
    thread = threading.Thread(target=tailer.run, args=(stop,))
    thread.start()
    try:
        assert wait_for(lambda: sink.texts() == ["a1"])
        append(tmp_path / "b.log", "b1\n")
        assert wait_for(lambda: "b1" in sink.texts(), timeout=1.5)
        os.rename(tmp_path / "a.log", tmp_path / "a.log.1")
        append(tmp_path / "a.log", "new a1\n")
        assert wait_for(lambda: "new a1" in sink.texts(), timeout=1.5)
    finally:
        stop.set()
        started = time.monotonic()
        thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 1.0
    assert tailer.open_files() == 0
    assert sorted(sink.texts()) == ["a1", "b1", "new a1"]


def test_run_returns_promptly_and_ticks_while_idle(tmp_path):
    from agent.clock import SYSTEM_CLOCK
    append(tmp_path / "a.log", "a1\n")
    tailer, sink, _ = make(tmp_path, clock=SYSTEM_CLOCK)
    stop = threading.Event()
    thread = threading.Thread(target=tailer.run, args=(stop,))
    thread.start()
    assert wait_for(lambda: len(sink.ticks) >= 3)
    stop.set()
    started = time.monotonic()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 1.0
    assert tailer.open_files() == 0
    gaps = [b - a for a, b in zip(sink.ticks, sink.ticks[1:])]
    assert max(gaps) <= 0.5


def test_ticks_at_least_every_half_second_with_a_fake_clock(tmp_path):
    clock = FakeClock()
    append(tmp_path / "a.log", "a1\n")
    tailer, sink, _ = make(tmp_path, clock=clock)
    with tailer:
        for _ in range(40):
            clock.advance(tailer.poll())
    gaps = [b - a for a, b in zip(sink.ticks, sink.ticks[1:])]
    assert sink.ticks and max(gaps) <= 0.5


def test_idle_files_are_polled_with_backoff(tmp_path, monkeypatch):
    clock = FakeClock()
    append(tmp_path / "a.log", "a1\n")
    tailer, sink, _ = make(tmp_path, clock=clock, scan_interval=1000.0)
    real_fstat = os.fstat
    calls = []

    def counting_fstat(fd):
        calls.append(clock.monotonic())
        return real_fstat(fd)

    with tailer:
        tailer.poll()
        monkeypatch.setattr(tailer_module.os, "fstat", counting_fstat)
        for _ in range(200):
            clock.advance(0.1)
            tailer.poll()
        assert 8 <= len(calls) <= 14, calls  # 20 s idle: 0.25, 0.5, 1, 2, 2, ... not 80
        calls.clear()
        append(tmp_path / "a.log", "a2\n")
        for _ in range(30):
            clock.advance(0.1)
            tailer.poll()
    assert sink.texts() == ["a1", "a2"]


def test_excludes_and_recursive_globs(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    append(tmp_path / "top.log", "top\n")
    append(tmp_path / "sub" / "deeper" / "nested.log", "nested\n")
    append(tmp_path / "sub" / "skip.log", "skipped\n")
    append(tmp_path / "sub" / "app.txt", "not a log\n")
    tailer, sink, _ = make(tmp_path, pattern="**/*.log", excludes=("*/skip.log",))
    with tailer:
        tailer.run_once()
    assert sorted(sink.texts()) == ["nested", "top"]


@pytest.mark.parametrize("rotated_matches_glob", [True, False])
def test_rename_rotation_mid_stream(tmp_path, rotated_matches_glob):
    clock = FakeClock()
    pattern = "app.log*" if rotated_matches_glob else "app.log"
    app = tmp_path / "app.log"
    append(app, "old1\nold2\n")
    tailer, sink, _ = make(tmp_path, pattern=pattern, clock=clock, close_inactive=30.0)
    with tailer:
        tailer.poll()
        append(app, "old3\nold")  # not read yet when rotated, last line unfinished
        os.rename(app, tmp_path / "app.log.1")
        append(app, "new1\n")
        append(tmp_path / "app.log.1", "4\n")  # the writer appends briefly to the old file
        for _ in range(20):
            clock.advance(0.3)
            tailer.poll()
        append(app, "new2\n")
        for _ in range(10):
            clock.advance(0.3)
            tailer.poll()
        assert tailer.open_files() == 2, "old file kept open (drained, not yet inactive), new opened once"
        clock.advance(40)
        for _ in range(3):
            clock.advance(2)
            tailer.poll()
        expected_open = 2 if rotated_matches_glob else 1
        assert tailer.open_files() == expected_open
    keys = sink.by_key()
    assert len(keys) == 2
    old_key = sink.lines[0].source.key
    old = keys.pop(old_key)
    (new,) = keys.values()
    assert [l.text for l in old] == ["old1", "old2", "old3", "old4"]
    assert [(l.offset, l.end) for l in old] == [(0, 5), (5, 10), (10, 15), (15, 20)]
    assert [l.text for l in new] == ["new1", "new2"] and tiles(new)
    assert old[-1].source.path == str(tmp_path / ("app.log.1" if rotated_matches_glob else "app.log"))
    if rotated_matches_glob:
        assert sink.closed == []
    else:
        assert [s.key for s in sink.closed] == [old_key]


def test_copytruncate_starts_a_new_key_without_resending(tmp_path, agent_log):
    app = tmp_path / "app.log"
    append(app, "old1\nold2\nold3\n")
    tailer, sink, registry = make(tmp_path, pattern="app.log")
    with tailer:
        tailer.run_once()
        old_key = sink.lines[0].source.key
        (tmp_path / "app.log.1").write_bytes(app.read_bytes())  # the "copy" of copytruncate
        with open(app, "r+b") as handle:
            handle.truncate(0)
        append(app, "new1\n")
        tailer.run_once()
        append(app, "new2\n")
        tailer.run_once()
    assert sink.texts() == ["old1", "old2", "old3", "new1", "new2"]
    new = sink.lines[3:]
    assert {l.source.key for l in new} != {old_key} and len({l.source.key for l in new}) == 1
    assert tiles(new)
    assert registry.get(old_key).gone
    assert [s.key for s in sink.closed] == [old_key]
    assert "file truncated" in agent_log.messages()


def test_truncation_with_the_same_first_line_gets_a_new_generation(tmp_path):
    app = tmp_path / "app.log"
    append(app, "HEADER\na\nb\n")
    tailer, sink, registry = make(tmp_path, pattern="app.log")
    with tailer:
        tailer.run_once()
        with open(app, "r+b") as handle:
            handle.truncate(0)
        tailer.run_once()
        append(app, "HEADER\nc\n")
        tailer.run_once()
    first, second = sink.lines[0].source.key, sink.lines[-1].source.key
    assert first != second
    assert registry.get(first).generation == 0 and registry.get(second).generation == 1
    assert registry.get(first).fp_hash == registry.get(second).fp_hash


def test_delete_while_open_drains_then_closes(tmp_path):
    app = tmp_path / "app.log"
    append(app, "l1\n")
    tailer, sink, registry = make(tmp_path)
    with tailer:
        tailer.run_once()
        append(app, "l2\nl3\n")
        os.unlink(app)
        assert tailer.open_files() == 1
        tailer.run_once()
        assert tailer.open_files() == 0
    assert sink.texts() == ["l1", "l2", "l3"]
    key = sink.lines[0].source.key
    assert [s.key for s in sink.closed] == [key]
    # The sink (which flushes its hand-off to the spool) hears of it while the
    # file is still open: its last lines are safe before the agent lets go.
    assert sink.held_at_close in ([True], [None])
    assert registry.get(key).gone


def test_deleted_file_with_an_unfinished_line_is_closed_after_the_partial_timeout(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "l1\nunfinished")
    tailer, sink, _ = make(tmp_path, clock=clock, partial_line_timeout=5.0)
    with tailer:
        tailer.poll()
        os.unlink(app)
        clock.advance(1)
        tailer.poll()
        assert tailer.open_files() == 1
        for _ in range(10):
            clock.advance(1)
            tailer.poll()
        assert tailer.open_files() == 0
    assert sink.texts() == ["l1", "unfinished"] and sink.lines[1].tags == (TAG_PARTIAL,)
    assert len(sink.closed) == 1


def test_restart_resumes_at_the_committed_offset_with_the_same_key(tmp_path):
    app = tmp_path / "app.log"
    append(app, "".join(f"line{i}\n" for i in range(5)))
    tailer, sink, registry = make(tmp_path)
    with tailer:
        tailer.run_once()
    first = list(sink.lines)
    registry.commit(first[2].source.key, first[2].end)  # lines 0-2 acknowledged
    registry.save()

    append(app, "line5\n")
    reloaded = Registry(tmp_path / "state", clock=FakeClock())
    reloaded.load()
    tailer2, sink2, _ = make(tmp_path, registry=reloaded)
    with tailer2:
        tailer2.run_once()
    again = sink2.lines
    assert [l.text for l in again] == ["line3", "line4", "line5"]
    assert [(l.source.key, l.offset, l.end) for l in again[:2]] == \
        [(l.source.key, l.offset, l.end) for l in first[3:]]


def test_crash_before_any_save_gives_the_same_key_again(tmp_path):
    app = tmp_path / "app.log"
    append(app, "a\nb\n")
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once()
    # nothing saved: a fresh registry in a fresh state dir
    tailer2, sink2, _ = make(tmp_path, registry=Registry(tmp_path / "state2", clock=FakeClock()))
    with tailer2:
        tailer2.run_once()
    assert [(l.source.key, l.offset, l.end, l.text) for l in sink.lines] == \
        [(l.source.key, l.offset, l.end, l.text) for l in sink2.lines]


def test_truncated_while_down_starts_over_with_a_new_generation(tmp_path, agent_log):
    app = tmp_path / "app.log"
    append(app, "HEADER\nlong line one\nlong line two\n")
    tailer, sink, registry = make(tmp_path)
    with tailer:
        tailer.run_once()
    sink.commit_all(registry)
    with open(app, "r+b") as handle:
        handle.truncate(0)
    append(app, "HEADER\nx\n")
    tailer2, sink2, _ = make(tmp_path, registry=registry)
    with tailer2:
        tailer2.run_once()
    assert sink2.texts() == ["HEADER", "x"] and sink2.lines[0].offset == 0
    assert sink2.lines[0].source.key != sink.lines[0].source.key
    assert "file truncated" in agent_log.messages()


def test_identical_first_2000_bytes_are_still_different_files(tmp_path):
    head = ("x" * 99 + "\n") * 20  # 2,000 identical bytes
    append(tmp_path / "a.log", head + "only in a\n")
    append(tmp_path / "b.log", head + "only in b\n")
    tailer, sink, registry = make(tmp_path)
    with tailer:
        tailer.run_once()
    keys = sink.by_key()
    assert len(keys) == 2
    assert sorted(lines[-1].text for lines in keys.values()) == ["only in a", "only in b"]
    assert all(len(lines) == 21 and tiles(lines) for lines in keys.values())
    assert len({(e.fp_hash, e.fp_len) for e in registry.entries()}) == 1


def test_new_file_at_the_same_path_after_delete_is_read_from_zero(tmp_path):
    app = tmp_path / "app.log"
    append(app, "HEADER\nfirst file\n")
    tailer, sink, registry = make(tmp_path)
    with tailer:
        tailer.run_once()
        old_inode = os.stat(app).st_ino
        os.unlink(app)
        tailer.run_once()  # drained, closed, marked gone
        append(app, "HEADER\nsecond file, longer than the first one\n")
        reused = os.stat(app).st_ino == old_inode  # ext4 usually hands the inode back
        tailer.run_once()
    assert sink.texts() == ["HEADER", "first file", "HEADER", "second file, longer than the first one"]
    first, second = sink.lines[:2], sink.lines[2:]
    assert second[0].offset == 0 and tiles(second)
    assert first[0].source.key != second[0].source.key
    if reused:
        assert registry.get(second[0].source.key).generation == 1


def test_reused_inode_with_a_gone_entry_gets_a_fresh_generation(tmp_path):
    """Inode reuse forced: the registry remembers a deleted file with this very inode."""
    from agent.registry import Entry
    from agent.sources.identity import hash_prefix, source_key
    app = tmp_path / "app.log"
    append(app, "HEADER\nnew content\n")
    info = os.stat(app)
    fp_hash = hash_prefix(b"HEADER\n")
    registry = Registry(tmp_path / "state", clock=FakeClock())
    old_key = source_key(info.st_dev, info.st_ino, 0, fp_hash)
    registry.track(Entry(old_key, str(app), info.st_dev, info.st_ino, 7, fp_hash, 0,
                         offset=10, updated=FakeClock().time(), gone=True))
    tailer, sink, _ = make(tmp_path, registry=registry)
    with tailer:
        tailer.run_once()
    assert sink.texts() == ["HEADER", "new content"] and sink.lines[0].offset == 0
    assert sink.lines[0].source.key == source_key(info.st_dev, info.st_ino, 1, fp_hash) != old_key


def test_live_entry_with_another_fingerprint_is_not_resumed(tmp_path):
    from agent.registry import Entry
    app = tmp_path / "app.log"
    append(app, "brand new first line\nmore\n")
    info = os.stat(app)
    registry = Registry(tmp_path / "state", clock=FakeClock())
    registry.track(Entry("0123456789abcdef", str(app), info.st_dev, info.st_ino, 5, "f" * 32, 0,
                         offset=12, updated=FakeClock().time(), gone=False))
    tailer, sink, _ = make(tmp_path, registry=registry)
    with tailer:
        tailer.run_once()
    assert sink.texts() == ["brand new first line", "more"] and sink.lines[0].offset == 0
    assert registry.get("0123456789abcdef").gone, "the inode now holds another content"


def test_file_renamed_into_the_glob_from_outside_is_read_from_zero(tmp_path):
    outside = tmp_path / "incoming.tmp"
    append(outside, "o1\no2\n")
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once()
        assert sink.lines == []
        os.rename(outside, tmp_path / "moved.log")
        tailer.run_once()
    assert sink.texts() == ["o1", "o2"] and sink.lines[0].offset == 0


def test_known_file_renamed_out_and_back_in_continues(tmp_path):
    app = tmp_path / "app.log"
    append(app, "a1\n")
    tailer, sink, registry = make(tmp_path)
    with tailer:
        tailer.run_once()
        os.rename(app, tmp_path / "app.parked")
        append(tmp_path / "app.parked", "a2\n")
        tailer.run_once()  # renamed away: drained, kept open
        os.rename(tmp_path / "app.parked", tmp_path / "back.log")
        append(tmp_path / "back.log", "a3\n")
        tailer.run_once()
        tailer.run_once()
        assert tailer.open_files() == 1
    assert sink.texts() == ["a1", "a2", "a3"] and tiles(sink.lines)
    assert len({l.source.key for l in sink.lines}) == 1
    assert sink.lines[-1].source.path == str(tmp_path / "back.log")
    assert registry.get(sink.lines[0].source.key).path == str(tmp_path / "back.log")


def test_known_file_renamed_into_the_glob_while_down_resumes(tmp_path):
    app = tmp_path / "app.log"
    append(app, "a1\na2\n")
    tailer, sink, registry = make(tmp_path)
    with tailer:
        tailer.run_once()
    sink.commit_all(registry)
    os.rename(app, tmp_path / "renamed.log")
    append(tmp_path / "renamed.log", "a3\n")
    tailer2, sink2, _ = make(tmp_path, registry=registry)
    with tailer2:
        tailer2.run_once()
    assert sink2.texts() == ["a3"]
    assert sink2.lines[0].source.key == sink.lines[0].source.key
    assert sink2.lines[0].source.path == str(tmp_path / "renamed.log")


def test_partial_line_is_sent_after_the_timeout(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "done\nhal")
    tailer, sink, _ = make(tmp_path, clock=clock, partial_line_timeout=5.0)
    with tailer:
        tailer.poll()
        append(app, "f")
        for _ in range(4):
            clock.advance(1)
            tailer.poll()
        assert sink.texts() == ["done"], "grew one second ago: still waiting"
        for _ in range(8):
            clock.advance(1)
            tailer.poll()
        append(app, "rest\nnext\n")
        for _ in range(5):  # idle backoff: the next stat may be up to 2 s away
            clock.advance(0.5)
            tailer.poll()
    assert [(l.text, l.offset, l.end, l.tags) for l in sink.lines] == [
        ("done", 0, 5, ()), ("half", 5, 9, (TAG_PARTIAL,)), ("rest", 9, 14, ()), ("next", 14, 19, ())]


def test_partial_line_completed_in_time_is_one_line(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "hal")
    tailer, sink, _ = make(tmp_path, clock=clock, partial_line_timeout=5.0)
    with tailer:
        tailer.poll()
        clock.advance(3)
        tailer.poll()
        append(app, "f\n")
        clock.advance(3)
        tailer.poll()
    assert [(l.text, l.end, l.tags) for l in sink.lines] == [("half", 5, ())]


def test_run_once_sends_a_partial_line_only_if_the_file_is_old(tmp_path, agent_log):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "a\nno newline")
    tailer, sink, _ = make(tmp_path, clock=clock)
    with tailer:
        age(app, clock, seconds=1)
        tailer.run_once()
        assert sink.texts() == ["a"]
        said = agent_log.fields("the file ends in a line without a newline, written less than "
                                "--partial-line-timeout ago; it is not shipped by this run (it comes whole once "
                                "finished, or as it is once older than the timeout)")
        assert [(f["path"], f["offset"]) for f in said] == [(str(app), 2)], "held back, and said (audit 9)"
        age(app, clock, seconds=60)
        tailer.run_once()
    assert sink.texts() == ["a", "no newline"] and sink.lines[-1].tags == (TAG_PARTIAL,)
    assert len(agent_log.fields("the file ends in a line without a newline, written less than "
                                "--partial-line-timeout ago; it is not shipped by this run (it comes whole once "
                                "finished, or as it is once older than the timeout)")) == 1
    assert sink.lines[-1].end == os.path.getsize(app)


def test_many_files_one_fd_each(tmp_path):
    for index in range(1000):
        append(tmp_path / f"f{index:04d}.log", f"{index} a\n{index} b\n")
    tailer, sink, registry = make(tmp_path)
    with tailer:
        tailer.run_once()
        assert tailer.open_files() == 1000
        tailer.run_once()
    assert len(sink.lines) == 2000 and len(sink.by_key()) == 1000
    assert len(registry.entries()) == 1000
