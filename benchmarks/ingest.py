#!/usr/bin/env python3
"""The real ingest engine's rate, with and without modelscribe's pipelines.

Starts (or reuses) the local OpenSearch node of `scripts/opensearch-local`
(the only real ingest engine that runs here: ingest-common and painless),
installs the templates and pipelines (`modelscribe setup all`), writes N JSON
lines of ~300 bytes (the corpus of ``throughput.py``), and ships them with
`modelscribe run --once` three ways, each into its own target:

- ``raw+pipelines``: ``--parse-at elasticsearch`` into ``logs-modelscribe-*``:
  the node parses every line (entry, format and final pipelines);
- ``parsed+final``: ``--parse-at agent`` into ``logs-modelscribe-*``: the agent
  parses, the node runs the final pipeline only;
- ``parsed, no pipeline``: ``--parse-at agent`` into a plain index without
  template or pipeline.

For each: the wall-clock time until every line is acknowledged (``--once``
waits for it), lines per second, the documents counted in the target after a
refresh, and those the pipelines marked ``event.kind: pipeline_error``. The
node and the agent share the machine's cores (the agent is not pinned), so
the figures are the node's rate on this machine, not the agent's.

    python3 benchmarks/ingest.py --lines 100000 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

from throughput import compile_package, write_files

ROOT = Path(__file__).resolve().parent.parent


def node() -> dict[str, str]:
    """The node's connection settings (started if it is not running)."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "opensearch_local.py"), "start"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cannot start the OpenSearch node: {done.stderr[-2000:]}")
    settings = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.startswith("ES_"):
            settings[key] = (shlex.split(value) or [""])[0]
    return settings


def request(settings: dict[str, str], path: str) -> dict:
    password = Path(settings["ES_PASSWORD_FILE"]).read_text().strip()
    auth = b64encode(f"{settings['ES_USERNAME']}:{password}".encode()).decode()
    call = urllib.request.Request(settings["ES_URL"] + path, headers={"Authorization": f"Basic {auth}"},
                                  method="POST" if path.endswith("_refresh") else "GET")
    context = ssl.create_default_context(cafile=settings["ES_CA_CERT"])
    with urllib.request.urlopen(call, context=context, timeout=60) as response:  # noqa: S310 - the local node
        return json.loads(response.read())


def ship(settings: dict[str, str], logs: Path, state: Path, target: str, parse_at: str) -> float:
    connection = ["--es-url", settings["ES_URL"], "--ca-cert", settings["ES_CA_CERT"],
                  "--username", settings["ES_USERNAME"], "--password-file", settings["ES_PASSWORD_FILE"]]
    shutil.rmtree(state, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "agent", "run", "--once", "--path", str(logs / "*.log"),
                           "--state-dir", str(state), "--log-level", "error", "--index", target,
                           "--parse-at", parse_at, "--workers", "2", *connection],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"agent exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    compile_package()
    settings = node()
    setup = subprocess.run([sys.executable, "-m", "agent", "setup", "all", "--es-url", settings["ES_URL"],
                            "--ca-cert", settings["ES_CA_CERT"], "--username", settings["ES_USERNAME"],
                            "--password-file", settings["ES_PASSWORD_FILE"]],
                           cwd=ROOT, capture_output=True, text=True, check=False)
    if setup.returncode != 0:
        raise SystemExit(f"modelscribe setup failed: {setup.stdout[-1000:]}{setup.stderr[-1000:]}")
    work = Path(tempfile.mkdtemp(prefix="modelscribe-bench-ingest-"))
    try:
        (work / "logs").mkdir()
        lines = write_files(work / "logs", args.lines, 1, "json")
        stamp = int(time.time())
        for run in range(args.repeat):
            for name, target, parse_at in (
                    ("raw+pipelines", f"logs-modelscribe-bench{stamp}r{run}", "elasticsearch"),
                    ("parsed+final", f"logs-modelscribe-bench{stamp}p{run}", "agent"),
                    ("parsed, no pipeline", f"bench-plain-{stamp}-{run}", "agent")):
                seconds = ship(settings, work / "logs", work / "state", target, parse_at)
                request(settings, f"/{target}/_refresh")
                count = request(settings, f"/{target}/_count")["count"]
                failed = request(settings, f"/{target}/_count?q=event.kind:pipeline_error")["count"]
                print(json.dumps({"variant": name, "target": target, "lines": lines, "seconds": round(seconds, 2),
                                  "lines_per_s": round(lines / seconds), "indexed": count,
                                  "pipeline_errors": failed}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
