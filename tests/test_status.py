"""`status` reads the registry, the status file and the dead letters without
changing them, and says the agent is running only when that is known."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from agent.config import resolve
from agent.stats import Stats
from agent.status import mark_stopped, render, report, write_status
from e2e_helpers import Daemon, run_once, wait_for


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


# -- is the agent running? (audit 2 service, finding 3) ---------------------------------------------

def _status_file(state: Path, **changes) -> None:
    """status.json as this process would write it, with ``changes`` (None deletes a key)."""
    state.mkdir(exist_ok=True)
    write_status(str(state), time.time(), Stats().snapshot(), None)
    body = json.loads((state / "status.json").read_text())
    body.update(changes)
    (state / "status.json").write_text(json.dumps({k: v for k, v in body.items() if v is not None}))


def _agent(state: Path, now: float | None = None) -> dict:
    data = report(str(state), str(state / "dead.ndjson"), now=now)
    assert data["problems"] == []
    return data["agent"] | {"line": render(data).splitlines()[1]}


def _start_ticks(pid: int | str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def test_the_agent_that_wrote_the_file_recently_is_running(tmp_path):
    _status_file(tmp_path)
    agent = _agent(tmp_path)
    assert (agent["state"], agent["running"], agent["line"]) == ("running", True, f"agent: running, pid {os.getpid()}")


def test_a_pid_that_now_belongs_to_another_process_is_not_the_agent(tmp_path):
    """PID reuse, a reboot, a container: the audit's `agent: running, pid 2` was kthreadd."""
    _status_file(tmp_path, pid=1)  # init is alive, but it is not the process that wrote the file
    agent = _agent(tmp_path)
    assert (agent["state"], agent["running"]) == ("not running", False), agent
    assert "pid 1 now belongs to another process" in agent["line"]
    _status_file(tmp_path, process_start=_start_ticks("self") + 1)  # same number, later start
    assert _agent(tmp_path)["state"] == "not running"


