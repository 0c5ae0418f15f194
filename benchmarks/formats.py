#!/usr/bin/env python3
"""Lines per second per log format: parse + enrich + serialise, one core,
``--output null --no-spool`` (the agent's own work only).

For each format, the fixture files of tests/fixtures are repeated up to
--lines lines, then `modelscribe run --once --format NAME` runs pinned to
one core. Prints one JSON line per format:

    {"format": "torchserve", "lines": 200000, "seconds": ..., "lines_per_s": ..., "cpu_s_per_100k": ...}

    python3 benchmarks/formats.py --lines 200000 --repeat 3

The package is byte-compiled first, as an installed agent is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from throughput import compile_package, run_agent, summarise

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SOURCES = {
    "json": ["parsing/ecs_logging.jsonl", "parsing/python_json_logger.jsonl", "parsing/structlog.jsonl"],
    "plain": ["parsing/basicconfig_traceback.log", "parsing/asctime_chained.log"],
    "torchserve": ["servers/torchserve/access_log.log", "servers/torchserve/ts_log.log",
                   "servers/torchserve/model_metrics.log"],
    "triton": ["servers/triton/default.log", "servers/triton/iso8601.log"],
    "bentoml": ["servers/bentoml/bentoml_server.log"],
    "uvicorn": ["servers/uvicorn/uvicorn.log"],
    "kserve": ["servers/kserve/kserve.log"],
    "gunicorn": ["servers/gunicorn/access.log", "servers/gunicorn/error.log"],
    "rayserve": ["servers/rayserve/replica_default_Model.log"],
    "vllm": ["servers/vllm/v1_server.log"],
    "mlflow": ["servers/mlflow/uvicorn_serve.log"],
}


def build(directory: Path, files: list[str], lines: int) -> int:
    sample = b"".join((FIXTURES / name).read_bytes().rstrip(b"\n") + b"\n" for name in files)
    count = sample.count(b"\n")
    repeat = max(1, lines // count)
    (directory / "bench.log").write_bytes(sample * repeat)
    return count * repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--formats", default=",".join(SOURCES))
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every format this many times, interleaved, and print a summary line for each")
    args = parser.parse_args()
    compile_package()
    runs: dict[str, list[dict]] = {}
    for _ in range(max(1, args.repeat)):
        for name in args.formats.split(","):
            result = measure(name, args.lines)
            runs.setdefault(name, []).append(result)
            print(json.dumps(result), flush=True)
    if args.repeat > 1:
        for name in runs:
            print(json.dumps(summarise(runs[name])), flush=True)


def measure(name: str, lines: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"modelscribe-bench-{name}-"))
    try:
        (work / "logs").mkdir()
        total = build(work / "logs", SOURCES[name], lines)
        measured = run_agent(work / "logs", work / "state",
                             ["--output", "null", "--no-spool", "--format", name,
                              "--partial-line-timeout", "0s"], one_core=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"format": name, "lines": total, **measured, "lines_per_s": round(total / measured["seconds"]),
            "cpu_s_per_100k": round(measured["cpu_seconds"] * 100_000 / total, 3)}


if __name__ == "__main__":
    main()
