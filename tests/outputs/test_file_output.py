"""``--output file:``: a batch is in the file whole or not at all, a full disk
is retried, and a file moved away or deleted is reopened.

Real files in ``tmp_path``. A full disk cannot be made without mounting one,
so the kernel's answers (a short write, then ENOSPC) are played through the
module's seams (``_write``, ``_fsync``, ``_truncate``): the bytes that "fit"
are really written to the real file."""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
import time

import pytest

import agent.outputs.file as file_module
from agent.acks import AckTracker
from agent.errors import PermanentOutputError, TransientOutputError
from agent.events import Event
from agent.outputs.dead_letter import DeadLetters
from agent.outputs.file import FileOutput
from agent.outputs.sender import Sender
from agent.stats import Stats


def _events(first, count):
    return [Event("k", i * 100, i * 100 + 100, f"id{i}",
                  json.dumps({"n": i, "message": "m" * 60}).encode()) for i in range(first, first + count)]


def _numbers(path):
    """The documents in the file, in order; every line must be whole JSON."""
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"", "the file ends inside a line"
    return [json.loads(line)["n"] for line in lines[:-1]]


class _Disk:
    """``os.write`` of a disk with ``room`` bytes left (None: no limit): it
    writes what fits and returns the short count, then fails with ENOSPC, as
    the kernel does."""

    def __init__(self, room=None, code=errno.ENOSPC):
        self.room, self.code, self.calls = room, code, 0

    def __call__(self, fd, data):
        self.calls += 1
        if self.room is None:
            return os.write(fd, data)
        if self.room == 0:
            raise OSError(self.code, os.strerror(self.code))
        written = os.write(fd, bytes(data[:self.room]))
        self.room -= written
        return written


