"""Files at their path that stand still are closed (close_inactive), once
everything read of them is acknowledged, and opened again when they change:
a glob matching thousands of dated log files must not hold a descriptor (and
a poll) each. Closed, they are still watched by the scans: renamed away with
new bytes they are read to their end; deleted, their entry is marked gone."""

from __future__ import annotations

import os

import pytest

from agent.clock import FakeClock
from tailkit import append, make, tiles


def _run(tailer, clock, seconds: float, step: float = 1.0) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(step)
        tailer.poll()


def _read_then_idle(tailer, sink, registry, clock, seconds: float) -> None:
    """Read what is there, acknowledge it all, then let ``seconds`` pass (past close_inactive)."""
    tailer.poll()
    sink.commit_all(registry)
    _run(tailer, clock, seconds)


def test_an_idle_file_is_closed_and_opened_again_when_it_grows(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "one\ntwo\n")
    tailer, sink, registry = make(tmp_path, clock=clock, close_inactive=30.0, scan_interval=5.0)
    with tailer:
        _read_then_idle(tailer, sink, registry, clock, 40)
        assert tailer.open_files() == 0
        key = sink.lines[0].source.key
        append(app, "three\n")
        _run(tailer, clock, 6)  # the next scan sees it changed
        assert tailer.open_files() == 1
    assert [(l.text, l.offset, l.source.key) for l in sink.lines] == [
        ("one", 0, key), ("two", 4, key), ("three", 8, key)]


def test_a_file_whose_lines_are_not_acknowledged_stays_open(tmp_path):
    clock = FakeClock()
    append(tmp_path / "app.log", "one\n")
    tailer, sink, registry = make(tmp_path, clock=clock, close_inactive=30.0, scan_interval=5.0)
    with tailer:
        tailer.poll()
        _run(tailer, clock, 60)
        assert tailer.open_files() == 1, "closed with its line in flight"
        sink.commit_all(registry)
        _run(tailer, clock, 5)
        assert tailer.open_files() == 0


def test_an_unchanged_closed_file_is_not_opened_again_and_its_entry_is_kept_alive(tmp_path):
    clock = FakeClock()
    append(tmp_path / "app.log", "one\n")
    tailer, sink, registry = make(tmp_path, clock=clock, close_inactive=30.0, scan_interval=5.0)
    with tailer:
        _read_then_idle(tailer, sink, registry, clock, 40)
        key = sink.lines[0].source.key
        before = registry.get(key).updated
        opened = []
        real_open = os.open
        os.open = lambda *a, **k: opened.append(a[0]) or real_open(*a, **k)
        try:
            _run(tailer, clock, 300, step=5.0)
        finally:
            os.open = real_open
        assert tailer.open_files() == 0 and not [p for p in opened if str(p).endswith("app.log")]
        assert registry.get(key).updated > before and not registry.get(key).gone
    assert len(sink.lines) == 1


def test_a_closed_file_renamed_away_with_new_lines_is_read_to_its_end(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "one\n")
    tailer, sink, registry = make(tmp_path, "app.log", clock=clock, close_inactive=30.0, scan_interval=5.0,
                                  use_watchdog=False)
    with tailer:
        _read_then_idle(tailer, sink, registry, clock, 40)
        assert tailer.open_files() == 0
        append(app, "written just before the rotation\n")
        os.rename(app, tmp_path / "app.log.1")  # out of the glob before a scan saw it change
        _run(tailer, clock, 6)
    assert sink.texts() == ["one", "written just before the rotation"]
    assert sink.lines[1].source.key == sink.lines[0].source.key and sink.lines[1].offset == 4


def test_a_closed_file_deleted_is_marked_gone(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "one\n")
    tailer, sink, registry = make(tmp_path, clock=clock, close_inactive=30.0, scan_interval=5.0)
    with tailer:
        _read_then_idle(tailer, sink, registry, clock, 40)
        os.unlink(app)
        _run(tailer, clock, 6)
    assert registry.get(sink.lines[0].source.key).gone


