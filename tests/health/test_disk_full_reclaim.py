"""Health's journal and checkpoint on a disk the spool shares (the state
directory): when the disk refuses them for want of space, the spool is told
(``on_disk_full``, the spool's ``reclaim``, which the pipeline wires) and
frees the delivered records it holds; the write is tried again, and no event
is left out of health. Audit 11: on a 3 MiB state disk the spool kept a
1.27 MB segment of delivered records while health left out 2,001 of 10,000
events and its state failed to save for 54 s.

Real files in tmp_path, a real DiskQueue and HealthEngine; only the writes
are made to see a disk of a given capacity, shared by both directories (the
spool's ``write_all``, as tests/small_disk.py does, and the checkpoint
module's ``os.write`` and ``write_atomic``)."""

from __future__ import annotations

import errno
import os
import types
from pathlib import Path

import orjson
import pytest

from agent.atomic import write_atomic
from agent.clock import FakeClock
from agent.events import Event
from agent.health import checkpoint as checkpoint_module
from agent.health.engine import HealthEngine
from agent.spool import DiskQueue
from test_checkpoint_corrupt import AGENT, EVENTS, FIRST_EVENTS, T0

MiB = 1024 * 1024


class SharedDisk:
    """A file system of ``capacity`` bytes holding every file under ``roots``."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots, self.capacity, self.failures = roots, 1 << 60, 0

    def used(self) -> int:
        return sum(p.stat().st_size for root in self.roots if root.exists()
                   for p in root.rglob("*") if p.is_file())

    def free(self) -> int:
        return self.capacity - self.used()

    def refuse(self, size: int) -> bool:
        if size > self.free():
            self.failures += 1
            return True
        return False

    def write_all(self, fd: int, data) -> None:  # (the spool's: writes what fits, then ENOSPC)
        free = self.free()
        if self.refuse(len(data)):
            if free > 0:
                os.write(fd, bytes(data)[:free])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def os_write(self, fd: int, data) -> int:  # (the journal's)
        if self.refuse(len(data)):
            os.write(fd, bytes(data)[: max(0, self.free()) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    def write_atomic(self, path, body: bytes, **kwargs) -> None:  # (state.json: a temp file first)
        if self.refuse(len(body)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_atomic(path, body, **kwargs)


@pytest.fixture
def disk(tmp_path, monkeypatch) -> SharedDisk:
    import agent.spool.ack as ack_module
    import agent.spool.queue as queue_module
    import agent.spool.segment as segment_module

    shared = SharedDisk([tmp_path / "spool", tmp_path / "state"])
    for module in (queue_module, segment_module, ack_module):
        monkeypatch.setattr(module, "write_all", shared.write_all)
    fake_os = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
    fake_os.write = shared.os_write
    monkeypatch.setattr(checkpoint_module, "os", fake_os)
    monkeypatch.setattr(checkpoint_module, "write_atomic", shared.write_atomic)
    return shared


def _delivered_spool(directory: Path) -> DiskQueue:
    """A spool whose segment being written holds 200 records, all delivered: kept
    only because it is being written (1 MiB segments), as after an idle spell."""
    queue = DiskQueue(directory, 64 * MiB, segment_bytes=1 * MiB)
    queue.open()
    assert queue.append([Event("other", i * 500, i * 500 + 500, f"o{i}", b"x" * 500) for i in range(200)])
    taken = queue.take(1000, 1 << 40, 0)
    queue.ack(taken.refs)
    assert queue.pending() == 0 and queue.used_bytes() > 100_000
    return queue


def _engine(directory: Path) -> HealthEngine:
    return HealthEngine(FIRST_EVENTS, str(directory), None, AGENT, FakeClock(T0 + 100))


def _documents(engine: HealthEngine) -> list[bytes]:
    engine.close_due(final=True)
    shipped: list[dict] = []
    while engine.ship(lambda events: shipped.extend(orjson.loads(e.data) for e in events)):
        pass
    for doc in shipped:
        doc.pop("agent", None)
    return sorted(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS) for doc in shipped)


def test_a_journal_the_full_disk_refuses_makes_the_spool_free_its_delivered_records(tmp_path, disk):
    whole = _engine(tmp_path / "whole")  # (on a disk with room)
    whole.observe(EVENTS)
    expected = _documents(whole)
    queue = _delivered_spool(tmp_path / "spool")
    engine = _engine(tmp_path / "state")
    engine.on_disk_full = queue.reclaim  # (what the pipeline wires)
    disk.capacity = disk.used() + 4000  # the journal needs about 65 KB: the spool holds the rest
    for start in range(0, len(EVENTS), 10):
        engine.observe(EVENTS[start:start + 10])
    assert disk.failures >= 1  # (the disk did fill)
    assert engine.counters.get("unrecorded", 0) == 0  # no event left out (before: 300 of 315)
    assert not list((tmp_path / "spool").glob("*.seg")) and queue.used_bytes() == 0
    assert _documents(engine) == expected
    engine.close()
    queue.close()


def test_a_checkpoint_the_full_disk_refuses_makes_the_spool_free_its_delivered_records(tmp_path, disk):
    queue = _delivered_spool(tmp_path / "spool")
    engine = _engine(tmp_path / "state")
    engine.on_disk_full = queue.reclaim
    engine.observe(EVENTS)
    disk.capacity = disk.used() + 1000  # state.json does not fit beside the spool's delivered segment
    engine.checkpoint({})  # no StateError: saved in the space the spool freed
    assert disk.failures >= 1
    assert (tmp_path / "state" / "health" / "state.json").exists()
    assert not list((tmp_path / "spool").glob("*.seg"))
    engine.close()
    queue.close()


def test_with_nothing_delivered_to_free_the_journal_still_leaves_events_out(tmp_path, disk):
    queue = DiskQueue(tmp_path / "spool", 64 * MiB, segment_bytes=1 * MiB)
    queue.open()
    assert queue.append([Event("other", i * 500, i * 500 + 500, f"o{i}", b"x" * 500) for i in range(200)])
    engine = _engine(tmp_path / "state")
    engine.on_disk_full = queue.reclaim
    disk.capacity = disk.used() + 4000
    for start in range(0, len(EVENTS), 10):
        engine.observe(EVENTS[start:start + 10])  # never raises
    assert engine.counters["unrecorded"] > 0  # nothing could be freed: left out, counted
    assert len(list((tmp_path / "spool").glob("*.seg"))) == 1  # undelivered records are never deleted
    engine.close()
    queue.close()
