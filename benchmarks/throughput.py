#!/usr/bin/env python3
"""Throughput, CPU and memory of `modelscribe run --once`.

Writes N JSON lines of ~300 bytes (and, for the many-files case, 1,000 files)
into a temporary directory, runs the agent pinned to one core, and prints one
JSON line per scenario:

    {"scenario": "null", "lines": 500000, "seconds": ..., "lines_per_s": ...,
     "cpu_s_per_100k": ..., "peak_rss_mb": ...}

Scenarios: ``null`` (the agent alone with its disk spool, default fsync
policy, --output null), ``null-cri`` (the JSON lines as a Kubernetes pod
log wraps them: the CRI unwrapping's cost), ``null-plain`` and ``null-torchserve`` (the same on
two text formats: Python logging lines and TorchServe's log4j lines, each
with a five-line traceback every 100 lines), ``null-nospool`` (the same without the spool: the
difference is the spool's cost), ``files1000`` (1,000 files tailed at once)
and, when ES_URL is set (eval the output of `scripts/elasticsearch-local
start`), ``elasticsearch`` (the real node, with ES_CA_CERT and
ES_API_KEY_FILE) and ``recovery`` (N lines wait in the spool while the
output is unreachable; then the time to deliver them all to the node).

    python3 benchmarks/throughput.py --lines 500000
    python3 benchmarks/throughput.py --lines 300000 --scenarios null,null-nospool --repeat 5

``--parse-at agent|elasticsearch|both`` (default agent): where lines are
parsed; ``both`` runs each one-core scenario in both modes, interleaved
(agent, elasticsearch, agent, ...), and names the results
``SCENARIO@MODE``. The issue-9 figure, parsing in the cluster:

    python3 benchmarks/throughput.py --lines 300000 --scenarios null,null-plain,null-torchserve \
        --parse-at both --repeat 3

The package is byte-compiled first, as an installed agent is.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

MODELS = ["resnet50", "bert-base", "llama-3-8b", "xgb-churn", "yolov8"]
LEVELS = ["INFO"] * 8 + ["WARNING", "ERROR"]


def json_line(rng: random.Random, i: int) -> bytes:
    record = {
        "timestamp": f"2026-11-27T12:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}Z",
        "level": rng.choice(LEVELS), "logger": "model_server.handler",
        "message": f"prediction served for request {i:08d}",
        "model": rng.choice(MODELS), "version": f"v{rng.randint(1, 9)}", "latency_ms": round(rng.random() * 90, 3),
        "status": 200, "request_id": f"{rng.getrandbits(64):016x}", "client": "10.0.0.12",
        "path": "/predictions/model", "batch_size": rng.randint(1, 32),
    }
    line = orjson.dumps(record)
    return line + b" " * max(0, 299 - len(line)) + b"\n"


_TRACEBACK = ("Traceback (most recent call last):", '  File "/srv/model/handler.py", line 88, in predict',
              "    return self.model(batch)", '  File "/srv/model/net.py", line 12, in __call__',
              "RuntimeError: CUDA out of memory")


def _stamp(i: int, sep: str, frac: str) -> str:
    return f"2026-11-27{sep}12:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}{frac}{i % 1000:03d}"


def plain_line(rng: random.Random, i: int) -> bytes:
    """Python logging's '%(asctime)s %(levelname)s %(name)s: %(message)s', a traceback
    (five more lines) after every 100th line; about the size of the JSON lines."""
    text = (f"{_stamp(i, ' ', ',')} {rng.choice(LEVELS)} model_server.handler: prediction served for request "
            f"{i:08d} model={rng.choice(MODELS)} latency_ms={rng.random() * 90:.3f} status=200 "
            f"request_id={rng.getrandbits(64):016x} client=10.0.0.12 batch_size={rng.randint(1, 32)}")
    if i % 100 == 99:
        text += "\n" + "\n".join(_TRACEBACK)
    return text.encode() + b"\n"


def torchserve_line(rng: random.Random, i: int) -> bytes:
    """TorchServe's log4j layout: MODEL_LOG lines of two workers, ACCESS_LOG and
    metrics lines; every 100th a worker's traceback, a line per frame."""
    stamp = _stamp(i, "T", ",")
    kind = i % 4
    if kind == 3:
        text = (f"{stamp} [INFO ] W-9000-{rng.choice(MODELS)}_1.0 ACCESS_LOG - /10.0.0.12:51234 "
                f'"POST /predictions/{rng.choice(MODELS)} HTTP/1.1" 200 {rng.randint(5, 90)}')
    elif kind == 2:
        text = (f"{stamp} [INFO ] W-9000-resnet50_1.0 org.pytorch.serve.wlm.WorkerThread - Backend response "
                f"time: {rng.randint(1, 90)}")
    else:
        text = (f"{stamp} [INFO ] W-900{kind}-resnet50_1.0-stdout MODEL_LOG - prediction served for request "
                f"{i:08d} latency_ms={rng.random() * 90:.3f}")
    if i % 100 == 99:
        prefix = f"{stamp} [INFO ] W-9001-resnet50_1.0-stdout MODEL_LOG - "
        text += "\n" + "\n".join(prefix + line for line in _TRACEBACK)
    return text.encode() + b"\n"


