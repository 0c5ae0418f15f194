#!/usr/bin/env python3
"""What a dead-letter index costs when documents are refused: ``run --once``
with the dead-letter file against ``--dead-letter-index``.

N JSON lines whose ``seq`` is a number, except every 100th, a string the
node's (dynamic) long mapping refuses; shipped with ``--bulk-max-docs 200``
to the real node named by ES_URL (eval the output of
``python3 scripts/elasticsearch_local.py status --home DIR``; ES_CA_CERT and
ES_API_KEY_FILE with it). Prints one JSON line per store and tree: seconds,
exit code (4: some documents were refused, as they are here), and the
letters the run counted. Audit 7 found the index writes waited for a
refresh: 10,000 lines took 26.6 s with the index against 2.3 s with the
file.

``--tree DIR`` runs the agent of another checkout too (a git worktree of an
older commit, its C module built), interleaved with ``--repeat``.

    python3 benchmarks/dead_letter_index.py --lines 10000 --repeat 2 --tree /tmp/oldtree
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_corpus(path: Path, lines: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for n in range(1, lines + 1):
            handle.write(json.dumps({"seq": f"bad{n}" if n % 100 == 0 else n, "message": "m"}) + "\n")


def run(tree: Path, work: Path, store: str, connection: list[str]) -> dict:
    name = f"bench-dli-{uuid.uuid4().hex[:8]}"
    state = work / f"state-{name}"
    command = [sys.executable, "-m", "agent", "run", "--once", "--path", str(work / "logs" / "*.log"),
               "--state-dir", str(state), "--format", "json", "--index", name, "--bulk-max-docs", "200",
               "--metrics-addr", "off", "--self-metrics-interval", "off", *connection]
    if store == "index":
        command += ["--dead-letter-index", f"{name}-dlq"]
    started = time.monotonic()
    done = subprocess.run(command, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                          text=True, timeout=900)
    seconds = time.monotonic() - started
    counted = re.findall(r"rejected=(\d+)", done.stderr + done.stdout)
    shutil.rmtree(state, ignore_errors=True)
    return {"tree": str(tree), "store": store, "exit": done.returncode, "seconds": round(seconds, 2),
            "rejected": int(counted[-1]) if counted else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--tree", type=Path, default=None, help="another checkout to compare with, interleaved")
    args = parser.parse_args()
    url = os.environ.get("ES_URL")
    if not url:
        sys.exit("ES_URL is not set: eval the output of `python3 scripts/elasticsearch_local.py status --home DIR`")
    connection = ["--es-url", url]
    if os.environ.get("ES_CA_CERT"):
        connection += ["--ca-cert", os.environ["ES_CA_CERT"]]
    if os.environ.get("ES_API_KEY_FILE"):
        connection += ["--api-key-file", os.environ["ES_API_KEY_FILE"]]
    work = Path(tempfile.mkdtemp(prefix="modelscribe-bench-dli-"))
    try:
        (work / "logs").mkdir()
        write_corpus(work / "logs" / "app.log", args.lines)
        trees = [ROOT] + ([args.tree.resolve()] if args.tree else [])
        for _ in range(args.repeat):
            for store in ("file", "index"):
                for tree in trees:
                    print(json.dumps({"lines": args.lines, **run(tree, work, store, connection)}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
