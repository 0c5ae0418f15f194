#!/usr/bin/env python3
"""The cost of model health, and the memory of its state.

``cost`` (the issue-10 figure): ``modelscribe run --once --output null`` over
N JSON prediction lines with 20 features each (model_name, request_id,
prediction, latency_ms, features: 14 numbers and 6 categories; one label line
every 4 lines, the ground truth of a prediction 41 to 43 lines earlier), pinned to one core, with and without a ``health:`` block,
interleaved (without, with, without, ...), so both see the same machine
state. Prints one JSON line per run and a summary: median lines/s of each,
and the cost = 1 - with/without.

With ``--python-too``, a third mode runs health with its C module turned
off (``MODELSCRIBE_HEALTH_NATIVE=0``), interleaved with the other two: what
``agent/health/_native.c`` saves.

``breakdown``: where health's time goes, per event: the same corpus shipped
once to a file (``--output file:PATH``), then fed to the engine alone in
batches of 1000, as the batcher hands them, with every phase of
``HealthEngine.observe`` timed apart (``intake.select``: the prefilter, the
decoding and the extraction, whose first two are also timed on their own
under ``within_select``; ``intake.cover``; the journal; ``_apply``; the
batch's counting; a checkpoint every 10 batches) and the garbage
collector's share; then
``observe`` itself, untouched, for the total. Mirrors ``observe``'s steps:
keep it in step when they change.

``memory``: the health engine alone (no agent), fed 100 models x 50
features until every model has its reference and an open window (and, no
label ever coming, the label join full at its cap): the RSS it added and
the size of the checkpoint it writes; with ``--trace``, also the memory
Python objects hold then (``live_python_mb``: the state, measured with
tracemalloc, which slows the run and whose own bookkeeping inflates the RSS
figures of that run) and at the peak (while references are collected).

    python3 benchmarks/health.py cost --lines 200000 --repeat 3
    python3 benchmarks/health.py cost --lines 100000 --repeat 3 --python-too
    python3 benchmarks/health.py breakdown --lines 100000
    python3 benchmarks/health.py memory --models 100 --features 50
    python3 benchmarks/health.py memory --models 100 --features 50 --trace
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = 1_767_225_600.0


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_corpus(path: Path, lines: int, features: int = 20) -> None:
    rng = random.Random(1)
    countries = ["DE", "FR", "US", "IT", "ES", "NL"]
    with open(path, "w", encoding="utf-8") as handle:
        for n in range(lines):
            t = BASE + n * 0.01
            if n % 4 == 3:  # the label of a prediction 41 to 43 lines back (models 2, 1, 0 in turn)
                handle.write(json.dumps({"timestamp": _stamp(t), "request_id": f"r{n - 41 - (n // 4) % 3}",
                                         "ground_truth": rng.choice(["a", "b"])}) + "\n")
                continue
            feats = {f"num_{i}": round(rng.gauss(i, 1), 3) for i in range(features - 6)}
            feats.update({f"cat_{i}": rng.choice(countries) for i in range(6)})
            handle.write(json.dumps({"timestamp": _stamp(t), "model_name": f"model-{n % 4}", "request_id": f"r{n}",
                                     "prediction": rng.choice(["a", "b"]),
                                     "latency_ms": round(rng.expovariate(0.05), 3),
                                     "features": feats}) + "\n")


def run_once(logs: Path, state: Path, config: Path | None, env: dict[str, str] | None = None) -> dict:
    command = [sys.executable, "-m", "agent", "run", "--once", "--path", str(logs / "*.log"), "--state-dir", str(state),
               "--output", "null", "--log-level", "warn"]
    if config is not None:
        command += ["--config", str(config)]
    started = time.perf_counter()
    process = subprocess.Popen(command, preexec_fn=lambda: os.sched_setaffinity(0, {0}), cwd=ROOT,
                               stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"agent failed: {' '.join(command)}")
    return {"seconds": round(elapsed, 3), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def cost(lines: int, repeat: int, python_too: bool = False) -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "agent")], check=True)
    work = Path(tempfile.mkdtemp(prefix="modelscribe-bench-health-"))
    try:
        (work / "logs").mkdir()
        write_corpus(work / "logs" / "predictions.log", lines)
        config = work / "health.yml"
        config.write_text("health: {window: 60, lateness: 30, reference_size: 5000}\n")
        modes = ("without", "with", "with-python") if python_too else ("without", "with")
        rates: dict[str, list[float]] = {mode: [] for mode in modes}
        for run in range(repeat):
            for mode in modes:
                state = work / f"state-{mode}-{run}"
                # with-python: health's hot path in Python, its C module turned off (agent/health/native.py)
                result = run_once(work / "logs", state, None if mode == "without" else config,
                                  {"MODELSCRIBE_HEALTH_NATIVE": "0" if mode == "with-python" else "1"})
                result.update(mode=mode, run=run, lines=lines, lines_per_s=round(lines / result["seconds"]))
                rates[mode].append(result["lines_per_s"])
                print(json.dumps(result), flush=True)
                shutil.rmtree(state)
        without, with_ = statistics.median(rates["without"]), statistics.median(rates["with"])
        summary = {"summary": "health cost, 20 features per event, one core", "lines": lines, "runs": repeat,
                   "lines_per_s_without": without, "lines_per_s_with": with_,
                   "cost_percent": round(100 * (1 - with_ / without), 1),
                   "health_us_per_line": round(1e6 / with_ - 1e6 / without, 2)}
        if python_too:
            python = statistics.median(rates["with-python"])
            summary.update(lines_per_s_with_python=python, cost_percent_python=round(100 * (1 - python / without), 1),
                           health_us_per_line_python=round(1e6 / python - 1e6 / without, 2))
        print(json.dumps(summary))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def breakdown(lines: int, repeat: int) -> None:
    sys.path.insert(0, str(ROOT))
    import gc

    import orjson

    from agent.clock import FakeClock
    from agent.events import Event
    from agent.health.config import parse_health
    from agent.health import intake
    from agent.health.engine import HealthEngine

    work = Path(tempfile.mkdtemp(prefix="modelscribe-bench-health-breakdown-"))
    try:
        (work / "logs").mkdir()
        write_corpus(work / "logs" / "predictions.log", lines)
        shipped = work / "shipped.ndjson"
        subprocess.run([sys.executable, "-m", "agent", "run", "--once", "--path", str(work / "logs" / "*.log"),
                        "--state-dir", str(work / "state-ship"), "--output", f"file:{shipped}", "--log-level",
                        "error"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        data = shipped.read_bytes().splitlines()
        batches = [[Event("bench", n, n + 1, str(n), data[n]) for n in range(i, min(i + 1000, len(data)))]
                   for i in range(0, len(data), 1000)]
        settings = parse_health({"window": 60, "lateness": 30, "reference_size": 5000}, "bench: health")
        gc.collect()
        gc.freeze()  # the corpus held here is no part of an agent's heap
        gc_time = [0.0, 0.0]

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                gc_time[1] = time.perf_counter()
            else:
                gc_time[0] += time.perf_counter() - gc_time[1]

        gc.callbacks.append(on_gc)
        clock = time.perf_counter
        for run in range(repeat):
            phases = dict.fromkeys(("select", "covered", "journal", "apply", "count", "checkpoint"), 0.0)
            within_select = dict.fromkeys(("prefilter", "loads"), 0.0)  # parts of select, timed on their own
            gc_time[0] = 0.0
            engine = HealthEngine(settings, str(work / f"state-{run}"), None, {"name": "bench"}, FakeClock())
            for i, batch in enumerate(batches):
                heads = engine._prefilter
                t = clock()
                kept = [e for e in batch if any(head in e.data for head in heads)]
                within_select["prefilter"] += clock() - t
                t = clock()
                for e in kept:
                    orjson.loads(e.data)  # one document alive at a time
                within_select["loads"] += clock() - t
                t = clock()
                found, found_obs = intake.select(batch, heads, engine._extractors, engine._extractor)
                phases["select"] += clock() - t
                t = clock()
                fresh, fresh_obs = intake.cover(engine._covered, engine._pinned, found, found_obs)
                phases["covered"] += clock() - t
                t = clock()
                engine._journal(fresh)
                phases["journal"] += clock() - t
                t = clock()
                engine._apply(fresh_obs)
                phases["apply"] += clock() - t
                t = clock()
                engine._count_batch()
                phases["count"] += clock() - t
                if i % 10 == 9:
                    t = clock()
                    engine.checkpoint({})
                    phases["checkpoint"] += clock() - t
            engine.close()
            collected = gc_time[0]
            engine = HealthEngine(settings, str(work / f"state-whole-{run}"), None, {"name": "bench"}, FakeClock())
            t = clock()
            for i, batch in enumerate(batches):
                engine.observe(batch)
                if i % 10 == 9:
                    engine.checkpoint({})
            whole = clock() - t
            engine.close()
            per_event = {name: round(seconds / len(data) * 1e6, 2) for name, seconds in phases.items()}
            parts = {name: round(seconds / len(data) * 1e6, 2) for name, seconds in within_select.items()}
            print(json.dumps({"run": run, "events": len(data), "us_per_event": per_event, "within_select": parts,
                              "phases_total_us": round(sum(phases.values()) / len(data) * 1e6, 2),
                              "gc_us": round(collected / len(data) * 1e6, 2),
                              "observe_us_per_event": round(whole / len(data) * 1e6, 2),
                              "load_average": os.getloadavg()[0]}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def memory(models: int, features: int, reference_size: int, trace: bool) -> None:
    sys.path.insert(0, str(ROOT))
    import orjson

    from agent.clock import FakeClock
    from agent.events import Event
    from agent.health.config import parse_health
    from agent.health.engine import HealthEngine

    import gc
    import tracemalloc

    rng = random.Random(3)
    state = Path(tempfile.mkdtemp(prefix="modelscribe-bench-health-mem-"))
    try:
        if trace:  # (its own bookkeeping, a record per live block, inflates the RSS)
            tracemalloc.start()
        before = _rss_mb()
        settings = parse_health({"window": 60, "lateness": 30, "reference_size": reference_size,
                                 "caps": {"models": models, "features": features}}, "bench: health")
        engine = HealthEngine(settings, str(state), None, {"name": "modelscribe"}, FakeClock())
        offset = 0
        # Enough events per model to complete its reference, spread over two windows.
        for n in range(reference_size + 50):
            batch = []
            for m in range(models):
                feats = {f"f{i}": (round(rng.gauss(i, 1), 3) if i % 5 else rng.choice("abcdefgh"))
                         for i in range(features)}
                data = orjson.dumps({"@timestamp": _stamp(BASE + n * 90 / reference_size),
                                     "model": {"name": f"model-{m}", "request_id": f"{m}-{n}",
                                               "prediction": {"value": rng.choice(["a", "b"])},
                                               "input": {"features": feats}}, "event": {"duration": 5_000_000}})
                batch.append(Event("bench", offset, offset + 1, str(offset), data))
                offset += 1
            engine.observe(batch)
            if n % 500 == 0:
                engine.checkpoint({"bench": offset})
        engine.close_due()
        engine.checkpoint({"bench": offset})
        gc.collect()
        live, traced_peak = tracemalloc.get_traced_memory() if trace else (0, 0)
        after = _rss_mb()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"models": models, "features": features, "reference_size": reference_size,
                          "open_windows": engine.windows.open_windows, "rss_before_mb": round(before, 1),
                          "rss_after_mb": round(after, 1), "state_rss_mb": round(after - before, 1),
                          **({"live_python_mb": round(live / 2**20, 1), "live_peak_mb": round(traced_peak / 2**20, 1)}
                             if trace else {}),
                          "peak_rss_mb": round(peak, 1),
                          "checkpoint_kb": round(os.path.getsize(state / "health" / "state.json") / 1024),
                          "reference_kb": round(os.path.getsize(state / "health" / "reference.json") / 1024)}))
        engine.close()
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cost")
    c.add_argument("--lines", type=int, default=200_000)
    c.add_argument("--repeat", type=int, default=3)
    c.add_argument("--python-too", action="store_true",
                   help="also run health with its C module off (MODELSCRIBE_HEALTH_NATIVE=0), interleaved")
    b = sub.add_parser("breakdown")
    b.add_argument("--lines", type=int, default=100_000)
    b.add_argument("--repeat", type=int, default=2)
    m = sub.add_parser("memory")
    m.add_argument("--models", type=int, default=100)
    m.add_argument("--features", type=int, default=50)
    m.add_argument("--reference-size", type=int, default=1000)
    m.add_argument("--trace", action="store_true",
                   help="measure the live Python memory with tracemalloc (its bookkeeping inflates the RSS figures)")
    args = parser.parse_args()
    if args.what == "cost":
        cost(args.lines, args.repeat, args.python_too)
    elif args.what == "breakdown":
        breakdown(args.lines, args.repeat)
    else:
        memory(args.models, args.features, args.reference_size, args.trace)


if __name__ == "__main__":
    main()
