"""Shutdown is bounded in every mode and every state of the output (issue 8,
item 3): the real command, a real SIGTERM, every queue full.

The output is either down (a port nobody listens on: connection refused) or
hung (a server on 127.0.0.1 that accepts and never answers, so requests
wait for --request-timeout, far longer than the shutdown timeout). The agent
must exit 0 within --shutdown-timeout plus the documented grace
(``SHUTDOWN_GRACE``), with its registry saved and nothing committed that the
output did not confirm.
"""

from __future__ import annotations

import json
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
