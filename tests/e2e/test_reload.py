"""SIGHUP reloads the configuration of the real command (issue 12, item 6):
new paths and formats apply without losing or doubling a line, a broken file
is refused while shipping goes on, the log level changes, and a setting that
needs a restart is named in a warning."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

from e2e_helpers import Daemon, wait_for

WAIT = 60.0  # bound of every wait; a loaded 2-core machine, interpreter start-up included


def _docs(out: Path) -> list[dict]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def _append(path: Path, lines: list[str]) -> None:
    with open(path, "a") as handle:
        handle.write("".join(line + "\n" for line in lines))


def _json_lines(prefix: str, numbers: range) -> list[str]:
    return [json.dumps({"message": f"{prefix} {n}", "n": n}) for n in numbers]


def _start(tmp_path: Path, config_text: str) -> tuple[Daemon, Path, Path]:
    cfg = tmp_path / "agent.yml"
    cfg.write_text(config_text)
    out = tmp_path / "out.ndjson"
    daemon = Daemon(["--config", str(cfg), "--state-dir", str(tmp_path / "state"), "--output", f"file:{out}"],
                    tmp_path / "agent.log")
    return daemon, cfg, out


COMMON = "flush_interval: 0.2s\nscan_interval: 1s\n"


def test_sighup_adds_a_path_and_changes_the_format_without_losing_or_doubling_a_line(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _append(a / "x.log", _json_lines("a", range(0, 50)))
    _append(b / "y.log", [f"b {n}" for n in range(0, 20)])
    daemon, cfg, out = _start(tmp_path, COMMON + "paths: [a/*.log]\nformat: plain\n")
    try:
        wait_for(lambda: len(_docs(out)) == 50, WAIT, "a's first lines")
        cfg.write_text(COMMON + "paths: [a/*.log, b/*.log]\nformat: json\n")
        daemon.process.send_signal(signal.SIGHUP)
        # b's lines arrive only once the reader took the new settings: every line written after is read by them.
        wait_for(lambda: sum(d["log"]["file"]["path"].startswith(str(b)) for d in _docs(out)) == 20, WAIT,
                 "b's lines after the reload")
        _append(a / "x.log", _json_lines("a", range(50, 100)))
        _append(b / "y.log", [f"b {n}" for n in range(20, 40)])
        wait_for(lambda: len(_docs(out)) >= 140, WAIT, "the lines written after the reload")
    finally:
        code = daemon.stop(WAIT)
    log = daemon.log()
    assert code == 0, log
    assert "configuration reloaded" in log and "changed=--path,--format" in log, log
    docs = _docs(out)
    places = Counter((d["log"]["file"]["path"], d["log"]["offset"]) for d in docs)
    assert len(docs) == 140 and max(places.values()) == 1, "every line exactly once"
    a_docs = [d for d in docs if d["log"]["file"]["path"] == str(a / "x.log")]
    b_docs = [d for d in docs if d["log"]["file"]["path"] == str(b / "y.log")]
    assert sorted(d["message"] for d in b_docs) == sorted(f"b {n}" for n in range(40))
    before = [d for d in a_docs if d["message"].startswith("{")]  # plain: the line as written
    after = [d for d in a_docs if not d["message"].startswith("{")]  # json: the message field
    assert sorted(json.loads(d["message"])["n"] for d in before) == list(range(50))
    assert sorted(d["message"] for d in after) == sorted(f"a {n}" for n in range(50, 100))


def test_a_broken_config_on_sighup_is_refused_and_shipping_goes_on(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    _append(logs / "x.log", [f"line {n}" for n in range(10)])
    daemon, cfg, out = _start(tmp_path, COMMON + "paths: [logs/*.log]\n")
    try:
        wait_for(lambda: len(_docs(out)) == 10, WAIT, "the first lines")
        cfg.write_text(COMMON + "paths: [logs/*.log]\nfromat: json\n")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in daemon.log(), WAIT, "the refusal")
        _append(logs / "x.log", [f"line {n}" for n in range(10, 20)])
        wait_for(lambda: len(_docs(out)) == 20, WAIT, "the lines written after the refused reload")
    finally:
        code = daemon.stop(WAIT)
    log = daemon.log()
    assert code == 0, log
    errors = [line for line in log.splitlines() if "level=error" in line]
    assert len(errors) == 1 and "unknown setting 'fromat'" in errors[0] and "did you mean 'format'" in errors[0], log
    assert sorted(d["message"] for d in _docs(out)) == sorted(f"line {n}" for n in range(20))


def test_sighup_changes_the_log_level_and_names_what_needs_a_restart(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    _append(logs / "x.log", ["one"])
    daemon, cfg, out = _start(tmp_path, COMMON + "paths: [logs/*.log]\nworkers: 2\n")
    try:
        wait_for(lambda: len(_docs(out)) == 1, WAIT, "the first line")
        assert "level=debug" not in daemon.log()
        cfg.write_text(COMMON + "paths: [logs/*.log]\nworkers: 3\nlog_level: debug\nformat: plain\n")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "level=debug" in daemon.log(), WAIT, "debug lines after the reload")
        # Same file again: the restart setting is not warned about twice.
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: daemon.log().count("configuration reloaded") == 2, WAIT, "the second reload")
        _append(logs / "x.log", ["two"])
        wait_for(lambda: len(_docs(out)) == 2, WAIT, "a line after the reloads")
    finally:
        code = daemon.stop(WAIT)
    log = daemon.log()
    assert code == 0, log
    warnings = [line for line in log.splitlines() if "needs a restart" in line]
    assert len(warnings) == 1 and "settings=--workers" in warnings[0], log
    assert "new tail settings taken" in log  # the reader's debug line, at the new level
    assert [d["message"] for d in _docs(out)] == ["one", "two"]
