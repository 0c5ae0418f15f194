"""Fixtures of the alerting tests: templates on the real node and seeded scenarios.

pytest runs with ``--import-mode=importlib``: this directory is put on
``sys.path`` so the tests can import ``alerting_scenarios`` (a name no other test directory uses).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import alerting_scenarios as scenarios  # noqa: E402

from agent.alerting.rules import check_fields  # noqa: E402
from agent.setup.templates import install_templates  # noqa: E402

PATTERN = "metrics-modelscribe-*"


@pytest.fixture
def templates(es: Any) -> None:
    """modelscribe's templates on the node (idempotent: unchanged after the first test)."""
    missing = check_fields()
    # Unmapped (dynamic: false) fields are not searchable: every rule would
    # silently see nothing. Say which field is missing instead.
    assert not missing, f"fields used by the rules are not in agent/schema/fields.yml: {missing}"
    install_templates(es.request)


@pytest.fixture
def seed(es: Any, templates: None) -> Callable[[list[scenarios.Doc]], None]:
    """seed(docs): empty the metrics data streams, then index `docs` and refresh."""

    def put(docs: list[scenarios.Doc]) -> None:
        es.delete_index(PATTERN)
        lines = []
        for stream, doc in docs:
            lines.append(orjson.dumps({"create": {"_index": stream}}))
            lines.append(orjson.dumps(doc))
        status, resp = es.request("POST", "/_bulk?refresh=true", b"\n".join(lines) + b"\n")
        assert status == 200 and not resp["errors"], resp
        assert es.count(PATTERN) == len(docs)

    return put


@pytest.fixture
def now() -> datetime:
    return scenarios.now_minute()
