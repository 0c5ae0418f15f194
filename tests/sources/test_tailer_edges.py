"""The tailer on awkward content and awkward paths: long lines, bad bytes, EACCES, FIFOs."""

from __future__ import annotations

import errno
import os

from agent.events import TAG_INVALID_UTF8, TAG_PARTIAL, TAG_TRUNCATED
from agent.sources import tailer as tailer_module
from agent.sources.discovery import Discovery
from tailkit import age, append, make, tiles


def test_over_long_lines_are_cut_but_offsets_cover_them(tmp_path):
    app = tmp_path / "app.log"
    append(app, "x" * 25 + "\nshort\n" + "y" * 10 + "\n")
    tailer, sink, _ = make(tmp_path, max_line_bytes=10, read_chunk_bytes=7)
    with tailer:
        tailer.run_once()
    assert [(l.text, l.offset, l.end, l.tags) for l in sink.lines] == [
        ("x" * 10, 0, 26, (TAG_TRUNCATED,)), ("short", 26, 32, ()), ("y" * 10, 32, 43, ())]


def test_a_5_mb_line_is_cut_to_max_line_bytes(tmp_path):
    app = tmp_path / "app.log"
    big = b"z" * (5 * 1024 * 1024)
    append(app, b"before\n" + big + b"\nafter\n")
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once()
    before, cut, after = sink.lines
    assert before.text == "before"
    assert len(cut.text) == 1048576 and cut.tags == (TAG_TRUNCATED,)
    assert (cut.offset, cut.end) == (7, 7 + len(big) + 1)
    assert after.text == "after" and after.offset == cut.end


def test_truncation_never_splits_a_utf8_character(tmp_path):
    app = tmp_path / "app.log"
    append(app, "aé" * 10 + "\n")  # 'é' is two bytes
    tailer, sink, _ = make(tmp_path, max_line_bytes=4)
    with tailer:
        tailer.run_once()
    assert sink.lines[0].text == "a\u00e9a" and sink.lines[0].tags == (TAG_TRUNCATED,)


def test_invalid_utf8_is_replaced_and_tagged(tmp_path):
    app = tmp_path / "app.log"
    append(app, b"ok\nbad \xff\xfe here\n")
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once()
    assert sink.lines[0].tags == ()
    assert sink.lines[1].text == "bad \ufffd\ufffd here" and sink.lines[1].tags == (TAG_INVALID_UTF8,)
    assert sink.lines[1].end == os.path.getsize(app)


def test_binary_garbage_does_not_break_anything(tmp_path):
    app = tmp_path / "app.bin.log"
    data = bytes(range(256)) * 300 + os.urandom(20000)
    append(app, data)
    tailer, sink, _ = make(tmp_path, read_chunk_bytes=1000, max_line_bytes=3000)
    with tailer:
        age(app, tailer._clock)
        tailer.run_once()
    # (a run of NULs at the very end may be a region not written yet: not read)
    assert tiles(sink.lines) and sink.lines[-1].end == len(data.rstrip(b"\0"))
    assert all(isinstance(l.text, str) for l in sink.lines)


def test_crlf_line_endings(tmp_path):
    app = tmp_path / "app.log"
    append(app, "windows\r\nline\r\n\r\nbare\rcr\n")
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once()
    assert sink.texts() == ["windows", "line", "", "bare\rcr"]
    assert [l.end for l in sink.lines] == [9, 15, 17, 25]


def test_partial_then_long_line_offsets(tmp_path):
    app = tmp_path / "app.log"
    append(app, "tail")
    tailer, sink, _ = make(tmp_path, max_line_bytes=6)
    with tailer:
        age(app, tailer._clock)
        tailer.run_once()
        append(app, "0123456789\n")
        tailer.run_once()
    assert [(l.text, l.offset, l.end, l.tags) for l in sink.lines] == [
        ("tail", 0, 4, (TAG_PARTIAL,)), ("012345", 4, 15, (TAG_TRUNCATED,))]


def fail_open_for(monkeypatch, name: str, code: int = errno.EACCES):
    """Make os.open fail for one file, as a chmod 000 would for a non-root user."""
    real_open = os.open
    state = {"fail": True, "calls": 0}

    def fake_open(path, flags, *args, **kwargs):
        if os.path.basename(os.fsdecode(path)) == name and state["fail"]:
            state["calls"] += 1
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(tailer_module.os, "open", fake_open)
    return state


