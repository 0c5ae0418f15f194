"""Shutdown is bounded in every mode and every state of the output (issue 8,
item 3): the real command, a real SIGTERM, every queue full.

The output is either down (a port nobody listens on: connection refused) or
hung (a server on 127.0.0.1 that accepts and never answers, so requests
wait for --request-timeout, far longer than the shutdown timeout). The agent
must exit 0 within --shutdown-timeout plus the documented grace
(``SHUTDOWN_GRACE``), with its registry saved and nothing committed that the
output did not confirm.

A signal in the first or last moments of `run` (start-up, the output's
check, the metrics server stopping, the interpreter exiting) neither kills
the agent nor changes its exit code.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from e2e_helpers import Daemon, wait_for

from agent.pipeline import SHUTDOWN_GRACE

SHUTDOWN_TIMEOUT = 2.0
# Interpreter start-up and the registry's last save, on a loaded 2-core machine.
SLACK = 3.0


class HungServer:
    """Accepts connections on 127.0.0.1 and never answers them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def big_log(tmp_path: Path) -> Path:
    path = tmp_path / "logs" / "model.log"
    path.parent.mkdir()
    line = json.dumps({"message": "x" * 200, "level": "info"}) + "\n"
    path.write_text(line * 30000)
    return path


@pytest.mark.parametrize("output", ["down", "hung"])
@pytest.mark.parametrize("queue", ["spool", "memory"])
def test_sigterm_with_every_queue_full_exits_within_the_timeout(tmp_path: Path, big_log: Path,
                                                               output: str, queue: str) -> None:
    server = HungServer() if output == "hung" else None
    port = server.port if server else _closed_port()
    state = tmp_path / "state"
    queue_flags = (["--spool-max-bytes", "1MiB"] if queue == "spool"
                   else ["--no-spool", "--queue-events", "64"])
    daemon = Daemon(["--path", str(big_log.parent / "*.log"), "--state-dir", str(state),
                     "--es-url", f"http://127.0.0.1:{port}", "--request-timeout", "120",
                     "--shutdown-timeout", str(SHUTDOWN_TIMEOUT), "--bulk-max-docs", "50",
                     "--workers", "1", "--backoff-max", "1", *queue_flags], tmp_path / "agent.log")
    try:
        if queue == "spool":
            wait_for(lambda: "reading paused" in daemon.log(), 60, "the spool to fill")
        else:
            wait_for(lambda: "memory queue full" in daemon.log(), 60, "the memory queue to fill")
        if server:
            wait_for(lambda: server.accepted, 30, "a request to hang")
        time.sleep(1.0)  # the reader is blocked on the full queue by now
        started = time.monotonic()
        code = daemon.stop(timeout=60)
        took = time.monotonic() - started
    finally:
        daemon.kill()
        if server:
            server.close()
    log = daemon.log()
    assert code == 0, log[-3000:]
    assert took < SHUTDOWN_TIMEOUT + SHUTDOWN_GRACE + SLACK, f"shutdown took {took:.1f}s\n{log[-3000:]}"
    assert "stopped" in log
    registry = json.loads((state / "registry.json").read_text())
    offsets = [entry["offset"] for entry in registry["entries"]]
    assert offsets in ([], [0]), registry  # nothing was delivered, so nothing is committed


# -- signals in the first and last moments of `run` (audit 2 service, finding 4) ------------------

