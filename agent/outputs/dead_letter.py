"""The dead-letter file: documents the output refused for good.

Format: NDJSON, one object per rejected document, appended and fsynced
before the document is acknowledged (so its offset can advance without
losing it), file mode 0600:

    {"@timestamp": "...", "target": "logs-...", "_id": "...",
     "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "..."},
     "document": {...the document as it was sent...}}
"""

from __future__ import annotations

import os
import threading
from typing import Sequence

import orjson

from agent.enrich import format_timestamp
from agent.errors import StateError
from agent.events import Event
from agent.outputs.retry import ItemVerdict


class DeadLetters:
    def __init__(self, path: str, target: str) -> None:
        self.path = path
        self._target = target
        self._lock = threading.Lock()
        self.count = 0

    def write(self, rejected: Sequence[tuple[Event, ItemVerdict]], now: float) -> None:
        lines = []
        for event, verdict in rejected:
            lines.append(orjson.dumps({
                "@timestamp": format_timestamp(now), "target": self._target, "_id": event.doc_id,
                "status": verdict.status,
                "error": {"type": verdict.error_type, "reason": verdict.reason},
                "document": orjson.Fragment(event.data),
            }) + b"\n")
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, b"".join(lines))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as error:
                raise StateError(f"cannot write the dead-letter file {self.path}: {error.strerror}") from error
            self.count += len(rejected)