def test_hundreds_of_idle_files_hold_no_descriptor(tmp_path):
    clock = FakeClock()
    for number in range(300):
        append(tmp_path / f"day-{number:03d}.log", f"line of day {number}\n")
    tailer, sink, registry = make(tmp_path, clock=clock, close_inactive=30.0, scan_interval=5.0)
    with tailer:
        tailer.poll()
        assert tailer.open_files() == 300
        sink.commit_all(registry)
        _run(tailer, clock, 40)
        assert tailer.open_files() == 0
        append(tmp_path / "day-299.log", "more\n")
        _run(tailer, clock, 6)
        assert tailer.open_files() == 1
    assert len(sink.lines) == 301 and sink.texts(tmp_path / "day-299.log") == ["line of day 299", "more"]


def test_files_beyond_the_open_file_budget_wait_for_idle_ones_to_close(tmp_path, caplog):
    clock = FakeClock()
    for number in range(5):
        append(tmp_path / f"f{number}.log", f"line {number}\n")
    tailer, sink, registry = make(tmp_path, clock=clock, close_inactive=30.0, scan_interval=5.0, max_open_files=3)
    with tailer:
        tailer.poll()
        assert tailer.open_files() == 3 and len(sink.lines) == 3
        # Shown (audit 4: files that waited were in no metric, /health said ok, status listed 16 files).
        assert tailer.waiting_files() == (2, str(tmp_path / "f3.log"))
        sink.commit_all(registry)
        _run(tailer, clock, 40)
        sink.commit_all(registry)
        _run(tailer, clock, 40)
        assert tailer.waiting_files() == (0, None)
    assert sorted(sink.texts()) == [f"line {n}" for n in range(5)]
    warned = [r for r in caplog.records if "as many files open as the agent may hold" in r.getMessage()]
    assert len(warned) == 1 and warned[0].kv["waiting"] == 2 and warned[0].kv["open_files"] == 3


def test_the_budget_leaves_descriptors_for_the_rest_of_the_agent(monkeypatch):
    import resource

    from agent.sources import fileinfo

    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 4096))
    assert fileinfo.open_files_budget() == 1024 - fileinfo.RESERVED_DESCRIPTORS
    monkeypatch.setattr(resource, "getrlimit", lambda which: (100, 4096))
    assert fileinfo.open_files_budget() == 16


def test_a_closed_file_deleted_and_created_again_on_its_inode_is_a_new_file(tmp_path):
    """ext4 gives the inode number out again at once; the same first line makes
    the registry's fingerprint match: the inode's generation tells them apart."""
    from agent.sources.fileinfo import inode_generation

    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "# model-server log v1\nold 1\nold 2\n")
    probe = os.open(app, os.O_RDONLY)
    has_generation = inode_generation(probe) is not None
    os.close(probe)
    tailer, sink, registry = make(tmp_path, clock=clock, close_inactive=30.0, scan_interval=5.0)
    with tailer:
        _read_then_idle(tailer, sink, registry, clock, 40)
        inode = os.stat(app).st_ino
        os.unlink(app)
        for attempt in range(200):  # (until the file system hands the inode out again)
            append(app, "# model-server log v1\nnew 1\nnew 2\nnew 3\nnew 4\n")
            if os.stat(app).st_ino == inode:
                break
            os.rename(app, tmp_path / f"other-{attempt}.txt")
        reused = os.stat(app).st_ino == inode
        _run(tailer, clock, 6)
    if reused and not has_generation:
        pytest.skip("this file system keeps no inode generation: the limit the README states")
    assert sink.texts(app)[-5:] == ["# model-server log v1", "new 1", "new 2", "new 3", "new 4"]
    assert sink.lines[-1].source.key != sink.lines[0].source.key
    assert registry.get(sink.lines[0].source.key).gone


def test_a_closed_file_found_again_under_a_second_name_stays_closed(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "one\n")
    os.symlink(app, tmp_path / "current.log")
    tailer, sink, registry = make(tmp_path, clock=clock, close_inactive=10.0, scan_interval=2.0)
    with tailer:
        _read_then_idle(tailer, sink, registry, clock, 60)
        assert tailer.open_files() == 0
    assert len(sink.lines) == 1


