"""Where the tailer starts a file the registry does not know: --read-from end
(files found at start-up) and --ignore-older (files not modified for long):
their existing lines are skipped, the offset is recorded at once, and what is
written later is shipped, also across a restart before the next line."""

from __future__ import annotations

import os

import pytest

from agent.clock import FakeClock
from agent.registry import Registry
from agent.sources.harvesters import last_line_end
from agent.sources.tailer import TailSettings
from tailkit import append, make


def _reloaded(tmp_path, clock) -> Registry:
    registry = Registry(tmp_path / "state", clock=clock)
    registry.load()
    return registry


def test_read_from_end_skips_the_lines_there_at_start_up_but_not_the_unfinished_one(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "old 1\nold 2\npar")
    tailer, sink, registry = make(tmp_path, clock=clock, read_from_end=True)
    with tailer:
        tailer.poll()
        append(app, "tial\nnew\n")
        clock.advance(1)
        tailer.poll()
        (tmp_path / "later.log").write_text("first\n")  # appeared after the start: read whole
        tailer._scan_requested = True
        clock.advance(1)
        tailer.poll()
    assert sink.texts(app) == ["partial", "new"]
    assert [(l.offset, l.end) for l in sink.lines[:2]] == [(12, 20), (20, 24)]
    assert sink.texts(tmp_path / "later.log") == ["first"]


def test_a_restart_before_the_next_line_resumes_where_it_skipped_to(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "old\n" * 100)
    tailer, sink, _ = make(tmp_path, clock=clock, read_from_end=True)
    with tailer:
        tailer.poll()  # nothing shipped, nothing acknowledged; then the agent stops
    assert sink.lines == []
    append(app, "written while stopped\n")
    again, sink2, _ = make(tmp_path, registry=_reloaded(tmp_path, clock), clock=clock, read_from_end=True)
    with again:
        again.run_once()
    assert [(l.text, l.offset) for l in sink2.lines] == [("written while stopped", 400)]


def test_ignore_older_skips_old_files_and_ships_what_they_get_later(tmp_path):
    clock = FakeClock()
    old, fresh = tmp_path / "old.log", tmp_path / "fresh.log"
    append(old, "from last month\n")
    append(fresh, "from now\n")
    stamp = clock.time() - 7200
    os.utime(old, (stamp, stamp))
    os.utime(fresh, (clock.time() - 60, clock.time() - 60))
    tailer, sink, _ = make(tmp_path, clock=clock, ignore_older=3600.0)
    with tailer:
        tailer.poll()
        append(old, "it woke up\n")
        for _ in range(3):
            clock.advance(1)
            tailer.poll()
    assert sink.texts(old) == ["it woke up"] and sink.texts(fresh) == ["from now"]


def test_without_either_setting_everything_is_read(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "a\nb\n")
    stamp = clock.time() - 10 * 86400
    os.utime(app, (stamp, stamp))
    tailer, sink, _ = make(tmp_path, clock=clock)
    with tailer:
        tailer.run_once()
    assert sink.texts() == ["a", "b"]


def test_last_line_end(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"one\ntwo\n" + b"x" * 200_000)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.path.getsize(path)
        assert last_line_end(fd, size, size) == 8  # across several 64 KiB reads back
        assert last_line_end(fd, size, 1000) == size  # an unfinished line longer than the reach: skipped
        assert last_line_end(fd, 3, 3) == 0  # one unfinished line in a short file: read
        assert last_line_end(fd, 8, 8) == 8
    finally:
        os.close(fd)


def test_ignore_older_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="ignore_older"):
        TailSettings(paths=(str(tmp_path / "*.log"),), ignore_older=0.0)


def test_read_from_end_starts_before_a_preallocated_region_of_any_size(tmp_path):
    """The skip stops before a NUL tail (a memory-mapped appender's 32 MiB):
    lines written there later are read (the start went past it)."""
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "old 1\nold 2\n")
    os.truncate(app, 4 * 1024 * 1024)
    tailer, sink, registry = make(tmp_path, clock=clock, read_from_end=True)
    with tailer:
        tailer.poll()
        with open(app, "r+b") as handle:
            handle.seek(12)
            handle.write(b"new 1\nnew 2\n")
        for _ in range(4):
            clock.advance(1)
            tailer.poll()
    assert [(l.text, l.offset) for l in sink.lines] == [("new 1", 12), ("new 2", 18)]


def _five_files_two_slots(tmp_path, clock):
    """Five files of one old line, found at start-up with --read-from end by a
    tailer that may hold two open."""
    for number in range(5):
        append(tmp_path / f"f{number}.log", f"old {number}\n")
    return make(tmp_path, clock=clock, read_from_end=True, max_open_files=2, close_inactive=3.0, scan_interval=2.0)


def _until_all_opened(tailer, sink, registry, clock, seconds: int) -> None:
    for _ in range(seconds):
        clock.advance(1)
        tailer.poll()
        sink.commit_all(registry)


