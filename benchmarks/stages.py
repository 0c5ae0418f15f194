#!/usr/bin/env python3
"""Where the CPU of `modelscribe run --once` goes: by thread and by stage.

Writes N JSON lines of ~300 bytes (the corpus of ``throughput.py``), then
runs the agent in a child process pinned to one core, with ``--output null``
and the spool on, in which timers wrap the reader thread's stages:

- ``reader``: ``LineReader.feed`` (bytes to lines);
- ``parse``: ``SourceParser.feed_batch`` (grouping; the raw JSON check);
- ``enrich``: ``Enricher.build_all`` (documents and ids);
- ``scan``: ``_Templates.scan`` (the redaction prefilter, once per read);
- ``sink``: ``Sink.extend`` (all of the above but the reader, and the hand-over).

and, as the run ends, reads each thread's user and system CPU time from
``/proc/self/task``. Prints one JSON line per run: the stages' seconds and
µs per line, and each thread's CPU µs per line (the main thread's includes
start-up). The timers add a little to the stages they wrap.

    python3 benchmarks/stages.py --lines 300000 --parse-at elasticsearch --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from throughput import write_files

_CHILD = r'''
import json, os, sys, threading, time
from agent import enrich, sink
from agent.parsing import driver
from agent.sources import reader

spent = {}

def timed(cls, name, label):
    inner = getattr(cls, name)
    spent[label] = 0.0
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - started
    setattr(cls, name, wrapper)

timed(reader.LineReader, "feed", "reader")
timed(driver.SourceParser, "feed_batch", "parse")
timed(enrich.Enricher, "build_all", "enrich")
timed(enrich._Templates, "scan", "scan")
timed(sink.Sink, "extend", "sink")

threads = {}  # task id -> CPU seconds, at its latest sample
names = {}  # task id -> thread name (kept once a thread has ended)
tick = os.sysconf("SC_CLK_TCK")

def sample():
    names.update((str(thread.native_id), thread.name) for thread in threading.enumerate())
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            fields = open(f"/proc/{os.getpid()}/task/{task}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        threads[task] = (int(fields[11]) + int(fields[12])) / tick

joining = threading.Thread.join
def join(self, *args, **kwargs):  # the agent's threads end by being joined: sample each before
    sample()
    return joining(self, *args, **kwargs)
threading.Thread.join = join

import atexit
atexit.register(lambda: print(json.dumps({"stages": spent, "threads": {names.get(task, task): seconds
                                                                         for task, seconds in threads.items()}}),
                              file=sys.stderr))
from agent.cli import entry
sys.argv = ["modelscribe", *sys.argv[1:]]
entry()
'''


def run(lines: int, parse_at: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="modelscribe-bench-stages-"))
    try:
        (work / "logs").mkdir()
        total = write_files(work / "logs", lines, 1, "json")
        command = [sys.executable, "-c", _CHILD, "run", "--once", "--path", str(work / "logs" / "*.log"),
                   "--state-dir", str(work / "state"), "--log-level", "error", "--output", "null",
                   "--parse-at", parse_at]
        done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
                              preexec_fn=lambda: os.sched_setaffinity(0, {0}), check=False)
        if done.returncode != 0:
            raise SystemExit(f"agent exited {done.returncode}: {done.stderr[-2000:]}")
        report = json.loads(done.stderr.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_line = 1e6 / total
    return {"lines": total, "parse_at": parse_at,
            "stages_s": {name: round(seconds, 3) for name, seconds in report["stages"].items()},
            "stages_us_per_line": {name: round(seconds * per_line, 2) for name, seconds in report["stages"].items()},
            "threads_cpu_us_per_line": {name: round(seconds * per_line, 2)
                                        for name, seconds in report["threads"].items() if seconds}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--parse-at", choices=("agent", "elasticsearch"), default="elasticsearch")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.repeat):
        print(json.dumps(run(args.lines, args.parse_at)), flush=True)


if __name__ == "__main__":
    main()
