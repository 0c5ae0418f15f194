"""End to end against the real Elasticsearch node: the `modelscribe` command
tails real files and every line lands exactly once, with the right offset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from e2e_helpers import Daemon, es_flags, run_once, wait_for

pytestmark = pytest.mark.elasticsearch


class Writer:
    """Appends unique lines and remembers where each one starts."""

    def __init__(self) -> None:
        self.expected: dict[str, int] = {}  # message -> offset

    def append(self, path: Path, count: int, tag: str, handle=None) -> None:
        own = handle is None
        handle = handle or open(path, "ab")
        try:
            for i in range(count):
                message = f"{tag} line {i:04d} served model=resnet50 latency_ms={i % 97}"
                self.expected[message] = handle.tell()
                handle.write(message.encode() + b"\n")
                handle.flush()
        finally:
            if own:
                handle.close()


def _delivered(es, index: str) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for doc in es.search_all(index):
        seen.setdefault(doc["message"], []).append(doc["log"]["offset"])
    return seen


def _assert_exactly_once(es, index: str, writer: Writer) -> None:
    seen = _delivered(es, index)
    doubled = {m: o for m, o in seen.items() if len(o) > 1}
    assert not doubled, f"lines indexed more than once: {list(doubled)[:5]}"
    missing = set(writer.expected) - set(seen)
    assert not missing, f"{len(missing)} lines missing, e.g. {sorted(missing)[:3]}"
    unexpected = set(seen) - set(writer.expected)
    assert not unexpected, f"unexpected documents: {sorted(unexpected)[:3]}"
    wrong = {m: (seen[m][0], o) for m, o in writer.expected.items() if seen[m][0] != o}
    assert not wrong, f"wrong log.offset (got, expected): {list(wrong.items())[:3]}"


def test_appends_rotation_and_copytruncate_while_running(es_node, es, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    index = "e2e-rotation"
    writer = Writer()
    writer.append(logs / "a.log", 50, "a-before-start")
    agent = Daemon(["--path", str(logs / "*.log"), "--exclude", "*.copy", "--state-dir", str(tmp_path / "state"),
                    "--scan-interval", "1s", "--flush-interval", "200ms", *es_flags(es_node, index)],
                   tmp_path / "agent.log")
    try:
        writer.append(logs / "b.log", 40, "b-created-later")
        writer.append(logs / "c.log", 30, "c-created-later")
        writer.append(logs / "a.log", 20, "a-appended")
        wait_for(lambda: es.count(index) == len(writer.expected), 60, "the first 140 lines")

        # Rename rotation: the writer keeps its old handle for a few late lines.
        with open(logs / "a.log", "ab") as old:
            os.rename(logs / "a.log", logs / "a.log.1")
            writer.append(logs / "a.log.1", 15, "a-late-after-rename", handle=old)
        writer.append(logs / "a.log", 25, "a-new-file")

        # copytruncate: copy aside, truncate in place, keep appending.
        shutil.copy(logs / "b.log", logs / "b.log.copy")
        with open(logs / "b.log", "r+b") as handle:
            handle.truncate(0)
        writer.append(logs / "b.log", 35, "b-after-truncate")
        wait_for(lambda: es.count(index) >= len(writer.expected), 90, "every line after rotations")
    finally:
        code = agent.stop()
    assert code == 0, agent.log()
    _assert_exactly_once(es, index, writer)
    assert "truncated" in agent.log()


def test_once_twice_ships_nothing_the_second_time(es_node, es, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = Writer()
    writer.append(logs / "m.log", 300, "once")
    args = ["run", "--once", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
            *es_flags(es_node, "e2e-once")]
    first = run_once(args)
    assert first.code == 0, first.stderr
    assert es.count("e2e-once") == 300
    second = run_once(args)
    assert second.code == 0, second.stderr
    assert "events=0" in second.stderr and "duplicates=0" in second.stderr
    assert es.count("e2e-once") == 300
    _assert_exactly_once(es, "e2e-once", writer)


def test_file_identity_cases(es_node, es, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    index = "e2e-identity"
    writer = Writer()
    common = b"#" * 2000 + b"\n"  # identical first 2,000 bytes: beyond the 1,024-byte fingerprint
    for name in ("twin-1.log", "twin-2.log"):
        (logs / name).write_bytes(common)
        writer.append(logs / name, 10, name)
    writer.append(logs / "reused.log", 20, "first-generation")
    args = ["run", "--once", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
            *es_flags(es_node, index)]
    result = run_once(args)
    assert result.code == 0, result.stderr

    # Inode reuse: delete and recreate at once (the file system usually hands
    # back the same inode); a different first line makes it a different file.
    old_inode = (logs / "reused.log").stat().st_ino
    (logs / "reused.log").unlink()
    writer.append(logs / "reused.log", 12, "second-generation")
    reused = (logs / "reused.log").stat().st_ino == old_inode
    # A file renamed into the glob from outside it is read from 0; a known file
    # renamed inside the glob is not read again.
    writer.append(logs / "incoming.tmp", 7, "renamed-in")
    os.rename(logs / "incoming.tmp", logs / "moved-in.log")
    os.rename(logs / "twin-1.log", logs / "twin-1-renamed.log")
    result = run_once(args)
    assert result.code == 0, result.stderr
    seen = _delivered(es, index)
    # Each twin's 2,000-byte first line is its own document at offset 0.
    assert seen.pop("#" * 2000) == [0, 0]
    doubled = [m for m, offsets in seen.items() if len(offsets) > 1]
    assert not doubled, f"indexed twice (inode reused: {reused}): {doubled[:3]}"
    assert {m: offsets[0] for m, offsets in seen.items()} == writer.expected


def test_python_tracebacks_become_one_event_each(es_node, es, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    fixture = Path(__file__).parent / "fixtures" / "tracebacks.log"
    shutil.copy(fixture, logs / "app.log")
    result = run_once(["run", "--once", "--path", str(logs / "*.log"), "--state-dir", str(tmp_path / "state"),
                       "--partial-line-timeout", "0s", *es_flags(es_node, "e2e-tracebacks")])
    assert result.code == 0, result.stderr
    docs = es.search_all("e2e-tracebacks")
    errors = [doc for doc in docs if "Traceback" in doc["message"]]
    assert [doc["error"]["type"] for doc in errors] == ["ZeroDivisionError", "KeyError", "TypeError"]
    assert "During handling of the above exception" in errors[1]["message"]
    assert "^^^^" in errors[2]["message"]
    assert len(docs) == 6
