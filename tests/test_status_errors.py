"""Errors the agent caught and survived show in ``modelscribe status``; so do
damaged state files and dead-letter lines that are not letters, which never
look like an empty, healthy state (audit 2 service, finding 7)."""

from __future__ import annotations

import json
import os
import pwd
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.errors import EXIT_OK, EXIT_RUNTIME
from agent.stats import Stats, count_error
from agent.status import render, report, write_status

LETTER = ('{"@timestamp":"2026-11-27T09:00:00.000Z","target":"logs-a","_id":"id-1","status":400,'
          '"error":{"type":"document_parsing_exception","reason":"bad"},"document":{"message":"m"}}\n')


def _status(state, *flags):
    return CliRunner().invoke(main, ["status", "--state-dir", str(state), *flags], env={},
                              catch_exceptions=False, terminal_width=200)


def test_caught_errors_are_counters_of_the_status(tmp_path):
    stats = Stats()
    count_error("detector")
    count_error("watcher")
    count_error("watcher")
    write_status(str(tmp_path), time.time(), stats.snapshot(), None)
    data = report(str(tmp_path), str(tmp_path / "dead-letter.ndjson"))
    assert data["counters"]["detector_errors"] == 1
    assert data["counters"]["watcher_errors"] == 2
    assert "detector_errors=1" in render(data) and "watcher_errors=2" in render(data)


@pytest.mark.parametrize("body, error", [
    (b'{"version": 1, "entries": [{"key": "k"', "damaged (unexpected end of data"),
    (b'{"version": 1, "entries": [{"key": "k", "path": "/a.log"}]}', "damaged (entry field 'dev' is missing"),
    # Audit 11 (finding 6): "damaged (unknown version 99)" where run says "written by
    # another version of modelscribe; moved aside": after a downgrade, not damage.
    (b'{"version": 99, "entries": []}', "written by another version of modelscribe (unknown version 99)"),
])
def test_a_damaged_registry_is_an_error_naming_the_file(tmp_path, body, error):
    (tmp_path / "registry.json").write_bytes(body)
    result = _status(tmp_path)
    assert result.exit_code == EXIT_RUNTIME, result.output
    assert f"modelscribe: error: {tmp_path}/registry.json: {error}" in result.stderr
    assert "moves it aside and reads every file again from its start" in result.stderr
    assert "files: unknown (registry.json cannot be used, see the error)" in result.stdout
    assert "files (0)" not in result.stdout
    as_json = _status(tmp_path, "--json")
    assert as_json.exit_code == EXIT_RUNTIME
    data = json.loads(as_json.stdout)
    assert data["files"] is None and [p["file"] for p in data["problems"]] == [f"{tmp_path}/registry.json"]


def test_a_registry_that_is_a_directory_is_named_and_what_is_wrong(tmp_path):
    # Audit 11 (finding 6): "--state-dir ...: cannot read it: Is a directory (run
    # status as the agent's user, or root)": the state directory named, and a
    # hint to a user that root cannot follow.
    (tmp_path / "registry.json").mkdir()
    write_status(str(tmp_path), time.time(), Stats().snapshot(), None)
    result = _status(tmp_path)
    assert result.exit_code == EXIT_RUNTIME, result.output
    assert result.stderr == (f"modelscribe: error: {tmp_path}/registry.json: a directory, not the registry file: "
                             "`modelscribe run` refuses to start with it (exit code 2; move it away: the agent then "
                             "reads every file again from its start)\n")
    assert "files: unknown (registry.json cannot be used, see the error)" in result.stdout
    assert "counters: lines_read=0" in result.stdout  # (what could be read is shown)


def test_a_registry_this_user_cannot_read_names_it(tmp_path):
    # A real permission error: status as another user (tests run as root, for
    # whom permissions do not apply).
    if os.geteuid() != 0:
        pytest.skip("needs root to run status as another user")
    import shutil
    import subprocess
    import sys
    import tempfile
    base = tempfile.mkdtemp(prefix="modelscribe-status-")  # (pytest's own is 0700: nobody cannot enter)
    try:
        os.chmod(base, 0o755)
        state = os.path.join(base, "state")
        os.mkdir(state, 0o700)
        with open(os.path.join(state, "registry.json"), "w") as handle:
            handle.write('{"version": 1, "entries": []}')
        os.chmod(os.path.join(state, "registry.json"), 0o600)  # root's, as a ``sudo modelscribe run`` leaves it
        os.chown(state, 65534, 65534)
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                               "agent", "status", "--state-dir", state], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": ROOT})
    finally:
        shutil.rmtree(base)
    registry = os.path.join(state, "registry.json")
    assert done.returncode == EXIT_RUNTIME, done.stderr
    owner = pwd.getpwuid(65534).pw_name
    assert done.stderr == (f"modelscribe: error: --state-dir {state}: cannot read {registry}: Permission denied (it "
                           f"belongs to root, the state directory to {owner}: the agent cannot read it either; give "
                           f"it back: chown {owner}: {registry})\n")


ROOT = str(Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("change, error", [
    (lambda body: body[:40], "not valid JSON ("),
    (lambda body: b"[1, 2]", "not a JSON object"),
    (lambda body: body.replace(b'"version":1', b'"version":2'), "version 2, and this modelscribe reads version 1"),
    (lambda body: body.replace(b'"counters":{', b'"counters":7,"x":{'), "'counters' is missing or has the wrong type"),
])
def test_a_damaged_status_file_is_an_error_naming_the_file(tmp_path, change, error):
    write_status(str(tmp_path), time.time(), Stats().snapshot(), None)
    path = tmp_path / "status.json"
    path.write_bytes(change(path.read_bytes()))
    result = _status(tmp_path)
    assert result.exit_code == EXIT_RUNTIME, result.output
    assert f"modelscribe: error: {path}: {error}" in result.stderr
    assert "agent: unknown (status.json cannot be used, see the error)" in result.stdout
    assert "agent: not running" not in result.stdout and "agent: running" not in result.stdout


def test_dead_letter_lines_that_are_not_letters_are_shown(tmp_path):
    letters = tmp_path / "dead-letter.ndjson"
    letters.write_text(LETTER + "{not json\n" + LETTER.replace("id-1", "id-2") + '{"_id": "x"}\n')
    result = _status(tmp_path, "--dead-letter-file", str(letters))
    assert result.exit_code == EXIT_OK, result.output  # the file is readable; two lines of it are not letters
    assert f"dead letters: 2 in {letters}" in result.stdout
    assert "       2  unreadable: not dead letters, never replayed (line 2, 4)" in result.stdout
