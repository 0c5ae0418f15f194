#!/usr/bin/env python3
"""How long the daemon takes to ship N files found at start-up.

N files of 2 JSON lines each, in 100 directories, tailed with one ``**``
glob by ``modelscribe run`` (the daemon, ``--output file:``, ``--close-inactive
10s``), with the open-file soft limit raised to ``--nofile`` (the budget is
that less 256). Prints one JSON line every 10 s (lines shipped so far, open
files, the agent's CPU seconds in those 10 s) and a summary: the seconds
until every line was shipped, or how many were still missing at
``--timeout``. Audit 4 found reading nearly stopped at 20,000 files (a full
registry save for each new file's first lines).

With ``--write-seconds S``, then one more file is written at about 100 lines
a second for S seconds while the N files stay open (give ``--close-inactive
5m``), and the agent's CPU over that time is printed: what one busy file
costs beside many idle ones (audit 4: 49 % of a core with 10,000 open).

    python3 benchmarks/many_files.py --files 20000 --nofile 20000
    python3 benchmarks/many_files.py --files 10000 --close-inactive 5m --write-seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _shipped(out: Path) -> int:
    try:
        with open(out, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def _busy_file(work: Path, pid: int, seconds: float) -> dict:
    """One file written at about 100 lines/s beside the others: the agent's CPU meanwhile."""
    live = work / "logs" / "live.log"
    before, started, written = _cpu_seconds(pid), time.monotonic(), 0
    with open(live, "a") as handle:
        while time.monotonic() - started < seconds:
            handle.write(f'{{"message": "busy {written}"}}\n')
            handle.flush()
            written += 1
            time.sleep(0.01)
    spent = _cpu_seconds(pid) - before
    return {"lines": written, "seconds": seconds, "agent_cpu_percent_of_a_core": round(100 * spent / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--nofile", type=int, default=20000, help="open-file soft (and hard) limit for the agent")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--close-inactive", default="10s")
    parser.add_argument("--write-seconds", type=float, default=0.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelscribe-many-"))
    try:
        for number in range(args.files):
            directory = work / "logs" / f"d{number % 100:03d}" / "sub"
            directory.mkdir(parents=True, exist_ok=True)
            (directory / f"f{number:05d}.log").write_text(
                f'{{"message": "line a of {number}"}}\n{{"message": "line b of {number}"}}\n')
        expected = 2 * args.files
        out = work / "out.ndjson"

        def limits() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))

        command = [sys.executable, "-m", "agent", "run", "--path", str(work / "logs" / "**" / "*.log"),
                   "--output", f"file:{out}", "--state-dir", str(work / "state"), "--close-inactive", args.close_inactive,
                   "--metrics-addr", "off", "--self-metrics-interval", "off", "--log-level", "warn"]
        agent = subprocess.Popen(command, preexec_fn=limits, stderr=open(work / "agent.log", "wb"))
        started, last_cpu, done_at, shipped = time.monotonic(), 0.0, None, 0
        try:
            while time.monotonic() - started < args.timeout:
                time.sleep(10)
                shipped, cpu = _shipped(out), _cpu_seconds(agent.pid)
                print(json.dumps({"t": round(time.monotonic() - started), "shipped": shipped,
                                  "open_fds": len(os.listdir(f"/proc/{agent.pid}/fd")),
                                  "cpu_s_in_10s": round(cpu - last_cpu, 1)}), flush=True)
                last_cpu = cpu
                if shipped >= expected and done_at is None:
                    done_at = time.monotonic() - started
                    break
            shipped = _shipped(out)
            busy = _busy_file(work, agent.pid, args.write_seconds) if args.write_seconds and done_at else None
            if busy is not None:
                time.sleep(5)
                busy["shipped"] = _shipped(out) - shipped
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)
        print(json.dumps({"summary": "many files at start-up", "files": args.files, "lines": expected,
                          "shipped": shipped, "missing": expected - shipped,
                          "all_shipped_within_s": None if done_at is None else round(done_at),
                          "timeout_s": args.timeout, "one_busy_file": busy}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