def test_a_full_disk_cuts_the_batch_back_and_the_retry_writes_it_once(tmp_path, monkeypatch):
    path = tmp_path / "out.ndjson"
    disk = _Disk()
    monkeypatch.setattr(file_module, "_write", disk)
    output = FileOutput(str(path))
    output.send(_events(0, 3))
    disk.room = 150  # the next batch fits in part: a short write, then ENOSPC
    with pytest.raises(TransientOutputError) as raised:
        output.send(_events(3, 3))
    assert str(path) in str(raised.value) and "disk is full" in str(raised.value)
    assert disk.calls >= 3  # the short write was looped on before the error
    assert _numbers(path) == [0, 1, 2]  # no torn line: the file is as before the batch
    disk.room = None  # space freed
    output.send(_events(3, 3))
    output.send(_events(6, 1))
    output.close()
    assert _numbers(path) == [0, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_when_nothing_fits_is_transient(tmp_path, monkeypatch, code):
    monkeypatch.setattr(file_module, "_write", _Disk(room=0, code=code))
    output = FileOutput(str(tmp_path / "out.ndjson"))
    with pytest.raises(TransientOutputError):
        output.send(_events(0, 2))
    output.close()
    assert (tmp_path / "out.ndjson").read_bytes() == b""


def test_short_writes_alone_write_the_whole_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(file_module, "_write", lambda fd, data: os.write(fd, bytes(data[:7])))
    path = tmp_path / "out.ndjson"
    output = FileOutput(str(path))
    output.send(_events(0, 4))
    output.close()
    assert _numbers(path) == [0, 1, 2, 3]


def test_a_failed_fsync_is_permanent_names_the_file_and_is_cut_back(tmp_path, monkeypatch):
    path = tmp_path / "out.ndjson"
    output = FileOutput(str(path))
    output.send(_events(0, 2))

    def eio(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(file_module, "_fsync", eio)
    with pytest.raises(PermanentOutputError, match=f"file:{path}: write failed: Input/output error"):
        output.send(_events(2, 2))
    assert _numbers(path) == [0, 1]
    monkeypatch.setattr(file_module, "_fsync", os.fsync)
    output.send(_events(2, 2))
    output.close()
    assert _numbers(path) == [0, 1, 2, 3]


def test_a_cut_back_that_fails_is_done_before_the_next_write(tmp_path, monkeypatch):
    """An append-only file refuses ftruncate: nothing is appended after the
    torn bytes until the cut succeeds."""
    path = tmp_path / "out.ndjson"
    disk = _Disk()
    monkeypatch.setattr(file_module, "_write", disk)
    output = FileOutput(str(path))
    output.send(_events(0, 1))

    def refuse(fd, size):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(file_module, "_truncate", refuse)
    disk.room = 40
    with pytest.raises(TransientOutputError):
        output.send(_events(1, 2))
    disk.room = None
    with pytest.raises(PermanentOutputError, match="cannot cut back"):
        output.send(_events(1, 2))
    assert path.stat().st_size > len(_events(0, 1)[0].data) + 1  # the torn bytes are still there
    monkeypatch.setattr(file_module, "_truncate", os.ftruncate)
    output.send(_events(1, 2))
    output.close()
    assert _numbers(path) == [0, 1, 2]


def test_the_sender_retries_a_full_disk_even_for_once_and_acknowledges_once(tmp_path, monkeypatch):
    """``--once`` retries only transient errors: a full disk must be one."""
    path = tmp_path / "out.ndjson"
    attempts = []

    def filling(fd, data):
        attempts.append(len(data))
        if len(attempts) <= 2:  # two attempts find the disk full, after writing a little
            os.write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    monkeypatch.setattr(file_module, "_write", filling)
    commits = {}
    acks = AckTracker(lambda key, offset: commits.__setitem__(key, offset))
    stats = Stats()
    sender = Sender(FileOutput(str(path)), acks, DeadLetters(str(tmp_path / "dead.ndjson"), "logs-x"), stats,
                    threading.Event(), None, backoff_max=0.0, retry_permanent=False,
                    give_up_to_dead_letters=False)
    events = _events(0, 5)
    acks.register(events)
    sender.deliver(events)
    assert _numbers(path) == [0, 1, 2, 3, 4]
    assert commits == {"k": 500}
    snap = stats.snapshot()
    assert (snap.events_acked, snap.events_rejected) == (5, 0)
    assert not (tmp_path / "dead.ndjson").exists()


def test_a_file_moved_away_is_reopened_at_its_path(tmp_path):
    path = tmp_path / "out.ndjson"
    output = FileOutput(str(path))
    output.send(_events(0, 2))
    os.rename(path, tmp_path / "out.ndjson.1")  # logrotate without copytruncate
    output.send(_events(2, 2))
    output.close()
    assert _numbers(tmp_path / "out.ndjson.1") == [0, 1]
    assert _numbers(path) == [2, 3]


def test_a_deleted_file_is_recreated(tmp_path):
    path = tmp_path / "out.ndjson"
    output = FileOutput(str(path))
    output.send(_events(0, 2))
    path.unlink()
    output.send(_events(2, 1))
    output.close()
    assert _numbers(path) == [2]


def test_a_file_deleted_while_a_batch_is_written_gets_the_batch_again(tmp_path, monkeypatch):
    path = tmp_path / "out.ndjson"
    output = FileOutput(str(path))
    output.send(_events(0, 1))

    def delete_then_write(fd, data):
        if path.exists():
            path.unlink()
        return os.write(fd, data)

    monkeypatch.setattr(file_module, "_write", delete_then_write)
    with pytest.raises(TransientOutputError, match="deleted"):
        output.send(_events(1, 2))  # went to an unlinked inode: not acknowledged
    monkeypatch.setattr(file_module, "_write", os.write)
    output.send(_events(1, 2))  # the retry
    output.close()
    assert _numbers(path) == [1, 2]


def test_the_file_is_created_0600_whatever_the_umask(tmp_path):
    previous = os.umask(0)
    try:
        output = FileOutput(str(tmp_path / "out.ndjson"))
        output.send(_events(0, 1))
        output.close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.ndjson").stat().st_mode) == 0o600


def test_a_file_that_cannot_be_opened_names_it(tmp_path):
    output = FileOutput(str(tmp_path / "missing" / "out.ndjson"))
    with pytest.raises(PermanentOutputError, match="missing/out.ndjson: cannot open: No such file"):
        output.send(_events(0, 1))
    report = output.check()
    assert not report.ok and "cannot open" in report.lines[0][1]


def test_two_workers_never_interleave_or_cut_each_other(tmp_path, monkeypatch):
    """Workers send concurrently; a failed batch's cut-back must not remove
    the other worker's acknowledged batch."""
    path = tmp_path / "out.ndjson"
    failures = iter([True] + [False] * 1000)
    lock = threading.Lock()

    def sometimes_full(fd, data):
        with lock:
            fail = next(failures)
        if fail:
            os.write(fd, bytes(data[:30]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        time.sleep(0.0005)  # lets the other worker run between two calls, as a real disk would
        return os.write(fd, bytes(data[:50]))  # short writes: a batch takes several calls

    monkeypatch.setattr(file_module, "_write", sometimes_full)
    output = FileOutput(str(path))
    sent, errors = [], []

    def worker(first):
        for batch in range(first, first + 40, 4):
            events = _events(batch, 4)
            try:
                output.send(events)
            except TransientOutputError:
                errors.append(batch)
                output.send(events)
            with lock:
                sent.extend(range(batch, batch + 4))

    threads = [threading.Thread(target=worker, args=(start,)) for start in (0, 1000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    output.close()
    assert len(errors) == 1
    assert sorted(_numbers(path)) == sorted(sent)
