"""Everything the agent writes under its state directory is private: files
0600, directories 0700, whatever the umask. Tested on the real command: a
``--once`` run to a ``file:`` output with hashed fields (hash key), then one
to the real node with a mapping conflict (dead-letter file), and a ``dlq
replay`` that rewrites the dead-letter file, all under umask 000 so no mode
comes from the umask by luck."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from e2e_helpers import es_flags, run_once

pytestmark = pytest.mark.elasticsearch


def _modes(root: Path) -> dict[str, int]:
    modes = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            modes[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    modes["."] = stat.S_IMODE(root.stat().st_mode)
    return modes


def _run_under_umask_000(args: list[str]):
    previous = os.umask(0)  # inherited by the agent's process
    try:
        return run_once(args)
    finally:
        os.umask(previous)


def test_state_files_are_0600_and_directories_0700(es_node, es, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [{"message": f"served {i}", "latency": "slow" if i == 3 else i, "user": f"user-{i}"} for i in range(8)]
    # The last line without its newline: the clock cuts it, and the cut log is written.
    (logs / "m.log").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"message": "unfinished"}')
    state = tmp_path / "state"
    common = ["--once", "--path", str(logs / "*.log"), "--state-dir", str(state), "--hash-field", "user",
              "--partial-line-timeout", "0"]

    to_file = _run_under_umask_000(["run", *common, "--output", f"file:{tmp_path / 'out.ndjson'}"])
    assert to_file.code == 0, to_file.stderr

    status, body = es.request("PUT", "/modes-dlq", {"mappings": {"properties": {
        "extra": {"properties": {"latency": {"type": "long"}}}}}})
    assert status == 200, body
    # A second file, so the second run has something to send (the first one's offsets are saved).
    (logs / "n.log").write_text("".join(json.dumps(line) + "\n" for line in lines))
    to_node = _run_under_umask_000(["run", *common, *es_flags(es_node, "modes-dlq")])
    assert to_node.code == 4, to_node.stderr  # one document rejected: a dead letter
    # A replay that fails again rewrites the dead-letter file (temp file and rename): still 0600.
    replayed = _run_under_umask_000(["dlq", "replay", "--state-dir", str(state), *es_flags(es_node, "modes-dlq")])
    assert replayed.code == 4 and "still_rejected=1" in replayed.stdout, replayed.stdout + replayed.stderr

    modes = _modes(state)
    # What the agent keeps: every kind of state file is there to be checked.
    names = set(modes)
    for expected in ("registry.json", "cuts.json", "status.json", "agent_id", "hash_key", "dead-letter.ndjson",
                     "spool"):
        assert expected in names, sorted(names)
    assert any(name.endswith(".seg") for name in names) and any(name.endswith(".ack") for name in names), names
    wrong = {}
    for name, mode in modes.items():
        want = 0o700 if (state / name).is_dir() else 0o600
        if mode != want:
            wrong[name] = f"{mode:o} (want {want:o})"
    assert not wrong, wrong
