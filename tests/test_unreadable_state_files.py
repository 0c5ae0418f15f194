"""A state file the agent's user cannot use stops ``run`` with exit code 2,
naming the file and what to do, and is left as it is (audit 11, findings 3
and 4): a root-owned file (what a ``sudo modelscribe run`` on the service's
state directory leaves behind) was silently replaced (``agent_id``: every
document then named a new agent), moved aside as corrupt (the drift
reference), or was exit code 1 (``registry.json``), which the packaged unit
restarts every 5 s for ever.

The tests run as root, for whom permissions do not apply: the agent runs as
``nobody`` here (``setpriv``), as the packaged service runs as ``modelscribe``."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agent.errors import EXIT_CONFIG, EXIT_OK

ROOT = str(Path(__file__).resolve().parents[1])
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the agent as another user")


@pytest.fixture
def base():
    path = Path(tempfile.mkdtemp(prefix="modelscribe-perms-"))  # (pytest's own is 0700: nobody cannot enter)
    path.chmod(0o755)
    (path / "logs").mkdir(mode=0o755)
    with open(path / "logs" / "app.log", "w") as handle:
        for i in range(100):
            handle.write(json.dumps({"model_name": "m1", "request_id": f"r{i}", "prediction": i % 3,
                                     "features": {"a": i % 7}, "latency_ms": i % 50}) + "\n")
    (path / "logs" / "app.log").chmod(0o644)
    (path / "health.yml").write_text("health: {window: 60, lateness: 30, reference_size: 50}\n")
    (path / "health.yml").chmod(0o644)
    (path / "state").mkdir(mode=0o700)
    (path / "out").mkdir(mode=0o700)
    os.chown(path / "state", NOBODY, NOBODY)
    os.chown(path / "out", NOBODY, NOBODY)
    yield path
    shutil.rmtree(path)


def _run_as_nobody(base: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-m", "agent", "run",
         "--once", "--config", str(base / "health.yml"), "--path", str(base / "logs" / "*.log"),
         "--state-dir", str(base / "state"), "--output", f"file:{base / 'out' / 'out.ndjson'}",
         "--metrics-addr", "off"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})


def _listing(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*"))
            if path.is_file() and path.name not in ("status.json", "lock")}


@pytest.mark.parametrize("name, what", [
    ("agent_id", "the agent id"),
    ("registry.json", "the registry"),
    ("health/reference.json", "the drift reference"),
])
def test_a_root_owned_state_file_stops_run_with_exit_code_2_and_is_kept(base, name, what):
    first = _run_as_nobody(base)
    assert first.returncode == EXIT_OK, first.stderr
    state = base / "state"
    path = state / name
    assert path.is_file()
    os.chown(path, 0, 0)  # mode 0600 already: what a ``sudo modelscribe run`` leaves
    before = _listing(state)
    done = _run_as_nobody(base)
    nobody = pwd.getpwuid(NOBODY).pw_name
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"modelscribe: error: cannot read {what} {path}: Permission denied (it belongs to root, and the agent runs "
        f"as {nobody}: give it back, chown {nobody}: {path}; the file is left as it is)")
    assert _listing(state) == before  # nothing replaced, nothing moved aside
    os.chown(path, NOBODY, NOBODY)  # what the message says: given back, the agent carries on with it
    again = _run_as_nobody(base)
    assert again.returncode == EXIT_OK, again.stderr
    assert "level=warn" not in again.stderr, again.stderr
    assert path.read_bytes() == before[name] or name == "registry.json"  # (the registry is saved again)


@pytest.mark.parametrize("name, what, instead", [
    ("agent_id", "the agent id", "the agent then makes a new id"),
    ("registry.json", "the registry", "the agent then reads every file again from its start"),
    ("health/reference.json", "the drift reference", "the references are then collected again"),
])
def test_a_directory_in_place_of_a_state_file_stops_run_with_exit_code_2(base, name, what, instead):
    # Audit 11 (finding 4): exit code 1 (a restart loop under systemd) for
    # agent_id ("cannot write ...: Is a directory") and registry.json.
    first = _run_as_nobody(base)
    assert first.returncode == EXIT_OK, first.stderr
    path = base / "state" / name
    path.unlink()
    path.mkdir()
    os.chown(path, NOBODY, NOBODY)
    done = _run_as_nobody(base)
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert done.stderr.splitlines()[-1] == (f"modelscribe: error: cannot read {what} {path}: it is a directory, not "
                                            f"a file (move it away: {instead})")
    assert path.is_dir() and not list(path.parent.glob("*.corrupt-*"))
