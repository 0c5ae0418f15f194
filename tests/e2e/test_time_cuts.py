"""Cuts made by the clock survive a crash (``agent.cuts``), on the real node.

A crash after an event was indexed but before the registry saved its offset
makes the agent read the event's lines again. If the clock had cut them (an
event emitted after ``--multiline-timeout``, a last line emitted without its
newline after ``--partial-line-timeout``), the lines written after the pause
would join the first part under its id, which Elasticsearch refuses as a
duplicate: they were lost. The crash is made exact here by putting the
registry back to the offset it had before the run, as a crash before its
save leaves it; then the file grows and the agent runs again. Without the
spool that is the whole story; with it, the agent resumes after what its
spool still holds, so the loss needed the acknowledged segment deleted
before the registry was saved: the spool directory is removed here too.
"""

from __future__ import annotations

import json
import shutil

import pytest

from e2e_helpers import create_index as _create, es_flags, run_once

pytestmark = [pytest.mark.elasticsearch]


SPOOL = pytest.mark.parametrize("spool", [["--no-spool"], []], ids=["memory-queue", "spool"])


def _forget_commits(state) -> None:
    """The registry as a crash before its periodic save leaves it: every offset back to 0;
    the spool's segments acknowledged and deleted."""
    shutil.rmtree(state / "spool", ignore_errors=True)
    path = state / "registry.json"
    registry = json.loads(path.read_text())
    for entry in registry["entries"]:
        entry["offset"] = 0
    path.write_text(json.dumps(registry))


def _documents(es, index: str) -> dict[int, dict]:
    docs = es.search_all(index, size=100)
    by_offset = {doc["log"]["offset"]: doc for doc in docs}
    assert len(by_offset) == len(docs), "two documents of one offset"
    return by_offset


@SPOOL
def test_a_traceback_written_after_the_timeout_is_not_lost_after_a_crash(es_node, es, tmp_path, spool):
    index = f"cuts-multiline-{len(spool)}"
    _create(es.request, index)
    log = tmp_path / "app.log"
    head = b"2026-12-04 10:00:00,000 ERROR app: request failed\n"
    log.write_bytes(head)
    state = tmp_path / "state"
    args = ["run", "--once", "--path", str(log), "--state-dir", str(state), "--format", "plain",
            *spool, *es_flags(es_node, index)]
    first = run_once(args)
    assert first.code == 0, first.stderr
    assert (state / "cuts.json").exists()
    _forget_commits(state)
    tail = (b"Traceback (most recent call last):\n"
            b'  File "/srv/model.py", line 3, in predict\n'
            b"ValueError: bad input\n")
    with log.open("ab") as handle:
        handle.write(tail)
    second = run_once(args)
    assert second.code == 0, second.stderr
    docs = _documents(es, index)
    assert sorted(docs) == [0, len(head)], docs
    assert docs[0]["message"].endswith("ERROR app: request failed") and "error" not in docs[0]
    assert docs[len(head)]["error"]["type"] == "ValueError"
    assert "line 3, in predict" in docs[len(head)]["error"]["stack_trace"]


@SPOOL
def test_the_rest_of_a_line_cut_by_the_clock_is_not_lost_after_a_crash(es_node, es, tmp_path, spool):
    index = f"cuts-partial-{len(spool)}"
    _create(es.request, index)
    log = tmp_path / "app.log"
    log.write_bytes(b"first line\npartial")
    state = tmp_path / "state"
    args = ["run", "--once", "--path", str(log), "--state-dir", str(state), "--format", "plain",
            "--partial-line-timeout", "0", *spool, *es_flags(es_node, index)]
    first = run_once(args)
    assert first.code == 0, first.stderr
    _forget_commits(state)
    with log.open("ab") as handle:
        handle.write(b" and the rest\n")
    second = run_once(args)
    assert second.code == 0, second.stderr
    docs = _documents(es, index)
    assert sorted(docs) == [0, 11, 18], docs
    assert [docs[offset]["message"] for offset in (0, 11, 18)] == ["first line", "partial", " and the rest"]
    assert "partial_line" in docs[11]["tags"]