def test_a_pid_this_user_may_not_signal_is_not_taken_for_the_agent(tmp_path, monkeypatch):
    import agent.status

    def not_allowed(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(agent.status.os, "kill", not_allowed)
    _status_file(tmp_path, pid=1)
    assert _agent(tmp_path)["state"] == "not running"


def test_a_pid_that_has_exited_is_not_running(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _status_file(tmp_path, pid=gone.pid, process_start=None)
    agent = _agent(tmp_path)
    assert agent["state"] == "not running" and f"pid {gone.pid} has exited" in agent["line"]


def test_the_agent_alive_but_silent_is_not_responding(tmp_path):
    _status_file(tmp_path)
    later = time.time() + 60
    agent = _agent(tmp_path, now=later)
    assert (agent["state"], agent["running"]) == ("not responding", True)
    assert agent["line"].startswith("agent: not responding since 20") and "for 60s" in agent["line"]


def test_a_live_pid_that_cannot_be_checked_is_unknown_once_the_file_is_stale(tmp_path):
    """No start time to compare (a file of an older agent, another OS): the
    file's age decides, and a stale one is never `running`."""
    _status_file(tmp_path, process_start=None)
    assert _agent(tmp_path)["state"] == "running"
    agent = _agent(tmp_path, now=time.time() + 60)
    assert (agent["state"], agent["running"]) == ("unknown", None)
    assert agent["line"].startswith("agent: unknown (stopped, or not responding: status.json last written")


def test_an_agent_in_another_pid_namespace_is_judged_by_the_file_alone(tmp_path):
    """The audit's repro: an agent in a container (pid 2 there), status run on the host."""
    _status_file(tmp_path, pid=2, pid_namespace="pid:[1]")
    assert _agent(tmp_path)["line"] == "agent: running, pid 2 (in another PID namespace)"
    agent = _agent(tmp_path, now=time.time() + 60)
    assert agent["state"] == "unknown" and "another PID namespace" in agent["line"]


def test_an_agent_that_stopped_says_so_in_its_last_write(tmp_path):
    _status_file(tmp_path)
    mark_stopped(str(tmp_path))
    agent = _agent(tmp_path)
    assert agent["state"] == "not running" and agent["line"].startswith(f"agent: not running (pid {os.getpid()} "
                                                                        "stopped at 20")


def test_status_of_a_running_daemon_and_after_it_stopped(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("one\n")
    state = tmp_path / "state"
    daemon = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(state), "--output", "null"],
                    tmp_path / "agent.log")
    try:
        wait_for(lambda: (state / "status.json").exists(), 60, "the first status file")
        agent = _agent(state)
        assert (agent["state"], agent["pid"]) == ("running", daemon.process.pid), agent
        assert daemon.stop() == 0, daemon.log()[-2000:]
    finally:
        daemon.kill()
    agent = _agent(state)
    assert agent["state"] == "not running" and "stopped at" in agent["line"], agent


def test_files_waiting_for_an_open_file_slot_are_shown(tmp_path):
    from agent.status import render, report, write_status
    from agent.stats import Stats
    import time as _time
    state = tmp_path / "state"
    state.mkdir()
    write_status(str(state), _time.time(), Stats().snapshot(), None, {"files": 84, "first": "/var/log/a/0.log"})
    data = report(str(state), str(state / "dead-letter.ndjson"))
    assert data["waiting"] == {"files": 84, "first": "/var/log/a/0.log"}
    assert "waiting for an open-file slot: 84 files, none of their lines read yet (first: /var/log/a/0.log" \
        in render(data)
    write_status(str(state), _time.time(), Stats().snapshot(), None)
    assert report(str(state), str(state / "dead-letter.ndjson"))["waiting"] is None


def test_a_spool_that_paused_reading_says_so(tmp_path):
    # Audit 9: "spool: 44188 / 65536 bytes" (67 %) while reading had stopped, with no word of it.
    import time as _time
    state = tmp_path / "state"
    state.mkdir()
    spool = {"path": "s", "used_bytes": 44188, "max_bytes": 65536, "pending": 64, "oldest_unacked_age": 7.6}
    write_status(str(state), _time.time(), Stats().snapshot(), {**spool, "paused": True, "held": 2936})
    shown = render(report(str(state), str(state / "dead-letter.ndjson")))
    assert "spool: 44188 / 65536 bytes, oldest unacknowledged 7.6s; full: reading paused until the output " \
           "catches up (2936 events read wait for room)" in shown
    write_status(str(state), _time.time(), Stats().snapshot(), {**spool, "paused": False, "held": 0})
    assert "oldest unacknowledged 7.6s\n" in render(report(str(state), str(state / "dead-letter.ndjson")))


def test_the_last_error_says_when_it_came_and_whether_deliveries_were_acknowledged_since(tmp_path, monkeypatch):
    # Audit 5: after a flood-stage block was lifted and everything delivered,
    # `status` still showed "HTTP 429 ... flood-stage watermark", with no time.
    state = tmp_path / "state"
    state.mkdir()
    stats = Stats()
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    stats.error("HTTP 429 cluster_block_exception")
    write_status(str(state), 1_799_999_000.0, stats.snapshot(), None)
    data = report(str(state), str(state / "dead-letter.ndjson"))
    assert data["last_error_at"] == 1_800_000_000.0 and data["last_ack_at"] is None
    monkeypatch.setattr(time, "time", lambda: 1_800_000_300.0)
    assert "last error: (2027-01-15T08:00:00Z, 300s ago) HTTP 429 cluster_block_exception" in render(data)
    stats.acknowledged(1_800_000_100.0)
    write_status(str(state), 1_799_999_000.0, stats.snapshot(), None)
    text = render(report(str(state), str(state / "dead-letter.ndjson")))
    assert "last error: (2027-01-15T08:00:00Z, 300s ago; deliveries acknowledged since) HTTP 429" in text
    assert "counters: " in text and "last_error_at" not in text.split("counters: ")[1].split("\n")[0]


def test_with_a_dead_letter_index_status_names_it_and_says_dlq_list_counts_its_letters(tmp_path):
    """Audit 7 (edge 5): with --dead-letter-index the letters go to the index,
    and status showed "dead letters: 0 in <a file that does not exist>" only.
    It names the index (from the config file here, as a daemon's is set)
    without asking the node."""
    from click.testing import CliRunner

    from agent import cli

    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "modelscribe.yml"
    config.write_text(f"state_dir: {state}\ndead_letter_index: letters-x\n")
    result = CliRunner().invoke(cli.main, ["status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"dead letters: 0 in {state / 'dead-letter.ndjson'}" in result.output
    assert "dead-letter index: letters-x (letters go there first" in result.output
    assert "`modelscribe dlq list` counts them" in result.output
    as_json = CliRunner().invoke(cli.main, ["status", "--json", "--config", str(config)])
    assert json.loads(as_json.output)["dead_letters"]["index"] == "letters-x"
    plain = render(report(str(state), str(state / "dead-letter.ndjson")))
    assert "dead-letter index" not in plain


def test_a_spool_whose_disk_is_full_says_so(tmp_path):
    # Audit 12: on a full state disk the spool could not free, writing stalled
    # with "spool: 28 / 1073741824 bytes, oldest unacknowledged -" all status said.
    import time as _time
    state = tmp_path / "state"
    state.mkdir()
    spool = {"path": "s", "used_bytes": 28, "max_bytes": 1073741824, "pending": 0, "oldest_unacked_age": None,
             "paused": False, "held": 3377}
    episode = {"for": 20.4, "error": "No space left on device", "writing": False}
    write_status(str(state), _time.time(), Stats().snapshot(), {**spool, "disk_full": episode})
    shown = render(report(str(state), str(state / "dead-letter.ndjson")))
    assert ("spool: 28 / 1073741824 bytes, oldest unacknowledged -; writing paused for 20.4s: the disk refuses it "
            "(No space left on device); reading waits until it takes writes again (free space on the spool's file "
            "system; nothing is lost)\n") in shown
    write_status(str(state), _time.time(), Stats().snapshot(), {**spool, "disk_full": {**episode, "writing": True}})
    assert ("oldest unacknowledged -; the disk refused writes (No space left on device) for 20.4s; they go through "
            "again (not yet for 5 s)\n") in render(report(str(state), str(state / "dead-letter.ndjson")))
    for ended in ({**spool, "disk_full": None}, spool):  # (none now; an older agent's file)
        write_status(str(state), _time.time(), Stats().snapshot(), ended)
        assert "oldest unacknowledged -\n" in render(report(str(state), str(state / "dead-letter.ndjson")))