def test_an_event_for_a_deleted_closed_file_is_no_problem(tmp_path, caplog):
    clock = FakeClock()
    app = tmp_path / "day-1.log"
    append(app, "one\n")
    tailer, sink, registry = make(tmp_path, clock=clock, close_inactive=10.0, scan_interval=60.0)
    with tailer:
        _read_then_idle(tailer, sink, registry, clock, 15)
        assert tailer.open_files() == 0
        os.unlink(app)
        tailer._discover(str(app), clock.monotonic())  # what the deletion event does
    assert registry.get(sink.lines[0].source.key).gone
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "day-1.log" in str(r.__dict__)]


def test_once_reads_every_file_also_beyond_the_open_file_budget(tmp_path):
    """--once closes no idle file: it lets go of the ones it has read to make
    room (it read 44 of 400 files under ulimit -n 300, and exited 0)."""
    clock = FakeClock()
    for number in range(10):
        append(tmp_path / f"f{number}.log", f"line {number}\nmore {number}\n")
    tailer, sink, registry = make(tmp_path, clock=clock, max_open_files=3)
    with tailer:
        tailer.run_once()
    assert sorted(sink.texts()) == sorted([f"line {n}" for n in range(10)] + [f"more {n}" for n in range(10)])
    assert tiles(sink.lines[:2])


def test_a_hint_checks_its_file_alone_and_due_files_are_still_checked(tmp_path, monkeypatch):
    # Since a hint no longer walks every open file (audit 4: with 10,000 open,
    # one file at 100 lines/s took 49 % of a core; 15 % now, benchmarks/many_files.py),
    # what must hold: the hinted file is read at once, and a file whose write
    # went unseen is still read when due.
    from agent.sources.discovery import Hint

    clock = FakeClock()
    for number in range(3):
        append(tmp_path / f"f{number}.log", f"line {number}\n")
    tailer, sink, _ = make(tmp_path, clock=clock, scan_interval=60.0)
    checked = []
    real_check = type(tailer)._check
    monkeypatch.setattr(tailer, "_check", lambda h, now, once: (checked.append(os.path.basename(h.path)),
                                                                 real_check(tailer, h, now, once)))
    with tailer:
        tailer.poll()  # the first pass: every file
        assert sorted(checked) == ["f0.log", "f1.log", "f2.log"] and len(sink.lines) == 3
        clock.advance(0.01)  # (before any is due again)
        checked.clear()
        append(tmp_path / "f1.log", "more\n")
        tailer._on_hint(Hint(str(tmp_path / "f1.log"), False, False), clock.monotonic())
        tailer.poll()
        assert checked == ["f1.log"] and sink.texts(tmp_path / "f1.log") == ["line 1", "more"]
        append(tmp_path / "f2.log", "unhinted\n")  # (a write whose event was lost: found when due)
        for _ in range(30):
            clock.advance(1.0)
            tailer.poll()
        assert sink.texts(tmp_path / "f2.log") == ["line 2", "unhinted"]


def test_in_a_tree_of_symlinks_an_event_asks_for_a_scan_only_for_a_file_not_open_yet(tmp_path):
    # A new file an event names waits for a scan there (which opens it under the path
    # of the first input: audit 8), but writes to a file open under its other path
    # must not scan the whole tree at each event.
    from agent.sources.discovery import Hint

    clock = FakeClock()
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    append(tmp_path / "real" / "app.log", "one\n")
    tailer, sink, _ = make(tmp_path, "link/*.log", clock=clock, scan_interval=600.0,
                           paths=(str(tmp_path / "link" / "*.log"), str(tmp_path / "real" / "*.log")))
    with tailer:
        tailer.poll()
        assert sink.texts(tmp_path / "link" / "app.log") == ["one"] and tailer._linked
        append(tmp_path / "real" / "app.log", "two\n")
        tailer._on_hint(Hint(str(tmp_path / "real" / "app.log"), False, False), clock.monotonic())
        assert not tailer._scan_requested, "a write to a file open under its other path"
        append(tmp_path / "real" / "new.log", "three\n")
        tailer._on_hint(Hint(str(tmp_path / "real" / "new.log"), True, False), clock.monotonic())
        assert tailer._scan_requested, "a new file: the scan opens it under the first input's path"
        clock.advance(0.5)
        tailer.poll()
        assert sink.texts(tmp_path / "link" / "new.log") == ["three"]
