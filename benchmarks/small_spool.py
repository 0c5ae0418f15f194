#!/usr/bin/env python3
"""How fast the agent ships through a spool smaller than a few reader groups.

N JSON lines (about 330 bytes each; about 720 bytes each once spooled) in one
file, shipped with ``--output file:`` and each ``--spool-max-bytes`` given
(``--sizes``), in two modes: ``once`` (``run --once``: seconds until it exits)
and ``daemon`` (``run``: seconds until the output holds every line; then it is
stopped with SIGTERM). Prints one JSON line per size, mode and run.

With a spool of 400 KiB the reader's groups (up to 2,048 events) fill it by
themselves: the writer waits for room at every turn. Before the fix, the
batcher then held the records it had taken for ``--flush-interval`` (1 s)
before sending them, and the paused reader looked at its file again only at
the file's next check (2 s once it stopped growing): 25,000 lines took 52 s
(``once``) and 55 s (``daemon``) against 1.3 s and 1.9 s with 4 MiB.

``--tree DIR`` runs the agent of another checkout (a git worktree of an
older commit, its C module built), to compare, interleaved with ``--repeat``.

    python3 benchmarks/small_spool.py --lines 25000 --sizes 400KiB,4MiB --repeat 2
    python3 benchmarks/small_spool.py --lines 25000 --sizes 400KiB --tree /tmp/oldtree
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from full_disk import write_corpus  # (the same corpus: about 330 bytes a line)
from many_files import _shipped as _count

ROOT = Path(__file__).resolve().parent.parent
DAEMON_LIMIT = 300.0  # seconds a daemon run may take before it is given up


def run(tree: Path, work: Path, size: str, mode: str, lines: int) -> dict:
    state, out, log = work / "state", work / "out.ndjson", work / "run.log"
    command = [sys.executable, "-m", "agent", "run", "--path", str(work / "logs" / "*.log"),
               "--state-dir", str(state), "--spool-max-bytes", size, "--output", f"file:{out}",
               "--metrics-addr", "off"] + (["--once"] if mode == "once" else [])
    started = time.monotonic()
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                                   stdout=handle, stderr=subprocess.STDOUT)
        if mode == "once":
            process.wait(timeout=600)
            seconds = time.monotonic() - started
        else:
            while _count(out) < lines and time.monotonic() - started < DAEMON_LIMIT:
                time.sleep(0.05)
            seconds = time.monotonic() - started
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
    shipped = _count(out)
    for leftover in (state, out, log):
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    return {"tree": str(tree), "spool_max_bytes": size, "mode": mode, "exit": process.returncode,
            "seconds": round(seconds, 2), "lines_shipped": shipped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=25000)
    parser.add_argument("--sizes", default="400KiB,4MiB")
    parser.add_argument("--modes", default="once,daemon")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--tree", type=Path, default=None, help="another checkout to compare with, interleaved")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelscribe-bench-small-spool-"))
    try:
        (work / "logs").mkdir()
        write_corpus(work / "logs" / "app.log", args.lines)
        trees = [ROOT] + ([args.tree.resolve()] if args.tree else [])
        for _ in range(args.repeat):
            for size in args.sizes.split(","):
                for mode in args.modes.split(","):
                    for tree in trees:
                        print(json.dumps({"lines": args.lines, **run(tree, work, size, mode, args.lines)}),
                              flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
