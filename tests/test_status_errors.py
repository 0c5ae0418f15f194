"""Errors the agent caught and survived show in ``modelscribe status``; so do
damaged state files and dead-letter lines that are not letters, which never
look like an empty, healthy state (audit 2 service, finding 7)."""

from __future__ import annotations

import json
import time

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
    (b'{"version": 7, "entries": []}', "damaged (unknown version 7)"),
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
