"""scripts/sample_logs.py, the demo's logs: every line is one the agent parses
(its access log was in no supported format: 20 of the demo's documents went
out as bare messages), and --help does not become a directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_logs_are_all_parsed(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "sample_logs.py"), str(tmp_path / "logs")], check=True)
    out = tmp_path / "out.ndjson"
    env = dict(os.environ, MODELSCRIBE_METRICS_ADDR="off")
    subprocess.run([sys.executable, "-m", "agent", "run", "--once", "--path", str(tmp_path / "logs" / "*.log"),
                    "--state-dir", str(tmp_path / "state"), "--output", f"file:{out}", "--log-level", "error"],
                   check=True, cwd=ROOT, env=env, timeout=120)
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    by_file: dict[str, list[dict]] = {}
    for doc in docs:
        by_file.setdefault(Path(doc["log"]["file"]["path"]).name, []).append(doc)
    access = by_file["access.log"]
    assert len(access) == 20 and all(d["model"]["server"] == "torchserve" for d in access)
    assert sorted(d["http"]["response"]["status_code"] for d in access)[-1] == 503
    assert len(by_file["inference.jsonl.log"]) == 200 and all("model" in d for d in by_file["inference.jsonl.log"])
    assert any(d.get("error", {}).get("type") == "ZeroDivisionError" for d in by_file["worker.log"])
    assert not [d for d in docs if "parse_failure" in d.get("tags", [])]


def test_help_is_help(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "sample_logs.py"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    assert "usage:" in done.stdout and not (tmp_path / "--help").exists()
