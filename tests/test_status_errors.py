"""Errors the agent caught and survived show in ``modelscribe status``."""

from __future__ import annotations

import time

from agent.stats import Stats, count_error
from agent.status import render, report, write_status


def test_caught_errors_are_counters_of_the_status(tmp_path):
    stats = Stats()
    count_error("detector")
    count_error("watcher")
    count_error("watcher")
    write_status(str(tmp_path), time.time(), stats.snapshot(), None)
    data = report(str(tmp_path), str(tmp_path / "dead-letter.ndjson"))
    assert data["counters"]["detector_errors"] == 1
    assert data["counters"]["watcher_errors"] == 2
    assert "detector_errors=1" in render(data) and "watcher_errors=2" in render(data)
