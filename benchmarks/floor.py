#!/usr/bin/env python3
"""The least CPU any CPython implementation of two hot paths needs, per line:
what the speed targets of issues 9 and 10 are compared against.

``ship``: the work `--parse-at elasticsearch` cannot avoid for a JSON line,
and nothing else. The corpus of ``throughput.py`` (the same 300-byte JSON
lines) is read in 64 KiB chunks and split into lines; each line is decoded,
checked to be a JSON object (the raw parser must know a line is an event of
its own and not part of a traceback), given a document of the raw mode's
shape (``modelscribe.raw.format``, ``@timestamp``, ``message``,
``log.file.path``, ``log.offset``, the agent and host objects appended as
bytes serialised once) and its deterministic id (a copied blake2b state); each
chunk's documents are packed with msgpack and written to a file, which is
then read back and unpacked, as an output would. Left out, and so not
counted: multi-line grouping, redaction, the registry, acknowledgements,
fsync, threads and queues, the Event objects, batching and any output.

``health``: on the corpus of ``health.py cost`` (20 features per
prediction, 14 numeric and 6 categorical; every fourth line a label), the
least that counting them takes: each line decoded (``orjson.loads`` of the
log line itself, shorter than the document the agent decodes), then per
batch of 1,000 predictions and per feature the values picked, type-checked
and counted, numeric ones sorted once and cut at 9 reference edges (the
cheapest way we found; value by value with ``bisect`` costs more), strings
counted by a ``Counter``. Left out: latency, errors, windows, labels, quality
counts, model look-up, checkpoints. Compared with the health budget of issue
10: at most 15 % of throughput, which is 0.176 times the CPU per line of
the agent without health.

    python3 benchmarks/floor.py --lines 300000 --repeat 5

Prints one JSON line per measurement, the lowest of the repeats (the floor
is the point: noise only ever adds), pinned to one core.
"""

from __future__ import annotations

import argparse
import binascii
import bisect
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import msgpack
import orjson

from health import write_corpus
from throughput import write_files

CHUNK = 1 << 16
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def ship(log: Path, spool: Path, check_json: bool) -> tuple[int, float, float]:
    """Lines, CPU seconds to build and write the documents, CPU seconds to read them back."""
    agent = orjson.dumps({"type": "modelscribe", "version": "0.0.0", "name": "host-1",
                          "id": "00000000-0000-0000-0000-000000000000"})
    host = orjson.dumps({"name": "host-1", "hostname": "host-1"})
    tail = b',"agent":' + agent + b',"host":' + host + b"}"
    path = str(log)
    base = hashlib.blake2b(f"{path}:".encode(), digest_size=15)
    copy, digest, b64, loads, dumps, pack = (hashlib.blake2b.copy, hashlib.blake2b.digest,
                                             binascii.b2a_base64, orjson.loads, orjson.dumps, msgpack.packb)
    lines = 0
    started = time.process_time()
    fd = os.open(log, os.O_RDONLY)
    with open(spool, "wb") as out:
        position, rest = 0, b""
        while True:
            data = os.pread(fd, CHUNK, position)
            if not data:
                break
            position += len(data)
            data = rest + data
            cut = data.rfind(b"\n") + 1
            offset = position - len(data)
            rest = data[cut:]
            batch = []
            for raw in data[:cut].split(b"\n")[:-1]:
                text = raw.decode()
                if check_json and type(loads(raw)) is not dict:
                    raise SystemExit(f"not a JSON object at offset {offset}")
                hasher = copy(base)
                hasher.update(b"%d" % offset)
                doc = dumps({"modelscribe": {"raw": {"format": "json"}}, "@timestamp": "2026-11-27T12:00:00.000Z",
                             "message": text, "log": {"file": {"path": path}, "offset": offset}})
                batch.append((b64(digest(hasher), newline=False).translate(_URLSAFE), offset, doc[:-1] + tail))
                offset += len(raw) + 1
            lines += len(batch)
            out.write(pack(batch))
    os.close(fd)
    written = time.process_time() - started
    started = time.process_time()
    with open(spool, "rb") as handle:
        unpacker = msgpack.Unpacker(handle)
        read = sum(len(batch) for batch in unpacker)
    if read != lines:
        raise SystemExit(f"read back {read} documents of {lines}")
    return lines, written, time.process_time() - started


def health(corpus: Path) -> tuple[int, float, float]:
    """Lines, CPU seconds to decode them, CPU seconds to count their features."""
    raw = corpus.read_bytes().splitlines()
    loads = orjson.loads
    started = time.process_time()
    docs = [loads(line) for line in raw]
    decoded = time.process_time() - started
    features = [doc["features"] for doc in docs if "features" in doc]
    names = list(features[0])
    edges = {}  # per feature, the deciles of the first 1,000 values (the reference): 9 cuts
    for name in names:
        sample = sorted(v for row in features[:1000] if type(v := row.get(name)) is float)
        edges[name] = [sample[len(sample) * k // 10] for k in range(1, 10)] if sample else []
    numeric = {name: [0] * (len(edges[name]) + 1) for name in names}
    categories: dict[str, Counter[str]] = {name: Counter() for name in names}
    started = time.process_time()
    for first in range(0, len(features), 1000):
        batch = features[first:first + 1000]
        for name in names:
            values = [row.get(name) for row in batch]
            floats = [v for v in values if type(v) is float or type(v) is int]
            if floats:
                floats.sort()
                counts, below = numeric[name], 0
                for i, edge in enumerate(edges[name]):
                    at = bisect.bisect_right(floats, edge, below)
                    counts[i] += at - below
                    below = at
                counts[-1] += len(floats) - below
            strings = [v for v in values if type(v) is str]
            if strings:
                categories[name].update(strings)
    counted = time.process_time() - started
    total = sum(map(sum, numeric.values())) + sum(sum(c.values()) for c in categories.values())
    if total != len(features) * len(names):
        raise SystemExit(f"miscounted: {total} of {len(features) * len(names)}")
    return len(raw), decoded, counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    work = Path(tempfile.mkdtemp(prefix="modelscribe-floor-"))
    try:
        write_files(work, args.lines, 1, "json")
        log = work / "model-0000.log"
        for check_json in (False, True):
            runs = [ship(log, work / "spool.bin", check_json) for _ in range(args.repeat)]
            lines = runs[0][0]
            build = min(run[1] for run in runs) * 1e6 / lines
            read = min(run[2] for run in runs) * 1e6 / lines
            print(json.dumps({"floor": "ship", "json_check": check_json, "lines": lines,
                              "build_and_write_us_per_line": round(build, 2),
                              "read_back_us_per_line": round(read, 2),
                              "total_us_per_line": round(build + read, 2),
                              "lines_per_s_at_most": round(1e6 / (build + read)),
                              "target_us_per_line": round(1e6 / 150_000, 2)}))
        write_corpus(work / "predictions.log", args.lines)
        runs = [health(work / "predictions.log") for _ in range(args.repeat)]
        lines = runs[0][0]
        decode = min(run[1] for run in runs) * 1e6 / lines
        count = min(run[2] for run in runs) * 1e6 / lines
        print(json.dumps({"floor": "health", "lines": lines, "features": 20,
                          "decode_us_per_line": round(decode, 2), "count_us_per_line": round(count, 2),
                          "total_us_per_line": round(decode + count, 2)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