def test_unreadable_file_is_warned_once_and_retried(tmp_path, monkeypatch, agent_log):
    append(tmp_path / "good.log", "good\n")
    append(tmp_path / "secret.log", "secret\n")
    state = fail_open_for(monkeypatch, "secret.log")
    tailer, sink, _ = make(tmp_path)
    with tailer:
        for _ in range(3):
            tailer.run_once()
        assert sink.texts() == ["good"]
        warnings = agent_log.fields("cannot tail file; will retry at later scans")
        assert len(warnings) == 1
        assert warnings[0]["path"] == str(tmp_path / "secret.log")
        assert "Permission denied" in warnings[0]["error"] and "EACCES" in warnings[0]["error"]
        assert state["calls"] == 3, "retried at every scan"
        state["fail"] = False
        tailer.run_once()
    assert sink.texts() == ["good", "secret"]


def test_directories_and_fifos_matching_the_glob_are_skipped(tmp_path, agent_log):
    (tmp_path / "dir.log").mkdir()
    os.mkfifo(tmp_path / "pipe.log")
    append(tmp_path / "good.log", "good\n")
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once()
        tailer.run_once()
        assert tailer.open_files() == 1
    assert sink.texts() == ["good"]
    errors = {f["path"]: f["error"] for f in agent_log.fields("cannot tail file; will retry at later scans")}
    assert len(agent_log.messages()) == 2
    assert "directory" in errors[str(tmp_path / "dir.log")]
    assert "FIFO" in errors[str(tmp_path / "pipe.log")]


def test_file_deleted_between_glob_and_open(tmp_path, monkeypatch, agent_log):
    append(tmp_path / "good.log", "good\n")
    ghost = str(tmp_path / "ghost.log")
    real_scan = Discovery.scan
    monkeypatch.setattr(Discovery, "scan", lambda self: real_scan(self) + [ghost])
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once()
        tailer.run_once()
    assert sink.texts() == ["good"]
    (warning,) = agent_log.fields("cannot tail file; will retry at later scans")
    assert warning["path"] == ghost and "No such file" in warning["error"]


def test_read_error_on_an_open_file_closes_only_that_file(tmp_path, monkeypatch, agent_log):
    append(tmp_path / "a.log", "a1\n")
    append(tmp_path / "b.log", "b1\n")
    tailer, sink, _ = make(tmp_path)
    with tailer:
        tailer.run_once()
        bad_fd = tailer._by_path[str(tmp_path / "a.log")].fd
        real_pread = os.pread

        def failing_pread(fd, size, offset):
            if fd == bad_fd:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_pread(fd, size, offset)

        monkeypatch.setattr(tailer_module.os, "pread", failing_pread)
        append(tmp_path / "a.log", "a2\n")
        append(tmp_path / "b.log", "b2\n")
        tailer.run_once()
        assert tailer.open_files() == 1
        for _ in range(3):  # reopened at every scan, fails again, logged once
            tailer.run_once()
    assert sink.texts() == ["a1", "b1", "b2"]
    # the reopen fails too (in the fingerprint read): one more line, then silence
    assert agent_log.messages() == ["file read failed; closing it",
                                    "cannot tail file; will retry at later scans"]


def test_directories_a_glob_matches_are_skipped_without_a_word_but_a_named_one_is_said(tmp_path, agent_log):
    # Audit 9: --path DIR/** warned "not a regular file: a directory" once per
    # directory (thousands under /var/log/pods).
    for name in ("a", "b", "c/d"):
        (tmp_path / "logs" / name).mkdir(parents=True)
        (tmp_path / "logs" / name / "x.log").write_text(f"{name}\n")
    tailer, sink, _ = make(tmp_path, "logs/**")
    with tailer:
        tailer.run_once()
    assert sorted(sink.texts()) == ["a", "b", "c/d"]
    assert "cannot tail file; will retry at later scans" not in agent_log.messages()
    named, _, _ = make(tmp_path, "logs/*")  # (a directory where the glob looks for files: said)
    with named:
        named.run_once()
    assert agent_log.fields("cannot tail file; will retry at later scans")[0]["error"] == \
        "not a regular file: a directory"
