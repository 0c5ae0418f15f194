"""``--dead-letter-index NAME``: dead letters kept in an Elasticsearch index
instead of the local file.

Each letter is one document, ``_id`` = the rejected document's id (so
writing a letter twice stores it once)::

    {"@timestamp": "...", "target": "logs-...", "doc_id": "...", "status": 400,
     "error": {"type": "...", "reason": "..."}, "document": "<the document as JSON text>"}

The rejected document is kept as a JSON string that is neither indexed nor
aggregatable: stored as an object it would hit the very mapping problem that
rejected it. The index is created on first use with a strict, small mapping.
A failure to write raises OutputError; ``DeadLetters`` then falls back to the
file, so a letter is never lost.
"""

from __future__ import annotations

from typing import Any, Sequence

import orjson

from agent.enrich import format_timestamp
from agent.errors import OutputError, PermanentOutputError
from agent.events import Event
from agent.outputs.dead_letter import Letter
from agent.outputs.retry import ItemVerdict

MAPPING = {"dynamic": "false", "properties": {
    "@timestamp": {"type": "date"}, "target": {"type": "keyword"}, "doc_id": {"type": "keyword"},
    "status": {"type": "long"}, "error": {"properties": {"type": {"type": "keyword"},
                                                         "reason": {"type": "text"}}},
    "document": {"type": "keyword", "index": False, "doc_values": False}}}
_PAGE = 1000


class IndexLetters:
    def __init__(self, output: Any, name: str) -> None:
        self._output = output  # an ElasticsearchOutput (its request() method)
        self.name = name
        self._ready = False

    @property
    def output(self) -> Any:
        return self._output

    def _request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                 params: dict[str, str] | None = None) -> Any:
        response = self._output.request(method, path, body, content_type, params)
        if response.status >= 300:
            raise PermanentOutputError(f"dead-letter index {self.name}: {method} {path} answered HTTP "
                                       f"{response.status}: {str(response.body)[:300]}")
        return response.body

    def _ensure(self) -> None:
        if self._ready:
            return
        response = self._output.request("PUT", f"/{self.name}", orjson.dumps(
            {"settings": {"number_of_shards": 1}, "mappings": MAPPING}))
        if response.status >= 300 and "resource_already_exists_exception" not in str(response.body):
            raise PermanentOutputError(f"cannot create the dead-letter index {self.name}: HTTP "
                                       f"{response.status}: {str(response.body)[:300]}")
        self._ready = True

    def write(self, rejected: Sequence[tuple[Event, ItemVerdict]], now: float) -> None:
        self._ensure()
        parts = []
        for event, verdict in rejected:
            parts.append(orjson.dumps({"create": {"_id": event.doc_id}}) + b"\n")
            parts.append(orjson.dumps({
                "@timestamp": format_timestamp(now), "target": event.target or "", "doc_id": event.doc_id,
                "status": verdict.status, "error": {"type": verdict.error_type, "reason": verdict.reason},
                "document": event.data.decode("utf-8", "replace")}) + b"\n")
        body = self._request("POST", f"/{self.name}/_bulk", b"".join(parts), "application/x-ndjson",
                             {"refresh": "wait_for"})
        if isinstance(body, dict) and body.get("errors"):
            bad = [item for item in body.get("items", [])
                   if next(iter(item.values()), {}).get("status", 500) not in (200, 201, 409)]
            if bad:
                raise OutputError(f"dead-letter index {self.name} refused {len(bad)} letters: {str(bad[0])[:300]}")

    def letters(self) -> list[Letter]:
        """Every letter in the index (paged with search_after on doc_id)."""
        found: list[Letter] = []
        after: list[Any] | None = None
        while True:
            query: dict[str, Any] = {"size": _PAGE, "sort": [{"doc_id": "asc"}]}
            if after is not None:
                query["search_after"] = after
            response = self._output.request("POST", f"/{self.name}/_search", orjson.dumps(query))
            if response.status == 404:
                return found
            if response.status >= 300:
                raise PermanentOutputError(f"cannot read the dead-letter index {self.name}: HTTP {response.status}")
            hits = response.body["hits"]["hits"]
            for number, hit in enumerate(hits, len(found) + 1):
                source = hit["_source"]
                error = source.get("error") or {}
                found.append(Letter(number, str(source.get("@timestamp", "")), str(source.get("target", "")),
                                    str(source.get("doc_id", hit["_id"])), int(source.get("status", 0)),
                                    str(error.get("type")), str(error.get("reason")),
                                    str(source.get("document", "{}")).encode()))
            if len(hits) < _PAGE:
                return found
            after = hits[-1]["sort"]

    def delete(self, doc_ids: Sequence[str]) -> None:
        for start in range(0, len(doc_ids), _PAGE):
            chunk = doc_ids[start:start + _PAGE]
            body = b"".join(orjson.dumps({"delete": {"_id": doc_id}}) + b"\n" for doc_id in chunk)
            self._request("POST", f"/{self.name}/_bulk", body, "application/x-ndjson", {"refresh": "wait_for"})
