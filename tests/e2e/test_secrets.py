"""A credential never leaves the agent except in the Authorization header.

A real daemon is given a distinctive API key in each of the three ways a user
can (``--api-key-file``, ``MODELSCRIBE_API_KEY``, systemd's
``$CREDENTIALS_DIRECTORY/es-api-key``), or as the basic-auth password
(``MODELSCRIBE_PASSWORD``), and a key file for ``--hash-field``,
with ``--log-level debug``, ``/metrics`` on a free port and an output on a
closed local port (so the events wait in the spool and the output is retried,
the code paths that log the most). The key must not appear in the process's
argv (``/proc/PID/cmdline``), its log, any file under the state directory
(spool segments and acknowledgement files included), ``status`` and
``status --json``, ``check config`` and ``/metrics``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from e2e_helpers import Daemon, run_once, wait_for

# Distinctive: no log line, path or counter could hold it by chance.
SECRET = "c2VjcmV0LXplYnJhLTRmOGE5ZC1rZXk6bXNrX3F1b2thX2E3NzE="
HASH_KEY = "hash-key-zebra-5d91c0e7-never-printed"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _given(way: str, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The flags and environment that hand the agent SECRET in ``way``."""
    if way == "file":
        key = tmp_path / "api_key"
        key.write_text(SECRET + "\n")
        key.chmod(0o600)
        return ["--api-key-file", str(key)], {}
    if way == "env":
        return [], {"MODELSCRIBE_API_KEY": SECRET}
    if way == "password":  # basic authentication: the password is the secret
        return [], {"MODELSCRIBE_USERNAME": "shipper", "MODELSCRIBE_PASSWORD": SECRET}
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "es-api-key").write_text(SECRET)
    return [], {"CREDENTIALS_DIRECTORY": str(credentials)}


def _assert_clean(text: str | bytes, where: str) -> None:
    for secret in (SECRET, HASH_KEY):
        needle = secret.encode() if isinstance(text, bytes) else secret
        assert needle not in text, f"a secret is in {where}"


@pytest.mark.parametrize("way", ["file", "env", "credentials", "password"])
def test_secrets_stay_out_of_argv_log_spool_status_check_and_metrics(tmp_path, way):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "model.log").write_text("".join(json.dumps({"message": f"predicted {i}", "user": f"u{i}"}) + "\n"
                                            for i in range(20)))
    state = tmp_path / "state"
    hash_key = tmp_path / "hash_key"
    hash_key.write_text(HASH_KEY)
    flags, env = _given(way, tmp_path)
    closed = _free_port()  # nothing listens there: every bulk request fails to connect
    metrics = _free_port()
    settings = ["--path", str(logs / "*.log"), "--state-dir", str(state), "--es-url", f"http://127.0.0.1:{closed}",
                "--hash-field", "user", "--hash-key-file", str(hash_key), "--log-level", "debug", *flags]
    previous = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # the daemon inherits the environment (Daemon takes none of its own)
    try:
        daemon = Daemon([*settings, "--metrics-addr", f"127.0.0.1:{metrics}", "--backoff-max", "0.5s",
                         "--shutdown-timeout", "1s"],
                        tmp_path / "agent.log")
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        def spooled() -> bool:
            try:
                return json.loads((state / "status.json").read_bytes())["counters"]["events_emitted"] == 20
            except (OSError, ValueError, KeyError):
                return False

        wait_for(spooled, 60, "the events in the spool")
        wait_for(lambda: "retrying" in daemon.log(), 60, "a failed request, logged")

        cmdline = Path(f"/proc/{daemon.process.pid}/cmdline").read_bytes()
        assert b"--path" in cmdline  # the right process
        _assert_clean(cmdline, "argv")

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as answer:
            body = answer.read()
        assert b"modelscribe_read_lines_total" in body
        _assert_clean(body, "/metrics")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/health", timeout=10) as answer:
            _assert_clean(answer.read(), "/health")

        for args in (["status"], ["status", "--json"]):
            shown = run_once([*args, "--state-dir", str(state)], env=env)
            assert shown.code == 0, shown.stderr
            _assert_clean(shown.stdout + shown.stderr, " ".join(args))

        checked = run_once(["check", "config", *settings], env=env)
        assert checked.code == 0, checked.stderr
        masked = "password" if way == "password" else "api_key"
        assert re.search(rf"^{masked} +\*\*\* ", checked.stdout, re.M), checked.stdout  # present, masked
        _assert_clean(checked.stdout + checked.stderr, "check config")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()[-3000:]

    log = daemon.log()
    assert "delivery failed, retrying" in log and "Connection refused" in log
    _assert_clean(log, "the agent's log")
    files = [path for path in state.rglob("*") if path.is_file()]
    assert any(path.suffix == ".seg" for path in files), files  # the events are still in the spool
    for path in files:
        _assert_clean(path.read_bytes(), str(path))


def test_a_secret_given_as_a_flag_value_is_impossible():
    """There is no flag that takes a secret: --api-key and --password do not
    exist (they would show in ps)."""
    for flag in ("--api-key", "--password", "--hash-key"):
        done = subprocess.run([sys.executable, "-m", "agent", "run", flag, SECRET], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and "No such option" in done.stderr, (flag, done.stderr)
        _assert_clean(done.stderr, f"the error for {flag}")
