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


def test_a_file_name_that_is_not_utf8_is_shown_readably_and_stat_ed_exactly(tmp_path):
    import json

    from agent.clock import FakeClock
    from agent.registry import Entry, Registry

    logs = tmp_path / "logs"
    logs.mkdir()
    name = os.path.join(os.fsencode(logs), b"bad\xff.log")
    with open(name, "wb") as handle:
        handle.write(b"0123456789\n")
    info = os.stat(name)
    registry = Registry(tmp_path / "state", clock=FakeClock())
    registry.load()
    registry.track(Entry(key="k1", path=os.fsdecode(name), dev=info.st_dev, inode=info.st_ino, fp_len=11,
                         fp_hash="ab" * 16, generation=0, offset=4, updated=FakeClock().time()))
    registry.save()
    data = report(str(tmp_path / "state"), str(tmp_path / "dead.ndjson"))
    (item,) = data["files"]
    assert item["path"] == f"{logs}/bad\\xff.log" and (item["size"], item["lag_bytes"]) == (11, 7)
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # --json and the text form print it as UTF-8
    render(data).encode("utf-8")
