"""The tailer on NUL bytes: preallocated regions written in place later,
file system holes, the blocks a crash leaves unwritten (audit finding F5:
a NUL run was shipped as a line and the lines written there later were lost)."""

from __future__ import annotations

import os

from agent.clock import FakeClock
from agent.events import TAG_PARTIAL
from agent.registry import Registry
from tailkit import age, append, make, tiles


def _poll(tailer, clock, times: int = 8, step: float = 1.0) -> None:
    for _ in range(times):
        clock.advance(step)
        tailer.poll()


def _write_at(path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def test_a_preallocated_region_is_read_as_it_is_written(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, "seq=0\n")
    os.truncate(app, 6 + 4096)  # what a preallocating writer does
    tailer, sink, registry = make(tmp_path, clock=clock, partial_line_timeout=2.0)
    with tailer:
        tailer.poll()
        _poll(tailer, clock)  # far past the partial-line timeout
        assert sink.texts() == ["seq=0"], "the NULs are no line"
        _write_at(app, 6, b"seq=1\nseq=2\n")
        _poll(tailer, clock, step=0.5)
        _write_at(app, 18, b"seq=3\n")
        _poll(tailer, clock, step=0.5)
    assert [(l.text, l.offset, l.end, l.tags) for l in sink.lines] == [
        ("seq=0", 0, 6, ()), ("seq=1", 6, 12, ()), ("seq=2", 12, 18, ()), ("seq=3", 18, 24, ())]
    assert os.path.getsize(app) == 6 + 4096


def test_after_a_restart_the_region_written_since_is_read(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, b"seq=0\n" + bytes(1000))
    tailer, sink, registry = make(tmp_path, clock=clock)
    with tailer:
        age(app, clock)
        tailer.run_once()
    assert sink.texts() == ["seq=0"]
    sink.commit_all(registry)
    registry.save()
    _write_at(app, 6, b"seq=1\n")
    reloaded = Registry(tmp_path / "state", clock=clock)
    reloaded.load()
    again, sink2, _ = make(tmp_path, registry=reloaded, clock=clock)
    with again:
        age(app, clock)
        again.run_once()
    assert [(l.text, l.offset) for l in sink2.lines] == [("seq=1", 6)]
    assert sink2.lines[0].source.key == sink.lines[0].source.key, "filled in place: the same content"


def test_a_partial_line_followed_by_nuls_is_cut_before_them(tmp_path):
    clock = FakeClock()
    app = tmp_path / "app.log"
    append(app, b"ok\nhalf" + bytes(64))
    tailer, sink, _ = make(tmp_path, clock=clock, partial_line_timeout=2.0)
    with tailer:
        tailer.poll()
        _poll(tailer, clock)
    assert [(l.text, l.offset, l.end, l.tags) for l in sink.lines] == [
        ("ok", 0, 3, ()), ("half", 3, 7, (TAG_PARTIAL,))]


def test_nuls_before_a_line_do_not_push_it_out(tmp_path):
    """The blocks a power loss left unwritten, then the program's next lines:
    the NULs are left out of the text, and a megabyte of them does not count
    towards max_line_bytes (the line after them was lost inside a 1 MiB NUL
    document)."""
    app = tmp_path / "app.log"
    data = b"before\n" + bytes(2 * 1024 * 1024) + b"after the crash\nnext\n"
    append(app, data)
    tailer, sink, _ = make(tmp_path, max_line_bytes=1000, read_chunk_bytes=65536)
    with tailer:
        tailer.run_once()
    assert sink.texts() == ["before", "after the crash", "next"]
    assert tiles(sink.lines) and sink.lines[-1].end == len(data)
    assert sink.lines[1].tags == ()


def test_a_hole_is_skipped_without_being_read(tmp_path, monkeypatch):
    """A sparse file (a 1 GiB hole, then a line): the hole counts as NULs and
    is not read (SEEK_DATA), so its gigabyte is neither read nor held."""
    app = tmp_path / "app.log"
    append(app, "a\n")
    with open(app, "r+b") as handle:
        handle.seek(2 + (1 << 30))
        handle.write(b"b\n")
    read = []
    real_pread = os.pread

    def counting_pread(fd, size, offset):
        data = real_pread(fd, size, offset)
        read.append(len(data))
        return data

    from agent.sources import tailer as tailer_module
    monkeypatch.setattr(tailer_module.os, "pread", counting_pread)
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once()
    assert [(l.text, l.offset, l.end) for l in sink.lines] == [("a", 0, 2), ("b", 2, (1 << 30) + 4)]
    assert sum(read) < 4 * 1024 * 1024, f"read {sum(read)} bytes of a 1 GiB hole"


def test_a_file_that_ends_in_nuls_is_not_read_again_until_it_changes(tmp_path, monkeypatch):
    """Unchanged, its NUL tail costs one byte a check (the byte where a write
    would land first); a write there is seen even when the modification time
    does not move (a store through a memory mapping to a page already dirty)."""
    clock = FakeClock(start=2_000_000_000.0)  # the file's real mtime is in this clock's past
    app = tmp_path / "app.log"
    append(app, b"line\n" + b"\n".join([b"x"] * 10) + b"\n" + bytes(300_000))
    tailer, sink, _ = make(tmp_path, clock=clock, read_chunk_bytes=65536)
    reads = []
    real_pread = os.pread
    monkeypatch.setattr("agent.sources.tailer.os.pread",
                        lambda fd, size, offset: reads.append(size) or real_pread(fd, size, offset))
    with tailer:
        tailer.poll()
        first = len(reads)
        _poll(tailer, clock, times=6)
        assert set(reads[first:]) <= {1}, "an unchanged NUL tail is not read again"
        before = os.stat(app)
        _write_at(app, 25, b"y\n")
        os.utime(app, ns=(before.st_atime_ns, before.st_mtime_ns))  # as if the mtime had not moved
        _poll(tailer, clock, times=3)
        assert sink.texts()[-1] == "y"
        _write_at(app, 27, b"z\n")
        stamp = clock.time() - 10
        os.utime(app, (stamp, stamp))  # another modification time
        _poll(tailer, clock, times=3)
    assert sink.texts() == ["line"] + ["x"] * 10 + ["y", "z"]
