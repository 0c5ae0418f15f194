#!/usr/bin/env python3
"""Write a small set of realistic model-server logs into a directory (for the
demo and for trying the agent by hand).

    python3 scripts/sample_logs.py /tmp/model-logs

Three files: ``inference.jsonl.log`` (JSON prediction records),
``worker.log`` (Python logging with a traceback) and ``access.log``
(TorchServe's access log: ``--format auto`` recognises every one).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def main(target: str) -> None:
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    with open(out / "inference.jsonl.log", "w") as handle:
        for i in range(200):
            status = 500 if i % 50 == 49 else 200
            handle.write(json.dumps({
                "timestamp": f"2026-11-27T09:{i // 60:02d}:{i % 60:02d}.{i:03d}Z",
                "level": "error" if status == 500 else "info", "logger": "serving.predict",
                "message": "prediction failed" if status == 500 else "prediction served",
                "model": "churn-xgb", "model_version": "7", "latency_ms": round(rng.uniform(2, 40), 2),
                "status": status, "request_id": f"req-{i:05d}"}) + "\n")
    with open(out / "worker.log", "w") as handle:
        handle.write("2026-11-27 09:00:00,101 INFO serving.worker: loading model resnet50 version=3\n")
        handle.write("2026-11-27 09:00:02,512 INFO serving.worker: model ready in 2411 ms\n")
        handle.write("2026-11-27 09:00:09,004 ERROR serving.worker: batch inference failed\n"
                     "Traceback (most recent call last):\n"
                     '  File "/srv/model/handler.py", line 88, in infer\n'
                     "    logits = self.model(batch)\n"
                     '  File "/srv/model/net.py", line 41, in forward\n'
                     "    return self.head(x) / temperature\n"
                     "           ~~~~~~~~~~~~~^~~~~~~~~~~~~\n"
                     "ZeroDivisionError: float division by zero\n")
        handle.write("2026-11-27 09:00:10,000 WARNING serving.worker: falling back to CPU\n")
        handle.write("2026-11-27 09:00:11,250 INFO serving.worker: batch of 32 served in 18 ms\n")
    with open(out / "access.log", "w") as handle:
        for i in range(20):
            status = 503 if i == 13 else 200
            handle.write(f'2026-11-27T09:00:{i:02d},{rng.randrange(1000):03d} - /127.0.0.1:5{i:04d} '
                         f'"POST /predictions/resnet50 HTTP/1.1" {status} {rng.randrange(5, 60)}\n')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", nargs="?", default="./sample-logs",
                        help="where to write the logs (created if missing; default ./sample-logs)")
    main(parser.parse_args().directory)
