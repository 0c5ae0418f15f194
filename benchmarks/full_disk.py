#!/usr/bin/env python3
"""How fast ``run --once`` ships when the disk under the spool is nearly full.

N JSON lines (about 330 bytes each) in one file, shipped with ``--output
file:`` and ``--spool-dir`` on a tmpfs of each size given (``--sizes``), so
the spool fills the disk again and again and frees it as its records are
delivered. Prints one JSON line per size and run: seconds, lines shipped,
and the disk-full warnings logged. Needs root (it mounts the tmpfs, and
unmounts it after). Audit 5 found 20,000 lines took 9.5 s with 2 MiB free and
78 s with 600 KiB (0.8 s with room): the batcher waited out --flush-interval
for records a full disk could not bring, and each halving of a group that did
not fit waited half a second.

``--tree DIR`` runs the agent of another checkout (a git worktree of an
older commit, its C module built), to compare, interleaved with ``--repeat``.

    python3 benchmarks/full_disk.py --lines 20000 --sizes 64m,2m,600k --repeat 2
    python3 benchmarks/full_disk.py --lines 20000 --sizes 2m,600k --tree /tmp/oldtree
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_corpus(path: Path, lines: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for n in range(lines):
            handle.write(json.dumps({"timestamp": f"2026-01-01T00:00:{n % 60:02d}.000Z", "model_name": "m",
                                     "request_id": f"r{n}", "latency_ms": n % 97, "message": "x" * 200}) + "\n")


def run(tree: Path, work: Path, size: str) -> dict:
    mount = work / f"spool-{size}"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    state, out, log = work / f"state-{size}", work / f"out-{size}.ndjson", work / f"run-{size}.log"
    try:
        started = time.monotonic()
        with open(log, "wb") as handle:
            done = subprocess.run([sys.executable, "-m", "agent", "run", "--once", "--path", str(work / "logs" / "*.log"),
                                   "--state-dir", str(state), "--spool-dir", str(mount / "spool"),
                                   "--output", f"file:{out}", "--metrics-addr", "off"],
                                  cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, stdout=handle,
                                  stderr=subprocess.STDOUT, timeout=600)
        seconds = time.monotonic() - started
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    text = log.read_text(errors="replace")
    shipped = sum(1 for _ in open(out, "rb")) if out.exists() else 0
    for leftover in (state, out, log, mount):
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    return {"tree": str(tree), "spool_fs": size, "exit": done.returncode, "seconds": round(seconds, 1),
            "lines_shipped": shipped, "disk_full_warnings": text.count("the disk is full")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--sizes", default="64m,2m,600k")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--tree", type=Path, default=None, help="another checkout to compare with, interleaved")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("full_disk.py mounts a tmpfs: run it as root")
    work = Path(tempfile.mkdtemp(prefix="modelscribe-bench-full-disk-"))
    try:
        (work / "logs").mkdir()
        write_corpus(work / "logs" / "app.log", args.lines)
        trees = [ROOT] + ([args.tree.resolve()] if args.tree else [])
        for _ in range(args.repeat):
            for size in args.sizes.split(","):
                for tree in trees:
                    print(json.dumps({"lines": args.lines, **run(tree, work, size)}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