def test_read_from_end_holds_for_start_up_files_opened_later(tmp_path):
    """Files found at start-up that waited for an open-file slot are still
    start-up files: their old lines are not read when they get one."""
    clock = FakeClock()
    tailer, sink, registry = _five_files_two_slots(tmp_path, clock)
    with tailer:
        tailer.poll()
        for _ in range(20):
            clock.advance(1)
            tailer.poll()
        for number in range(5):
            append(tmp_path / f"f{number}.log", f"new {number}\n")
        _until_all_opened(tailer, sink, registry, clock, 40)
    assert sorted(sink.texts()) == [f"new {n}" for n in range(5)]


def test_a_start_up_file_waiting_for_a_slot_keeps_what_is_written_while_it_waits(tmp_path):
    # Audit 5: decided when the file got its slot, the skip took the lines
    # written while it waited (256 of 300 files lost them).
    clock = FakeClock()
    tailer, sink, registry = _five_files_two_slots(tmp_path, clock)
    with tailer:
        tailer.poll()
        assert tailer.waiting_files()[0] == 3
        for number in range(5):
            append(tmp_path / f"f{number}.log", f"new {number}\n")
        _until_all_opened(tailer, sink, registry, clock, 40)
        assert tailer.waiting_files() == (0, None)
    assert sorted(sink.texts()) == [f"new {n}" for n in range(5)]


def test_a_start_up_file_that_waited_resumes_after_a_restart_where_it_was_skipped_to(tmp_path):
    # Audit 5: never opened before the stop, it was skipped again at the restart,
    # with what was written meanwhile.
    clock = FakeClock()
    for number in range(5):
        append(tmp_path / f"f{number}.log", f"old {number}\n")
    tailer, sink, _ = make(tmp_path, clock=clock, read_from_end=True, max_open_files=2)
    with tailer:
        tailer.poll()  # three wait; then the agent stops
    for number in range(5):
        append(tmp_path / f"f{number}.log", f"while stopped {number}\n")
    again, sink2, _ = make(tmp_path, registry=_reloaded(tmp_path, clock), clock=clock, read_from_end=True)
    with again:
        again.run_once()
    assert sorted(sink2.texts()) == [f"while stopped {n}" for n in range(5)]


def test_a_file_found_fresh_is_read_whole_however_long_it_waits_for_a_slot(tmp_path):
    # Audit 5: its age was judged when it got a slot: a file fresh when found
    # that waited past --ignore-older was skipped whole (80 of 300 files).
    clock = FakeClock()
    for number in range(9):
        append(tmp_path / f"f{number}.log", f"line {number}\n")
        os.utime(tmp_path / f"f{number}.log", (clock.time(), clock.time()))  # (written now, by the clock)
    tailer, sink, registry = make(tmp_path, clock=clock, ignore_older=10.0, max_open_files=1,
                                  close_inactive=3.0, scan_interval=2.0)
    with tailer:
        tailer.poll()
        _until_all_opened(tailer, sink, registry, clock, 80)
        assert tailer.waiting_files() == (0, None)
    assert sorted(sink.texts()) == [f"line {n}" for n in range(9)]


def test_a_file_found_later_that_waited_is_read_whole_after_a_restart(tmp_path):
    # Audit 6: a waiting file decided "read from its start" was only remembered in
    # memory; after a restart --read-from end took it for a start-up file and
    # skipped it (150 of 450 lines).
    clock = FakeClock()
    tailer, sink, _ = _five_files_two_slots(tmp_path, clock)
    with tailer:
        tailer.poll()
        for name in ("n0.log", "n1.log"):
            append(tmp_path / name, f"{name} first\n{name} second\n")
        tailer._scan_requested = True
        clock.advance(1)
        tailer.poll()  # found after the start, they wait too; then the agent stops
    for name in ("n0.log", "n1.log"):
        append(tmp_path / name, f"{name} third\n")
    again, sink2, _ = make(tmp_path, registry=_reloaded(tmp_path, clock), clock=clock, read_from_end=True)
    with again:
        again.run_once()
    assert sink2.texts(tmp_path / "n0.log") == ["n0.log first", "n0.log second", "n0.log third"]
    assert sink2.texts(tmp_path / "n1.log") == ["n1.log first", "n1.log second", "n1.log third"]


def test_a_waiting_file_replaced_at_its_path_is_judged_when_the_new_one_is_found(tmp_path):
    # Audit 6: the new file at a waiting path (a rotation) was never decided, so
    # --ignore-older judged it when it got a descriptor and skipped it whole.
    clock = FakeClock()
    for number in range(4):
        append(tmp_path / f"f{number}.log", f"line {number}\n")
        os.utime(tmp_path / f"f{number}.log", (clock.time(), clock.time()))
    tailer, sink, registry = make(tmp_path, pattern="*.log*", clock=clock, ignore_older=10.0, max_open_files=1,
                                  close_inactive=3.0, scan_interval=2.0)
    with tailer:
        tailer.poll()
        os.rename(tmp_path / "f3.log", tmp_path / "f3.log.1")
        append(tmp_path / "f3.log", "new 3\n")
        os.utime(tmp_path / "f3.log", (clock.time(), clock.time()))
        _until_all_opened(tailer, sink, registry, clock, 60)
        assert tailer.waiting_files() == (0, None)
    assert sorted(sink.texts()) == ["line 0", "line 1", "line 2", "line 3", "new 3"]
