"""A state directory that cannot be written (a full disk, a read-only mount)
never stops the agent through health (agent.health.checkpoint): events whose
journal line cannot be written are left out of health, counted and logged,
and the journal is cut back so that no later line joins a torn one; a failed
checkpoint raises StateError (the pipeline logs it and goes on) and the next
one writes everything. Found by audit 4: the batcher died ("cannot write the
health journal ... No space left on device"), exit 1, 100 of 700 lines sent.
Real files in tmp_path; only ``os.write`` of the journal is made to fail."""

from __future__ import annotations

import errno
import logging
import os
import types

import orjson
import pytest

from agent.clock import FakeClock
from agent.errors import StateError
from agent.health import checkpoint as checkpoint_module
from agent.health import reference as reference_module
from agent.health.engine import HealthEngine
from test_checkpoint_corrupt import AGENT, EVENTS, FIRST_EVENTS, T0


class _FullDisk(types.SimpleNamespace):
    """``os`` for the checkpoint module, whose ``write`` writes half, then
    fails with ENOSPC while ``full`` is set."""

    def __init__(self) -> None:
        super().__init__(**{name: getattr(os, name) for name in dir(os)
                            if not name.startswith("__") and name != "write"})
        self.full = False

    def write(self, fd: int, data) -> int:
        if self.full:
            os.write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)


@pytest.fixture
def disk(monkeypatch) -> _FullDisk:
    full = _FullDisk()
    monkeypatch.setattr(checkpoint_module, "os", full)
    return full


def _documents(engine: HealthEngine) -> list[dict]:
    engine.close_due(final=True)
    shipped: list[dict] = []
    while engine.ship(lambda events: shipped.extend(orjson.loads(e.data) for e in events)):
        pass
    for doc in shipped:  # (which run wrote it is no figure)
        doc.pop("agent", None)
    return sorted(shipped, key=lambda doc: orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))


def _engine(directory) -> HealthEngine:
    return HealthEngine(FIRST_EVENTS, str(directory), None, AGENT, FakeClock(T0 + 100))


LEFT_OUT = range(100, 130)  # the events observed while the disk is full (three batches of 10)


def test_events_whose_journal_line_cannot_be_written_are_left_out_counted_and_logged(tmp_path, disk, caplog):
    expected_engine = _engine(tmp_path / "expected")  # one that never saw the events left out
    expected_engine.observe([e for i, e in enumerate(EVENTS) if i not in LEFT_OUT])
    expected = _documents(expected_engine)

    engine = _engine(tmp_path / "faulty")
    with caplog.at_level(logging.INFO, logger="modelscribe"):
        for start in range(0, len(EVENTS), 10):
            disk.full = start in LEFT_OUT
            engine.observe(EVENTS[start:start + 10])  # never raises
    assert engine.counters["unrecorded"] > 0
    errors = [r for r in caplog.records if r.getMessage().startswith("health: cannot write the journal")]
    assert len(errors) == 1 and "No space left on device" in errors[0].kv["error"]  # type: ignore[attr-defined]
    assert any(r.getMessage().startswith("health: the journal is written again") for r in caplog.records)
    journal = b"".join(path.read_bytes() for path in sorted((tmp_path / "faulty" / "health").glob("journal-*")))
    assert all(line.count(b"\t") >= 2 and line.endswith(b"}") for line in journal.split(b"\n")[:-1])

    # After a kill (no checkpoint): the journal replays to the same state.
    engine.close()
    restarted = _engine(tmp_path / "faulty")
    assert _documents(restarted) == _documents(engine) == expected


def test_an_event_left_out_is_counted_if_it_comes_again(tmp_path, disk):
    engine = _engine(tmp_path)
    disk.full = True
    engine.observe(EVENTS[:10])
    disk.full = False
    engine.observe(EVENTS[:10])  # (sent again by the spool, or read again)
    engine.observe(EVENTS[10:])
    whole = _engine(tmp_path / "whole")
    whole.observe(EVENTS)
    assert _documents(engine) == _documents(whole)


@pytest.mark.parametrize("failing", ["state.json", "reference.json"])
def test_a_checkpoint_that_cannot_be_written_raises_and_the_next_one_writes_it(tmp_path, monkeypatch, failing):
    engine = _engine(tmp_path)
    engine.observe(EVENTS[:100])  # (the references are complete: reference_size is 20)

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    module = checkpoint_module if failing == "state.json" else reference_module
    monkeypatch.setattr(module, "write_atomic", full)
    with pytest.raises(StateError, match=f"{failing}: No space left on device"):
        engine.checkpoint({})
    monkeypatch.undo()
    engine.checkpoint({})  # nothing new came: it writes what the failed one could not
    assert (tmp_path / "health" / "state.json").exists() and (tmp_path / "health" / "reference.json").exists()
    assert not list((tmp_path / "health").glob("journal-*"))  # (then the journals can go)
    engine.observe(EVENTS[100:])
    engine.close()
    whole = _engine(tmp_path / "whole")
    whole.observe(EVENTS)
    assert _documents(_engine(tmp_path)) == _documents(whole)


def test_each_outage_logs_its_own_count_and_one_lasting_until_the_stop_is_logged_at_close(tmp_path, disk, caplog):
    # Audit 5: the one figure logged was the all-time total, and an outage that
    # lasted until the agent stopped left only its first batch's count in the log.
    engine = _engine(tmp_path)
    with caplog.at_level(logging.INFO, logger="modelscribe"):
        for start, full in ((0, True), (10, False), (20, True), (30, True), (40, True)):
            disk.full = full
            engine.observe(EVENTS[start:start + 10])
        engine.close()
    said = [(r.getMessage(), r.kv) for r in caplog.records if "journal" in r.getMessage()]  # type: ignore[attr-defined]
    figures = [(m.split(";")[0], kv["left_out"], kv["left_out_total"]) for m, kv in said]
    assert figures == [("health: cannot write the journal", 10, 10),
                       ("health: the journal is written again", 10, 10),
                       ("health: cannot write the journal", 10, 20),
                       ("health: the journal could still not be written when the agent stopped", 30, 40)], figures
