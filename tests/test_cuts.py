"""The cut log: cuts by the clock kept on disk until committed, and the
registry saved before a new file's first events go out."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from agent.clock import FakeClock
from agent.cuts import FILE_NAME, MAX_CUTS, CutLog
from agent.registry import Registry
from test_registry import entry


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def registry(tmp_path, clock):
    registry = Registry(tmp_path / "state", clock=clock)
    registry.load()
    return registry


def on_disk(registry: Registry) -> dict:
    return json.loads((registry.state_dir / FILE_NAME).read_text())


def test_cuts_are_written_versioned_0600_and_read_back(registry, clock):
    registry.track(entry("k1", offset=100))
    cuts = CutLog(registry.state_dir, registry, clock)
    cuts.add_line("k1", 250)
    cuts.add_line("k1", 180)
    cuts.add_line("k1", 250)  # once
    cuts.add_events("k1", [(120, 180), (300, 420)])
    assert not (registry.state_dir / FILE_NAME).exists()  # only when settled
    cuts.settle()
    assert on_disk(registry) == {"version": 1, "sources": {"k1": {"lines": [180, 250],
                                                                  "events": [[120, 180], [300, 420]]}}}
    assert stat.S_IMODE(os.stat(registry.state_dir / FILE_NAME).st_mode) == 0o600
    again = CutLog(registry.state_dir, registry, clock)
    again.load()
    assert again.line_cuts("k1") == [180, 250]
    assert again.event_cuts("k1") == {120: 180, 300: 420}
    assert again.line_cuts("other") == [] and again.event_cuts("other") == {}


def test_settle_saves_a_newly_tracked_file_first(registry, clock):
    """A new file's key must be on disk before its first events are handed over."""
    cuts = CutLog(registry.state_dir, registry, clock)
    registry.track(entry("new"))
    cuts.settle()
    saved = json.loads(registry.path.read_text())
    assert [item["key"] for item in saved["entries"]] == ["new"]
    assert not (registry.state_dir / FILE_NAME).exists()  # no cut: nothing written
    # A commit alone is left to the periodic save.
    registry.commit("new", 50)
    cuts.settle()
    assert json.loads(registry.path.read_text())["entries"][0]["offset"] == 0


def test_committed_cuts_and_unknown_files_are_pruned_at_the_next_write(registry, clock):
    registry.track(entry("k1", offset=0))
    cuts = CutLog(registry.state_dir, registry, clock)
    cuts.add_line("k1", 50)
    cuts.add_line("k1", 150)
    cuts.add_events("k1", [(10, 50), (120, 150)])
    cuts.add_line("gone", 10)  # a file the registry no longer knows
    cuts.settle()
    assert set(on_disk(registry)["sources"]) == {"k1"}
    registry.commit("k1", 100)
    cuts.add_line("k1", 400)
    cuts.settle()
    assert on_disk(registry)["sources"] == {"k1": {"lines": [150, 400], "events": [[120, 150]]}}
    registry.commit("k1", 400)
    cuts.add_events("k1", [(400, 480)])
    cuts.settle()
    assert on_disk(registry)["sources"] == {"k1": {"lines": [], "events": [[400, 480]]}}


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 2, "sources": {}}',
                                     b'{"version": 1, "sources": {"k": {"events": [[5, 5]]}}}',
                                     b'{"version": 1, "sources": {"k": {"lines": ["x"]}}}',
                                     b'{"version": 1, "sources": []}'])
def test_an_unreadable_cut_log_is_moved_aside_with_a_warning(registry, clock, content, caplog):
    (registry.state_dir / FILE_NAME).write_bytes(content)
    cuts = CutLog(registry.state_dir, registry, clock)
    with caplog.at_level(logging.WARNING):
        cuts.load()
    assert "cut log unreadable" in caplog.text
    assert not (registry.state_dir / FILE_NAME).exists()
    assert [p.name for p in registry.state_dir.iterdir() if p.name.startswith(FILE_NAME + ".corrupt-")]
    assert cuts.line_cuts("k") == [] and cuts.event_cuts("k") == {}


def test_a_failed_write_is_logged_once_and_retried(registry, clock, caplog, monkeypatch):
    registry.track(entry("k1"))
    cuts = CutLog(registry.state_dir, registry, clock)
    cuts.add_line("k1", 10)
    calls = []

    def failing(path, body, prefix=".tmp-", suffix=".tmp"):
        calls.append(path)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("agent.cuts.write_atomic", failing)
    with caplog.at_level(logging.ERROR):
        cuts.settle()
        cuts.settle()
    assert len(calls) == 2 and caplog.text.count("cannot write the cut log") == 1
    (record,) = [record for record in caplog.records if "cut log" in record.getMessage()]
    assert "No space left on device" in record.kv["error"] and record.kv["path"].endswith(FILE_NAME)
    monkeypatch.undo()
    cuts.settle()
    assert on_disk(registry)["sources"]["k1"]["lines"] == [10]


def test_cuts_per_file_are_capped_oldest_first(registry, clock, caplog):
    registry.track(entry("k1"))
    cuts = CutLog(registry.state_dir, registry, clock)
    with caplog.at_level(logging.WARNING):
        for point in range(1, MAX_CUTS + 3):
            cuts.add_line("k1", point)
        cuts.add_events("k1", [(point, point + 1) for point in range(1, MAX_CUTS + 3)])
    assert cuts.line_cuts("k1")[0] == 3 and len(cuts.line_cuts("k1")) == MAX_CUTS
    assert min(cuts.event_cuts("k1")) == 3 and len(cuts.event_cuts("k1")) == MAX_CUTS
    assert caplog.text.count("more cuts by time than kept") == 1
