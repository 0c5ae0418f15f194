"""Parity beyond the fixtures: generated JSON and plain-text lines, every
key of the catalogue with values of every type, timestamps of every form,
logging layouts and tracebacks, through both implementations."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from agent.parsing import ParseSettings, json_keys
from pipeline_parity import agent_documents, differences, raw_documents, through_pipelines

VALUES: list[Any] = [
    "x", "", "GET", "post", "predict", "/v1/models", "models/x", "200", "404", " 503 ", "12.5ms", "3 s", "7us",
    "1.5", "-2", "abc", "0000", "00ab", "10.0.0.1", "::1", "fe80::1%eth0", "2001:db8::8a2e:370:7334", "1.2.3.256",
    0, 1, 7, 200, 404, 599, 600, -1, 99, 2**40, 2**63 - 1, -2**63, 3.2, 0.5, 1e-05, 1e16, 12.0, 2.5e-7, 1714564800.123,
    True, False, None, [1, 2], {"a": 1}, {"value": 3}, [], {},
]
KEYS = list(json_keys.BUILT_IN) + [
    "message", "msg", "event", "@timestamp", "timestamp", "time", "ts", "created", "asctime",
    "level", "levelname", "severity", "logger", "logger_name", "name", "exc_info", "exception", "stack_trace",
    "log.level", "log.logger", "log", "http.request.method", "http.response.status_code", "event.duration",
    "event.outcome", "error", "error.type", "process", "user", "service.name", "labels", "log.file.path",
    "log.offset", "unknown_key", "nested.key", "agent", "tags",
]
STAMPS = ["2024-05-01T12:00:00.123Z", "2024-05-01 12:00:00,5", "2024-05-01T12:00:00+02:00",
          "2024-05-01T12:00:00.123456789-0530", "2024-13-01T00:00:00", "2024-02-30 10:00:00",
          "2024-05-01T23:59:60Z", 1714564800, 1714564800123, 1714564800123456, 1714564800123456789,
          1714564800.5, "1714564800", "1714564800.25", "yesterday", 0, -5, "", 1e20,
          # forms only Python's fromisoformat (the agent's fast path) reads
          "2024-02-27 10:36,908", "2024-02-27 10:36+01:00", "2024-02-27T10,5000000", "2024-02-27 10:36 +0100",
          "2024-02-27 10:36:00.1234567891", "2024-02-27T10:36:00.5+01:00:30", "2024-02-27T10:36:00+01:00:30.5",
          "2024-02-27T103600+0100", "2024-02-27T10:36:00 Z", "2024-02-27T10:36:00x+0100", "2024-02-27T10:36:00+24:00",
          "2024-02-27T10:36:00.+01:00", "0000-02-27T10:36:00", "2024-02-30 10:00:00+00:00", "2024-02-27T10:36:00-00:00:00.000001"]
TRACE = ("Traceback (most recent call last):\n  File \"/a.py\", line 1, in f\n    g()\n"
         "ValueError: bad value\n  more detail")


def _json_lines(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        obj: dict[str, Any] = {}
        for key in rng.sample(KEYS, rng.randint(1, 8)):
            if key in ("@timestamp", "timestamp", "time", "ts", "created", "asctime"):
                obj[key] = rng.choice(STAMPS)
            elif key in ("exc_info", "exception", "stack_trace"):
                obj[key] = rng.choice([TRACE, TRACE + "\n", "not a traceback", 5])
            else:
                obj[key] = rng.choice(VALUES)
        lines.append(json.dumps(obj))
    return lines


LEVELS = ["INFO", "ERROR", "WARNING", "DEBUG", "CRITICAL", "WARN", "info"]
LOGGERS = ["app.worker", "root", "__main__", "model.pt", "uvicorn.error", "x"]
TEXT_STAMPS = ["2024-05-01 12:00:00,123", "2024-05-01T12:00:00.123+02:00", "[2024-05-01 12:00:05 +0000]",
               "2024-05-01T12:00:00+0070", "2024-05-01T12:00:00-23:99", "2024-05-01T12:00:00+2400",
               "2024-05-01 12:00:00 +0070", "2024-12-31T23:59:60+0070",
               "2024-05-01 12:00:00", "2024-13-01 12:00:00", "2024-05-01T12:00:00Z"]


def _plain_lines(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    layouts = [
        "{ts} - {name} - {level} - {msg}", "{ts} - {level} - {name} - {msg}", "[{ts}] {level} [{name}] {msg}",
        "{ts} [{level}] {name}: {msg}", "{ts} {level} {name} {msg}", "{ts} {name:<12} {level:<8} {msg}",
        "{ts} [{name}] {level}: {msg}", "{ts} | {level:<8} | {name}:handle:42 - {msg}", "{level}:{name}:{msg}",
        "{level}:     {msg}", "{ts} {msg} {level}", "{msg}", "{ts} " + "x" * 75 + " {level} late",
        "  {{\"not\": json", "{{broken json",
    ]
    lines = []
    for _ in range(count):
        layout = rng.choice(layouts)
        lines.append(layout.format(ts=rng.choice(TEXT_STAMPS).strip("[]"), level=rng.choice(LEVELS),
                                   name=rng.choice(LOGGERS), msg=rng.choice(["started", "", "a - b - c"])))
        if rng.random() < 0.2:
            lines.extend(TRACE.split("\n"))
        if rng.random() < 0.1:
            lines.append("")
    return lines


def _compare(ingest: Any, tmp_path: Path, lines: list[str], fmt: str) -> None:
    path = tmp_path / "generated.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = ParseSettings(format=fmt)
    agent = agent_documents(path, settings)
    cluster = through_pipelines(ingest, raw_documents(path, settings))
    report = []
    for mine, theirs in zip(agent, cluster):
        diff = differences(mine, theirs, fmt)
        if diff:
            text = lines_at(lines, mine)
            report.append(f"line {text!r}:\n" + "\n".join(diff))
    assert not report, f"{len(report)} of {len(agent)} documents differ\n" + "\n\n".join(report[:15])


def lines_at(lines: list[str], doc: dict[str, Any]) -> str:
    offset = doc["log"]["offset"]
    position = 0
    for line in lines:
        if position == offset:
            return line
        position += len(line.encode()) + 1
    return "?"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_json_lines(ingest: Any, tmp_path: Path, seed: int) -> None:
    _compare(ingest, tmp_path, _json_lines(150, seed), "json")


@pytest.mark.parametrize("seed", [1, 2])
def test_generated_plain_lines(ingest: Any, tmp_path: Path, seed: int) -> None:
    _compare(ingest, tmp_path, _plain_lines(150, seed), "auto")


SECRETS = [
    '{"message": "login by alice@example.com", "level": "info", "user_agent": "curl"}',
    '{"msg": "call", "headers": {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"}}',
    "2024-05-01 12:00:00,123 - app.auth - WARNING - password reset for bob@example.org",
    "ERROR:app.auth:token Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl rejected",
    "Traceback (most recent call last):",
    '  File "/a.py", line 1, in f',
    "ValueError: no user carol@example.net",
]


def test_redacted_lines_with_the_agents_defaults(ingest: Any, tmp_path: Path) -> None:
    """Pattern redaction runs on the host before the line leaves it, in both
    modes; the cluster's parse of the redacted raw line equals the agent's."""
    from pipeline_parity import TRANSFORMS
    path = tmp_path / "secrets.log"
    path.write_text("\n".join(SECRETS) + "\n", encoding="utf-8")
    agent = agent_documents(path, ParseSettings(format="auto"), TRANSFORMS)
    assert sum("redacted" in doc.get("tags", ()) for doc in agent) == 2  # the bearer tokens (default patterns)
    cluster = through_pipelines(ingest, raw_documents(path, ParseSettings(format="auto"), TRANSFORMS))
    report = [f"offset {a['log']['offset']}:\n" + "\n".join(d) for a, c in zip(agent, cluster)
              if (d := differences(a, c))]
    assert not report, "\n".join(report)
