"""Fixtures of the tailing tests.

pytest runs with ``--import-mode=importlib``, which does not put test
directories on ``sys.path``; the shared helpers in ``tailkit.py`` are made
importable here.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


class ListHandler(logging.Handler):
    """Collects the agent's own log records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.WARNING) -> list[str]:
        return [record.getMessage() for record in self.records if record.levelno >= level]

    def fields(self, message: str) -> list[dict]:
        return [getattr(record, "kv", {}) for record in self.records if record.getMessage() == message]


@pytest.fixture
def agent_log():
    """The agent's log records (works whether or not selflog.configure ran)."""
    logger = logging.getLogger("modelscribe")
    handler = ListHandler()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)