def cri_line(rng: random.Random, i: int) -> bytes:
    """The JSON corpus as a Kubernetes pod log holds it: CRI's ``<time> stdout F``
    before each line (the runtime's time a microsecond apart), every 50th line
    split by the runtime into a ``P`` part and its ``F`` end."""
    content = json_line(rng, i).rstrip(b" \n")
    stamp = f"2026-11-27T12:{(i // 60_000_000) % 60:02d}:{(i // 1_000_000) % 60:02d}.{i % 1_000_000:06d}123Z"
    if i % 50 == 49:
        half = len(content) // 2
        return (f"{stamp} stdout P ".encode() + content[:half] + b"\n" +
                f"{stamp} stdout F ".encode() + content[half:] + b"\n")
    return f"{stamp} stdout F ".encode() + content + b"\n"


CORPORA = {"json": json_line, "plain": plain_line, "torchserve": torchserve_line, "cri": cri_line}


def write_files(directory: Path, lines: int, files: int, corpus: str = "json") -> int:
    """Write about ``lines`` lines into ``files`` files; the number of lines written."""
    rng = random.Random(42)
    make = CORPORA[corpus]
    per_file = lines // files
    written = 0
    for f in range(files):
        chunks = []
        i = 0
        while i < per_file:
            chunk = make(rng, f * per_file + i)
            chunks.append(chunk)
            i += chunk.count(b"\n")
        written += i
        with open(directory / f"model-{f:04d}.log", "wb") as handle:
            handle.write(b"".join(chunks))
    return written


def compile_package() -> None:
    """Byte-compile the agent, as installing it does: with PYTHONDONTWRITEBYTECODE
    set (as on the development machine) every run would otherwise compile
    the sources again, about 0.2 s of start-up that an installed agent never pays."""
    package = Path(__file__).resolve().parent.parent / "agent"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


def summarise(runs: list[dict]) -> dict:
    """Lowest, median and highest lines/s of repeated runs of one scenario."""
    rates = sorted(run["lines_per_s"] for run in runs)
    cpu = sorted(run["cpu_s_per_100k"] for run in runs if "cpu_s_per_100k" in run)
    return {"scenario": runs[0].get("scenario") or runs[0].get("format"), "runs": len(runs),
            "lines_per_s_min": rates[0], "lines_per_s_median": rates[len(rates) // 2],
            "lines_per_s_max": rates[-1], "cpu_s_per_100k_range": [cpu[0], cpu[-1]] if cpu else None,
            "peak_rss_mb_max": max(run["peak_rss_mb"] for run in runs)}


def run_agent(log_dir: Path, state_dir: Path, extra: list[str], one_core: bool) -> dict:
    command = [sys.executable, "-m", "agent", "run", "--once", "--path", str(log_dir / "*.log"),
               "--state-dir", str(state_dir), "--log-level", "warn", *extra]

    def pin() -> None:
        if one_core:
            os.sched_setaffinity(0, {0})

    started = time.perf_counter()
    process = subprocess.Popen(command, preexec_fn=pin, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"agent exited {process.returncode}: {' '.join(command)}")
    return {"seconds": round(elapsed, 3), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def scenario(name: str, lines: int, files: int, extra: list[str], one_core: bool = True,
             corpus: str = "json") -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"modelscribe-bench-{name.replace('@', '-')}-"))
    try:
        (work / "logs").mkdir()
        total = write_files(work / "logs", lines, files, corpus)
        measured = run_agent(work / "logs", work / "state", extra, one_core)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"scenario": name, "lines": total, "files": files, **measured,
            "lines_per_s": round(total / measured["seconds"]),
            "cpu_s_per_100k": round(measured["cpu_seconds"] * 100_000 / total, 3),
            "cpu_us_per_line": round(measured["cpu_seconds"] * 1e6 / total, 2)}


