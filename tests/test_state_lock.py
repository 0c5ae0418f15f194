"""One agent per state directory and per spool directory (agent/state_lock.py).
Found by audit 4: two agents on one state directory overwrote each other's
registry (3,000 lines shipped twice) and one shipped the other's spooled
lines to its own output (2,000 lines misrouted), with no word in the log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.state_lock import DirectoryLock
from e2e_helpers import Daemon, run_once, wait_for


def test_a_held_directory_is_refused_naming_the_holder_and_free_once_released(tmp_path: Path) -> None:
    first = DirectoryLock(str(tmp_path), "--state-dir X")
    first.acquire()
    second = DirectoryLock(str(tmp_path), "--state-dir X")
    with pytest.raises(ConfigError, match=rf"--state-dir X: another modelscribe \(pid {os.getpid()}\) is using "):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


def test_the_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from agent.state_lock import DirectoryLock; "
        f"lock = DirectoryLock({str(tmp_path)!r}, 'x'); lock.acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"\(pid {holder.pid}\)"):
            DirectoryLock(str(tmp_path), "x").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        holder.stdout.close()  # type: ignore[union-attr]
    lock = DirectoryLock(str(tmp_path), "x")
    lock.acquire()  # no stale lock: the kernel freed it with the process
    lock.release()


# state: both on one --state-dir; spool: both on one --spool-dir; default-spool: the second names the
# first's default spool (STATE_DIR/spool) with --spool-dir; default-spool-2: the first names the second's
# default spool with --spool-dir (audit 11: the default spool was not locked, and the second agent
# shipped the first's 500 spooled lines, which the first shipped again after its restart).
@pytest.mark.parametrize("shared", ["state", "spool", "default-spool", "default-spool-2"])
def test_a_second_agent_on_the_same_directory_is_refused_and_the_first_goes_on(tmp_path: Path, shared: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("one\n")
    first_args = ["--path", str(logs / "*.log"), "--output", f"file:{tmp_path / 'a.ndjson'}",
                  "--state-dir", str(tmp_path / "state-a"), "--metrics-addr", "off"]
    second_args = ["--path", str(logs / "*.log"), "--output", f"file:{tmp_path / 'b.ndjson'}", "--once",
                   "--state-dir", str(tmp_path / ("state-a" if shared == "state" else "state-b"))]
    if shared == "spool":
        first_args += ["--spool-dir", str(tmp_path / "spool")]
        second_args += ["--spool-dir", str(tmp_path / "spool")]
    elif shared == "default-spool":
        second_args += ["--spool-dir", str(tmp_path / "state-a" / "spool")]
    elif shared == "default-spool-2":
        first_args += ["--spool-dir", str(tmp_path / "state-b" / "spool")]
    first = Daemon(first_args, tmp_path / "first.log")
    try:
        wait_for(lambda: (tmp_path / "a.ndjson").exists() and (tmp_path / "a.ndjson").read_text().count("\n") == 1,
                 30, "the first agent ships")
        second = run_once(["run", *second_args])
        assert second.code == 2, second.stderr
        flag = "--spool-dir" if shared in ("spool", "default-spool") else "--state-dir"
        assert f"{flag} " in second.stderr and f"another modelscribe (pid {first.process.pid}) " in second.stderr
        assert not (tmp_path / "b.ndjson").exists() or (tmp_path / "b.ndjson").read_text() == ""
        assert first.process.poll() is None  # the first one goes on
    finally:
        assert first.stop() == 0
    assert run_once(["run", *second_args]).code == 0  # free again once the first has stopped
