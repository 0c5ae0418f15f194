"""Must 3: for every fixture of every format, the document the agent makes
equals the document the pipelines make on a real ingest engine.

Each fixture is parsed twice: by the agent (``make_parser``) and raw
(``make_raw_parser``, what ``--parse-at elasticsearch`` ships); both go
through the same enrichment; the raw documents then go through the installed
entry and final pipelines of a real OpenSearch node (conftest.py). The two
must be equal field by field, apart from ``event.ingested`` and the
intentional differences of docs/pipelines.md (``pipeline_parity._accepted``).

A fixture whose raw documents name a format without a pipeline
(``WITH_PIPELINE``: today every format the agent reads) is reported as xfail
naming the format; adding a format means adding its pipeline and its name to
WITH_PIPELINE, and then every fixture of it must pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.parsing import ParseSettings
from pipeline_parity import (FIXTURES, TRANSFORMS, agent_documents, differences, fixture_files, raw_documents,
                             through_pipelines)

WITH_PIPELINE = {"json", "plain", "uvicorn", "kserve", "gunicorn", "mlflow", "triton", "torchserve", "vllm", "rayserve", "bentoml"}


def _cases() -> list[Any]:
    cases = []
    for path in fixture_files():
        name = str(path.relative_to(FIXTURES))
        if path.parent.name == "parsing":
            formats = ["auto", "json" if path.suffix == ".jsonl" else "plain"]
            if path.suffix != ".jsonl":
                formats.append("json")  # text lines under --format json: parse failures, tracebacks joined
            for fmt in formats:
                cases.append(pytest.param(path, fmt, id=f"{name}-{fmt}"))
            continue
        server = path.relative_to(FIXTURES / "servers").parts[0]
        for fmt in ("auto", server):
            cases.append(pytest.param(path, fmt, id=f"{name}-{fmt}"))
    return cases


def _raw_formats(raw: list[dict[str, Any]]) -> set[str]:
    """The formats the cluster is asked to parse (a document without
    modelscribe.raw was parsed at the edge: vLLM's payload lines)."""
    return {doc["modelscribe"]["raw"]["format"] for doc in raw if "modelscribe" in doc}


@pytest.mark.parametrize("path, fmt", _cases())
def test_agent_and_cluster_make_the_same_documents(ingest: Any, path: Path, fmt: str) -> None:
    _check(ingest, path, fmt, None)


@pytest.mark.parametrize("path", fixture_files(), ids=lambda path: str(path.relative_to(FIXTURES)))
def test_same_documents_with_the_agents_defaults(ingest: Any, path: Path) -> None:
    """--field, --label, --service-name, model from the path and host metadata
    fill what the line leaves empty, in both modes; the line's values win
    (every fixture, the server formats' too, read as auto reads them)."""
    _check(ingest, path, "auto", TRANSFORMS)


def _check(ingest: Any, path: Path, fmt: str, transforms: Any) -> None:
    settings = ParseSettings(format=fmt)
    agent = agent_documents(path, settings, transforms)
    raw = raw_documents(path, settings, transforms)
    assert len(agent) == len(raw) and agent
    assert [doc["log"]["offset"] for doc in agent] == [doc["log"]["offset"] for doc in raw]
    missing = _raw_formats(raw) - WITH_PIPELINE
    if missing:
        pytest.xfail(f"no pipeline yet for format(s) {sorted(missing)}")
    cluster = through_pipelines(ingest, raw)
    report = []
    for mine, theirs in zip(agent, cluster):
        diff = differences(mine, theirs, fmt)
        if diff:
            report.append(f"document at offset {mine['log']['offset']}:\n" + "\n".join(diff))
    assert not report, f"{path.name} ({fmt}): {len(report)} of {len(agent)} documents differ\n" + "\n".join(report)
    for doc in cluster:
        assert "raw" not in doc.get("modelscribe", {}) and doc["event"]["ingested"]
