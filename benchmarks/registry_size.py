#!/usr/bin/env python3
"""What the files the registry remembers cost the daemon: memory and CPU.

A registry of N entries is written first (files rotated away, half of them
deleted, last seen within the past six days: what a week of rotations leaves
under the default ``--state-ttl 7d``), then ``modelscribe run`` (``--output
null``) tails one file that gets about 50 lines a second for 30 s. Prints,
per N, the agent's RSS at the end and its CPU over those 30 s. Audit 5 saw
the registry grow by one entry a second under 20 files rotated every 20 s.

``--tree DIR`` runs the agent of another checkout too (a git worktree of an
older commit), interleaved, to compare.

    python3 benchmarks/registry_size.py --entries 0,20000,100000
    python3 benchmarks/registry_size.py --entries 100000 --tree /tmp/oldtree
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> int:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS"))
    return int(line.split()[1]) // 1024


def registry(path: Path, logs: Path, entries: int) -> None:
    now, rng = time.time(), random.Random(1)
    rows = [{"key": hashlib.sha1(str(i).encode()).hexdigest()[:16], "path": f"{logs}/svc{i % 20:03d}/app.{i}.log",
             "dev": 2049, "inode": 50_000_000 + i, "fp_len": 58, "fp_hash": hashlib.md5(str(i).encode()).hexdigest(),
             "generation": 0, "offset": 30000, "updated": now - rng.uniform(0, 6 * 86400), "gone": i % 2 == 0}
            for i in range(entries)]
    path.write_text(json.dumps({"version": 1, "entries": rows}))
    path.chmod(0o600)


def measure(tree: Path, entries: int, seconds: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="modelscribe-bench-registry-"))
    try:
        logs, state = work / "logs", work / "state"
        logs.mkdir()
        state.mkdir(mode=0o700)
        registry(state / "registry.json", logs, entries)
        live = logs / "live.log"
        live.write_text('{"message":"x"}\n')
        with open(work / "agent.log", "wb") as log:
            agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--path", f"{logs}/**/*.log",
                                      "--output", "null", "--state-dir", str(state), "--metrics-addr", "off",
                                      "--self-metrics-interval", "off"], stdout=log, stderr=subprocess.STDOUT,
                                     cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, start_new_session=True)
        try:
            time.sleep(15)  # (start-up, the first scan)
            before, started = _cpu_seconds(agent.pid), time.monotonic()
            with open(live, "a") as handle:
                while time.monotonic() - started < seconds:
                    handle.write('{"message":"y"}\n')
                    handle.flush()
                    time.sleep(0.02)
            cpu = _cpu_seconds(agent.pid) - before
            rss = _rss_mb(agent.pid)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)
        return {"tree": str(tree), "entries": entries, "rss_mb": rss, "cpu_share_of_a_core": round(cpu / seconds, 3)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", default="0,20000,100000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tree", type=Path, default=None, help="another checkout to compare with, interleaved")
    args = parser.parse_args()
    trees = [ROOT] + ([args.tree.resolve()] if args.tree else [])
    for entries in map(int, args.entries.split(",")):
        for tree in trees:
            print(json.dumps(measure(tree, entries, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
