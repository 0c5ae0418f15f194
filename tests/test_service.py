"""systemd integration (agent/service.py): sd_notify over a real AF_UNIX
datagram socket, received from the real ``modelscribe run`` command, the
watchdog tied to the main loop, and credentials from $CREDENTIALS_DIRECTORY."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from agent.config import resolve
from agent.errors import ConfigError
from agent.pipeline import Pipeline
from agent.service import Notifier, notify_address, status_line, watchdog_interval


class Listener:
    """What systemd does: a bound datagram socket collecting notifications."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def next(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
        self.messages.append((time.monotonic(), fields))
        return fields

    def until(self, predicate, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.next(max(0.01, deadline - time.monotonic()))
            if message is not None and predicate(message):
                return message
        raise AssertionError(f"no such notification within {timeout}s; got {[m for _, m in self.messages]}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def short_dir():
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="ms-", dir="/tmp") as path:
        yield Path(path)


def _daemon(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "model.log").write_text('{"message": "one", "level": "info"}\n{"message": "two"}\n')
    args = [sys.executable, "-m", "agent", "run", "--path", str(logs / "*.log"), "--format", "json",
            "--output", f"file:{tmp_path / 'out.ndjson'}", "--state-dir", str(tmp_path / "state"),
            "--flush-interval", "0.2"]
    with open(tmp_path / "agent.log", "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log)


def _stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(60)


@pytest.mark.parametrize("abstract", [False, True], ids=["path-socket", "abstract-socket"])
def test_the_daemon_notifies_ready_status_watchdog_and_stopping(tmp_path, short_dir, abstract):
    name = f"@modelscribe-test-{os.getpid()}" if abstract else str(short_dir / "notify")
    listener = Listener(notify_address(name))
    process = _daemon(tmp_path, {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1000000"})
    try:
        ready = listener.until(lambda m: "READY" in m, 30)
        assert ready["READY"] == "1" and ready["STATUS"].startswith("shipping: ")
        # Half of WATCHDOG_USEC: a ping about every 0.5 s.
        pings = []
        while len(pings) < 4:
            pings.append(listener.until(lambda m: "WATCHDOG" in m, 5))
        times = [at for at, message in listener.messages if "WATCHDOG" in message]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(0.2 < gap < 1.0 for gap in gaps), gaps
        # STATUS follows what the agent does: the file is open and both lines acknowledged.
        listener.until(lambda m: m.get("STATUS", "").startswith("shipping: 1 file,")
                       and m["STATUS"].endswith("2 acked"), 30)
        assert "spool " in listener.messages[-1][1]["STATUS"]
        process.send_signal(signal.SIGTERM)
        stopping = listener.until(lambda m: "STOPPING" in m, 30)
        assert stopping["STOPPING"] == "1"
        assert process.wait(60) == 0
    finally:
        _stop(process)
        listener.close()
    assert (tmp_path / "out.ndjson").read_text().count("\n") == 2


def test_no_watchdog_pings_when_the_watchdog_is_for_another_process(tmp_path, short_dir):
    name = str(short_dir / "notify")
    listener = Listener(name)
    process = _daemon(tmp_path, {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"})
    try:
        listener.until(lambda m: "READY" in m, 30)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            listener.next(0.2)
        assert not [m for _, m in listener.messages if "WATCHDOG" in m]
    finally:
        assert _stop(process) == 0
        listener.close()


def test_without_notify_socket_the_daemon_runs_as_before(tmp_path):
    process = _daemon(tmp_path, {"NOTIFY_SOCKET": "", "WATCHDOG_USEC": "1000000"})
    deadline = time.monotonic() + 30
    out = tmp_path / "out.ndjson"
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.1)
    assert _stop(process) == 0
    assert out.read_text().count("\n") == 2


def test_a_wedged_main_loop_stops_the_watchdog_pings(tmp_path, short_dir, monkeypatch):
    """The pings must prove the main loop runs: while it hangs (here in
    _save_state), systemd must see none, so WatchdogSec= restarts the agent."""
    name = str(short_dir / "notify")
    listener = Listener(name)
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    logs = tmp_path / "logs"
    logs.mkdir()
    config = resolve({"paths": (str(logs / "*.log"),), "state_dir": str(tmp_path / "state"),
                      "output": "null", "shutdown_timeout": 2.0}, {})
    pipeline = Pipeline(config)
    wedge, wedged, release = threading.Event(), threading.Event(), threading.Event()
    save = pipeline._save_state

    def save_state(final: bool = False) -> None:
        if wedge.is_set() and not release.is_set():
            wedged.set()
            release.wait(30)
        save(final)

    pipeline._save_state = save_state
    done: list[int] = []
    runner = threading.Thread(target=lambda: done.append(pipeline.run()))
    runner.start()
    try:
        listener.until(lambda m: "READY" in m, 30)
        for _ in range(3):
            listener.until(lambda m: "WATCHDOG" in m, 5)
        wedge.set()
        assert wedged.wait(5)
        listener.messages.clear()
        deadline = time.monotonic() + 1.5  # almost four ping intervals
        while time.monotonic() < deadline:
            listener.next(0.1)
        assert not [m for _, m in listener.messages if "WATCHDOG" in m]
        release.set()
        listener.until(lambda m: "WATCHDOG" in m, 5)  # the loop runs again: so do the pings
    finally:
        release.set()
        pipeline.stop()
        runner.join(30)
        listener.close()
    assert done == [0]


def test_notifier_units():
    assert notify_address("") is None and notify_address("relative") is None
    assert notify_address("@name") == b"\0name" and notify_address("/run/x") == "/run/x"
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, pid=2) is None
    off = Notifier({"WATCHDOG_USEC": "2000000"})
    assert not off.enabled and off.watchdog is None and not off.send("READY=1")
    assert off.wait_bound(1.0) == 1.0
    assert Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "600000"}).wait_bound(1.0) == 0.3
    # A socket nobody listens on: the agent goes on.
    nobody = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"})
    assert not nobody.send("READY=1")
    nobody.close()
    assert status_line(3, 12_500_000, 1200) == "shipping: 3 files, spool 12.5 MB, 1200 acked"
    assert status_line(1, None, 0) == "shipping: 1 file, 0 acked"


# -- credentials ---------------------------------------------------------------

def _credentials(tmp_path: Path, **files: str) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir()
    for name, text in files.items():
        (directory / name.replace("_", "-")).write_text(text)
    return directory


def test_the_api_key_comes_from_the_credentials_directory(tmp_path):
    directory = _credentials(tmp_path, es_api_key="c2VjcmV0OmtleQ==\n")
    config = resolve({}, {"CREDENTIALS_DIRECTORY": str(directory)})
    assert config.api_key.reveal() == "c2VjcmV0OmtleQ=="
    assert config.origins["api_key"] == f"credential {directory / 'es-api-key'}"
    assert config.password is None


def test_a_key_file_or_variable_wins_over_the_credential(tmp_path):
    directory = _credentials(tmp_path, es_api_key="from-credential")
    key_file = tmp_path / "key"
    key_file.write_text("from-file")
    env = {"CREDENTIALS_DIRECTORY": str(directory)}
    assert resolve({"api_key_file": str(key_file)}, env).api_key.reveal() == "from-file"
    assert resolve({}, {**env, "MODELSCRIBE_API_KEY": "from-env"}).api_key.reveal() == "from-env"


def test_the_password_comes_from_the_credentials_directory(tmp_path):
    directory = _credentials(tmp_path, es_password="s3cret", es_api_key="")
    env = {"CREDENTIALS_DIRECTORY": str(directory)}
    config = resolve({"username": "shipper"}, env)
    assert config.password.reveal() == "s3cret" and config.api_key is None  # empty credential: not given
    with pytest.raises(ConfigError, match=r"\$CREDENTIALS_DIRECTORY/es-password needs --username"):
        resolve({}, env)


def test_empty_or_absent_credentials_are_not_given(tmp_path):
    directory = _credentials(tmp_path, es_api_key=" \n")
    config = resolve({}, {"CREDENTIALS_DIRECTORY": str(directory)})
    assert config.api_key is None and config.password is None


def test_a_missing_credentials_directory_is_a_config_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=rf"\$CREDENTIALS_DIRECTORY {missing}: not a directory"):
        resolve({}, {"CREDENTIALS_DIRECTORY": str(missing)})


def test_check_config_names_the_credential_and_masks_it(tmp_path):
    directory = _credentials(tmp_path, es_api_key="very-secret-key")
    done = subprocess.run([sys.executable, "-m", "agent", "check", "config", "--state-dir", str(tmp_path / "s"),
                           "--path", str(tmp_path / "*.log")],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CREDENTIALS_DIRECTORY": str(directory)})
    assert done.returncode == 0, done.stderr
    assert "very-secret-key" not in done.stdout + done.stderr
    assert f"(credential {directory / 'es-api-key'})" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "agent", "check", "config"], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "CREDENTIALS_DIRECTORY": str(tmp_path / "gone")})
    assert missing.returncode == 2
    assert "$CREDENTIALS_DIRECTORY" in missing.stderr and "gone" in missing.stderr