def _small_log(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("".join(f"line {number}\n" for number in range(100)))
    return logs


def _caught(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has a handler for ``sig`` now (Linux: SigCgt)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


@pytest.mark.parametrize("first, then", [(signal.SIGTERM, signal.SIGHUP), (signal.SIGINT, signal.SIGINT)],
                         ids=["SIGTERM-then-SIGHUP", "SIGINT-twice"])
def test_signals_while_the_agent_stops_change_no_exit_code(tmp_path: Path, first: signal.Signals,
                                                           then: signal.Signals) -> None:
    """A SIGHUP (a reload) or a second Ctrl-C arriving while the agent stops,
    down to its last moments (the metrics server stopping, the interpreter
    exiting): exit 0, not 129 (killed by SIGHUP) nor 1 (click's "Aborted!")."""
    logs = _small_log(tmp_path)
    out = tmp_path / "out.ndjson"
    daemon = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                     "--output", f"file:{out}", "--metrics-addr", f"127.0.0.1:{_closed_port()}"],
                    tmp_path / "agent.log")
    try:
        wait_for(lambda: out.exists() and len(out.read_bytes().splitlines()) == 100, 60, "the lines delivered")
        daemon.process.send_signal(first)
        while daemon.process.poll() is None:  # every 20 ms until it is gone
            daemon.process.send_signal(then)
            time.sleep(0.02)
        code = daemon.stop()
    finally:
        daemon.kill()
    log = daemon.log()
    assert code == 0, log[-3000:]
    assert "msg=stopped" in log and "Aborted!" not in log


def test_a_stop_during_the_start_up_ends_it_at_once_with_exit_0(tmp_path: Path) -> None:
    """Before the handlers of the running agent are in place (imports,
    configuration, the spool): SIGINT neither aborts (exit 1) nor waits."""
    logs = _small_log(tmp_path)
    daemon = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"), "--output", "null"],
                    tmp_path / "agent.log")
    try:
        # The launcher (agent.launch) catches SIGHUP first thing, then imports
        # the command line and the pipeline (a tenth of a second at least):
        # polled closely enough to land before the pipeline's own handlers.
        deadline = time.monotonic() + 60
        while not _caught(daemon.process.pid, signal.SIGHUP) and time.monotonic() < deadline:
            time.sleep(0.002)
        daemon.process.send_signal(signal.SIGINT)
        code = daemon.process.wait(60)
    finally:
        daemon.kill()
    log = daemon.log()
    assert code == 0, log[-3000:]
    assert "msg=\"stop requested during start-up; stopping\" signal=SIGINT" in log, log
    assert "new file" not in log, log


def _wait_for_the_check(daemon: Daemon, server: HungServer) -> None:
    """Until the output's start-up check waits on the hung server. Building
    the output asked the server which engine it is first (a connection held
    for up to 5 s, before the pipeline runs): the check is the next one."""
    wait_for(lambda: "modelscribe starting" in daemon.log() and len(server.accepted) >= 2, 60,
             "the start-up check to connect")


def test_a_stop_during_the_output_check_does_not_wait_for_it(tmp_path: Path) -> None:
    """The output's start-up check waits up to 10 s for a hung node: a SIGTERM
    meanwhile stops the agent at once, exit 0, nothing read."""
    server = HungServer()
    logs = _small_log(tmp_path)
    state = tmp_path / "state"
    daemon = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(state),
                     "--es-url", f"http://127.0.0.1:{server.port}"], tmp_path / "agent.log")
    try:
        _wait_for_the_check(daemon, server)
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.stop()
        took = time.monotonic() - started
    finally:
        daemon.kill()
        server.close()
    log = daemon.log()
    assert code == 0, log[-3000:]
    assert took < 5, f"stopping took {took:.1f}s\n{log[-3000:]}"
    assert "new file" not in log  # the reader read nothing


def test_a_sighup_during_the_output_check_is_applied_once_the_agent_is_ready(tmp_path: Path) -> None:
    server = HungServer()
    logs = _small_log(tmp_path)
    daemon = Daemon(["--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                     "--es-url", f"http://127.0.0.1:{server.port}", "--request-timeout", "2"],
                    tmp_path / "agent.log")
    try:
        _wait_for_the_check(daemon, server)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in daemon.log(), 60, "the reload")
        assert daemon.process.poll() is None
        code = daemon.stop()
    finally:
        daemon.kill()
        server.close()
    log = daemon.log()
    assert code == 0, log[-3000:]
    assert log.index("starting anyway") < log.index("reload requested during start-up") \
        < log.index("configuration reloaded")
