"""`status` reads the registry, the status file and the dead letters without changing them."""

import os

from agent.config import resolve
from agent.status import render, report
from e2e_helpers import run_once


def test_report_of_a_stopped_agent(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("one\ntwo\n")
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(tmp_path / "state")}, {})
    done = run_once(["run", "--once", "--path", str(logs / "*.log"), "--state-dir", config.state_dir,
                     "--output", "null"])
    assert done.code == 0, done.stderr
    with open(logs / "a.log", "a") as handle:
        handle.write("three\n")
    before = sorted(os.listdir(tmp_path / "state"))
    data = report(config.state_dir, config.dead_letter_path)
    assert sorted(os.listdir(tmp_path / "state")) == before
    assert data["agent"]["running"] is False
    [entry] = data["files"]
    assert (entry["path"], entry["offset"], entry["size"], entry["lag_bytes"]) == (str(logs / "a.log"), 8, 14, 6)
    assert data["counters"]["events_acked"] == 2
    text = render(data)
    assert "lag_bytes=6" in text and "agent: not running" in text and "dead letters: 0" in text
