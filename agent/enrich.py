"""Enrichment: a parsed Record becomes a final Elasticsearch document.

Adds what every document carries (``@timestamp``, ``message``,
``log.file.path``, ``log.offset``, ``host.name``, ``agent.*``, ``tags``,
``error.message``, ``event.original`` with --keep-original), merges the
parser's fields, serialises once with orjson and derives the deterministic
document id.

Guarantee: the same (source key, offset) always yields the same ``_id``, so a
line re-sent after a crash or a retry is rejected by Elasticsearch as a
duplicate (``op_type: create``) instead of being indexed twice.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from agent import AGENT_NAME, __version__
from agent.events import Event, Record


def document_id(source_key: str, offset: int) -> str:
    """20 URL-safe characters (the length of Elasticsearch's own ids)."""
    digest = hashlib.blake2b(f"{source_key}:{offset}".encode(), digest_size=15).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def format_timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def agent_id(state_dir: str) -> str:
    """A stable id for this installation, kept in STATE_DIR/agent_id."""
    path = Path(state_dir) / "agent_id"
    try:
        existing = path.read_text(encoding="ascii").strip()
        if existing:
            return existing
    except (OSError, UnicodeDecodeError):
        pass
    new = str(uuid.uuid4())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new + "\n", encoding="ascii")
    tmp.replace(path)
    return new


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        current = into.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            _merge(current, value)
        else:
            into[key] = value


class Enricher:
    """Builds documents; one per agent, used by the reader thread only."""

    def __init__(self, host_name: str | None, agent_identifier: str, keep_original: bool) -> None:
        self._host = host_name or socket.gethostname()
        self._agent = {"name": AGENT_NAME, "type": AGENT_NAME, "version": __version__,
                       "id": agent_identifier}
        self._keep_original = keep_original

    def build(self, record: Record) -> Event:
        doc: dict[str, Any] = {}
        if record.fields:
            _merge(doc, _copy(record.fields))
        doc["@timestamp"] = format_timestamp(record.timestamp if record.timestamp is not None
                                             else record.read_time)
        doc["message"] = record.message
        log = doc.get("log")
        if not isinstance(log, dict):
            log = doc["log"] = {}
        log["file"] = {"path": record.source.path}
        log["offset"] = record.offset
        doc["host"] = {**doc["host"], "name": self._host} if isinstance(doc.get("host"), dict) \
            else {"name": self._host}
        doc["agent"] = self._agent
        if record.tags:
            doc["tags"] = list(record.tags)
        if record.error:
            error = doc.get("error")
            if isinstance(error, dict):
                error.setdefault("message", record.error)
            else:
                doc["error"] = {"message": record.error}
        if self._keep_original and record.original is not None:
            event = doc.get("event")
            if isinstance(event, dict):
                event["original"] = record.original
            else:
                doc["event"] = {"original": record.original}
        data = orjson.dumps(doc, default=str)
        return Event(record.source.key, record.offset, record.end,
                     document_id(record.source.key, record.offset), data)


def _copy(fields: dict[str, Any]) -> dict[str, Any]:
    """A copy deep enough that merging never mutates the parser's dicts."""
    return {key: _copy(value) if isinstance(value, dict) else value for key, value in fields.items()}