def recovery(lines: int, es_extra: list[str]) -> dict:
    """Fill the spool while the output is unreachable, then time the drain."""
    work = Path(tempfile.mkdtemp(prefix="modelscribe-bench-recovery-"))
    try:
        (work / "logs").mkdir()
        write_files(work / "logs", lines, 1)
        state = work / "state"
        daemon = subprocess.Popen([sys.executable, "-m", "agent", "run", "--path", str(work / "logs" / "*.log"),
                                   "--state-dir", str(state), "--es-url", "http://127.0.0.1:9",
                                   "--index", "unreachable", "--log-level", "error", "--shutdown-timeout", "1s"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                spool = json.loads((state / "status.json").read_text()).get("spool") or {}
            except (OSError, ValueError):
                continue
            if spool.get("pending", 0) >= lines:
                break
        daemon.terminate()
        daemon.wait(60)
        spooled_mb = sum(p.stat().st_size for p in (state / "spool").glob("*.seg")) / 2**20
        (work / "logs" / "model-0000.log").unlink()  # the spool holds the only copy
        measured = run_agent(work / "logs", state, es_extra, one_core=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"scenario": "recovery", "lines_waiting": lines, "spool_mb": round(spooled_mb, 1), **measured,
            "lines_per_s": round(lines / measured["seconds"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--scenarios", default="null,null-nospool,files1000,elasticsearch,recovery")
    parser.add_argument("--parse-at", choices=("agent", "elasticsearch", "both"), default="agent",
                        help="where lines are parsed (both: each one-core scenario in both modes, interleaved)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the one-core scenarios this many times, interleaved (the machine's "
                             "noise is about 10 %%), and print a summary line for each")
    args = parser.parse_args()
    wanted = args.scenarios.split(",")
    compile_package()
    local = [("null", args.lines, 1, ["--output", "null"], "json"),
             ("null-plain", args.lines, 1, ["--output", "null"], "plain"),
             ("null-torchserve", args.lines, 1, ["--output", "null", "--format", "torchserve"], "torchserve"),
             ("null-nospool", args.lines, 1, ["--output", "null", "--no-spool"], "json"),
             ("null-cri", args.lines, 1, ["--output", "null"], "cri"),
             ("files1000", max(args.lines // 5, 100_000), 1000, ["--output", "null"], "json")]
    modes = ["agent", "elasticsearch"] if args.parse_at == "both" else [args.parse_at]
    runs: dict[str, list[dict]] = {}
    for _ in range(max(1, args.repeat)):
        for name, lines, files, extra, corpus in local:
            if name not in wanted:
                continue
            for mode in modes:  # interleaved: the machine's drift hits both modes alike
                label = name if args.parse_at == "agent" else f"{name}@{mode}"
                result = scenario(label, lines, files, extra + ["--parse-at", mode], corpus=corpus)
                runs.setdefault(label, []).append(result)
                print(json.dumps(result), flush=True)
    if args.repeat > 1 or len(modes) > 1:
        for name in runs:
            print(json.dumps(summarise(runs[name])), flush=True)
    if "elasticsearch" in wanted or "recovery" in wanted:
        url = os.environ.get("ES_URL")
        if not url:
            print(json.dumps({"scenario": "elasticsearch", "skipped": "ES_URL not set: eval "
                              "\"$(scripts/elasticsearch-local start)\" first"}), flush=True)
            return
        index = f"bench-{int(time.time())}"
        connection = ["--es-url", url]
        if os.environ.get("ES_CA_CERT"):
            connection += ["--ca-cert", os.environ["ES_CA_CERT"]]
        if os.environ.get("ES_API_KEY_FILE"):
            connection += ["--api-key-file", os.environ["ES_API_KEY_FILE"]]
        extra = connection + ["--index", index, "--workers", "2"]
        # Elasticsearch itself needs the other core: the agent is not pinned here.
        if "elasticsearch" in wanted:
            for mode in modes:
                label = "elasticsearch" if args.parse_at == "agent" else f"elasticsearch@{mode}"
                print(json.dumps({**scenario(label, args.lines, 1, extra + ["--parse-at", mode], one_core=False),
                                  "index": index}), flush=True)
        if "recovery" in wanted:
            print(json.dumps(recovery(args.lines, connection + ["--index", index + "-recovery", "--workers", "2"])),
                  flush=True)


if __name__ == "__main__":
    main()
