"""``--dead-letter-index NAME``: dead letters kept in an Elasticsearch index
instead of the local file.

Each letter is one document, ``_id`` = the rejected document's id (so
writing a letter twice stores it once)::

    {"@timestamp": "...", "target": "logs-...", "doc_id": "...", "status": 400,
     "error": {"type": "...", "reason": "..."}, "document": "<the document as JSON text>"}

The rejected document is kept as a JSON string that is neither indexed nor
aggregatable: stored as an object it would hit the very mapping problem that
rejected it. The index is created on first use with a strict, small mapping
(``MAPPING``). An index of that name that already exists (made beforehand
for its replicas or lifecycle) gets ``MAPPING`` put on it before the first
letter: fields it lacks are added. If the node refuses that (a conflicting
mapping, e.g. letters stored there dynamically, ``doc_id`` as text), the
write raises ConfigError naming the index, the node's reason and the way
out; letters are never written into a mapping that would make them
unreadable.

A letter names its target: the event's, else the output's default target
(``write``'s ``target``), as in the file. A write does not wait for a
refresh (that held the output worker about 1 s per batch with a rejected
document): the letters are searchable within the index's refresh interval,
and ``dlq list|replay`` refresh the index before they read it.

A failure to write raises a ModelscribeError (OutputError, or that
ConfigError); ``DeadLetters`` then falls back to the file, so a letter is
never lost. Every error raised here carries the node's reason.

A replay deletes the letters that made it; those the node does not delete
(a write block: 200 with per-item 403s) are counted in the result
(``not_removed``) with a warning naming the index and the node's reason,
since they stay listed and are sent again at the next replay.

Reading (``dlq list|replay``) changes no letter: it pages on
``doc_id``, or on ``doc_id.keyword`` in an index where ``doc_id`` was mapped
dynamically (so letters stored so are still read and replayed); any other
mapping of ``doc_id`` is a ConfigError (exit code 2), since only the
user can fix it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Callable, Sequence

import orjson

from agent.enrich import format_timestamp
from agent.errors import ConfigError, ModelscribeError, OutputError, PermanentOutputError
from agent.events import Event
from agent.outputs.base import Response
from agent.outputs.dead_letter import Letter, ReplayResult, resend
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
            reason = _reason(response.body)
            if response.status == 413 and response.body is None:  # (Elasticsearch's 413 has no body)
                reason = f"request body too large ({len(body or b'')} bytes): over the node's " \
                         "http.max_content_length or a proxy's body limit"
            raise PermanentOutputError(f"dead-letter index {self.name}: {method} {path} answered HTTP "
                                       f"{response.status}: {reason}", response.status)
        return response.body

    def _ensure(self) -> None:
        if self._ready:
            return
        response = self._output.request("PUT", f"/{self.name}", orjson.dumps(
            {"settings": {"number_of_shards": 1}, "mappings": MAPPING}))
        if response.status >= 300 and "resource_already_exists_exception" not in str(response.body):
            raise PermanentOutputError(f"cannot create the dead-letter index {self.name}: HTTP "
                                       f"{response.status}: {_reason(response.body)}", response.status)
        if response.status >= 300:
            self._adopt()
        self._ready = True

    def _adopt(self) -> None:
        """Put MAPPING on an index made by someone else: without it the
        letters would be mapped dynamically (``doc_id`` as text) and could
        not be paged through, so never listed or replayed (audit 5, finding 3)."""
        response = self._output.request("PUT", f"/{self.name}/_mapping", orjson.dumps(MAPPING))
        if response.status < 300:
            return
        if response.status == 400 and _error_type(response.body) in _MAPPING_REFUSED:
            raise ConfigError(f"--dead-letter-index {self.name}: the index exists and its mapping conflicts with "
                              f"the one modelscribe needs ({_reason(response.body)}); delete it so that modelscribe "
                              f"creates it (its letters first: modelscribe dlq replay, or, if it says they cannot "
                              f"be paged through, copy them out with _reindex), or give another "
                              f"--dead-letter-index. The letters go to the dead-letter file meanwhile")
        raise PermanentOutputError(f"cannot put the mapping on the dead-letter index {self.name}: HTTP "
                                   f"{response.status}: {_reason(response.body)}", response.status)

    def write(self, rejected: Sequence[tuple[Event, ItemVerdict]], now: float, target: str) -> None:
        """``target``: the output's default one, for events that have none of their own."""
        self._ensure()
        parts = []
        for event, verdict in rejected:
            parts.append(orjson.dumps({"create": {"_id": event.doc_id}}) + b"\n")
            parts.append(orjson.dumps({
                "@timestamp": format_timestamp(now), "target": event.target or target, "doc_id": event.doc_id,
                "status": verdict.status, "error": {"type": verdict.error_type, "reason": verdict.reason},
                "document": event.data.decode("utf-8", "replace")}) + b"\n")
        body = self._request("POST", f"/{self.name}/_bulk", b"".join(parts), "application/x-ndjson")
        if isinstance(body, dict) and body.get("errors"):
            bad = [item for item in body.get("items", [])
                   if next(iter(item.values()), {}).get("status", 500) not in (200, 201, 409)]
            if bad:
                raise OutputError(f"dead-letter index {self.name} refused {len(bad)} letters: {str(bad[0])[:300]}")

    def _sort_field(self) -> str | None:
        """The field to page on, None when the index does not exist."""
        response = self._output.request("GET", f"/{self.name}/_mapping/field/doc_id")
        if response.status == 404 and _error_type(response.body) == "index_not_found_exception":
            return None
        if response.status == 404:  # a closed index, with security on (9.2.8: an empty 404): the search says why
            return "doc_id"
        if response.status >= 300:
            raise PermanentOutputError(f"cannot read the mapping of the dead-letter index {self.name}: HTTP "
                                       f"{response.status}: {_reason(response.body)}", response.status)
        mappings = next(iter(response.body.values()), {}).get("mappings", {}) if response.body else {}
        field = mappings.get("doc_id", {}).get("mapping", {}).get("doc_id")
        if field is None or field.get("type") == "keyword":
            return "doc_id"  # (unmapped: no letter yet; the sort says keyword)
        if field.get("fields", {}).get("keyword", {}).get("type") == "keyword":
            return "doc_id.keyword"  # letters mapped dynamically, before the agent adopted indices
        raise ConfigError(f"--dead-letter-index {self.name}: doc_id is mapped as {field.get('type')}, not keyword, "
                          f"so the letters cannot be paged through; copy them out (_reindex) and delete the "
                          f"index so that modelscribe creates it, or give another --dead-letter-index")

    def letters(self) -> list[Letter]:
        """Every letter in the index (paged with search_after on doc_id)."""
        found: list[Letter] = []
        field = self._sort_field()
        if field is None:
            return found
        # Letters are written without waiting for a refresh: make the last
        # ones searchable. Not fatal: the search that follows says what is wrong
        # (a closed index); without the privilege it reads what is refreshed.
        self._output.request("POST", f"/{self.name}/_refresh")
        after: list[Any] | None = None
        while True:
            query: dict[str, Any] = {"size": _PAGE,
                                     "sort": [{field: {"order": "asc", "unmapped_type": "keyword"}}]}
            if after is not None:
                query["search_after"] = after
            response = self._output.request("POST", f"/{self.name}/_search", orjson.dumps(query))
            if response.status == 404:
                return found
            if response.status >= 300:
                raise PermanentOutputError(f"cannot read the dead-letter index {self.name}: HTTP {response.status}: "
                                           f"{_reason(response.body)}", response.status)
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

    def check(self) -> tuple[str, str]:
        """``check output``'s line: whether letters can be written and read here.
        (Audit 5: a name an index template makes a data stream of refused every
        letter, all of them went to the file, and the check said "output ok".)"""
        label = "dead-letter index"
        status, closed = self._output.index_state(self.name)
        if status == 200:
            if closed:
                return label, f"FAILED: {self.name} is closed: letters go to the dead-letter file until it is " \
                              f"opened (POST /{self.name}/_open)"
            blocked = self._output.write_block(self.name)
            if blocked is not None:
                index, block, lift = blocked
                return label, f"FAILED: {self.name}: {index} refuses letters ({block}): they go to the " \
                              f"dead-letter file until the block is lifted: {lift}"
            try:
                self._sort_field()
            except ModelscribeError as error:
                return label, f"FAILED: {error}"
            return label, f"{self.name} (exists, open)"
        if status != 404:
            return label, f"{self.name} (whether it exists is unknown: HTTP {status})"
        template = self._data_stream_template()
        if template is not None:
            named = f" ({template})" if template else ""
            return label, f"FAILED: {self.name} matches an index template{named} that makes data streams, which " \
                          "refuses the letters (they would all go to the dead-letter file): give another " \
                          "--dead-letter-index"
        return label, f"{self.name} (does not exist yet; created at the first letter)"

    def _data_stream_template(self) -> str | None:
        """The name of the index template that would make a data stream of
        the index ("" when the node does not say which), None when none would.
        Elasticsearch flags it in ``_simulate_index``; OpenSearch (2.19) does
        not, so the template that matches is looked up (the highest priority
        among those whose patterns match), and its ``data_stream`` key tells."""
        simulated = self._output.request("POST", f"/_index_template/_simulate_index/{self.name}", params={
            "filter_path": "template.mappings._data_stream_timestamp"})
        body = simulated.body if simulated.status == 200 and isinstance(simulated.body, dict) else {}
        stream = ((body.get("template") or {}).get("mappings") or {}).get("_data_stream_timestamp") or {}
        if stream.get("enabled"):
            return ""
        listed = self._output.request("GET", "/_index_template")
        templates = listed.body.get("index_templates") if listed.status == 200 and isinstance(listed.body, dict) \
            else None
        matching = [(int(item.get("index_template", {}).get("priority") or 0), item.get("name", ""),
                     item.get("index_template", {})) for item in templates or []
                    if any(fnmatchcase(self.name, pattern)
                           for pattern in item.get("index_template", {}).get("index_patterns") or [])]
        if not matching:
            return None
        _, name, template = max(matching, key=lambda match: match[0])
        return str(name) if template.get("data_stream") is not None else None

    def replay(self, send: Callable[[Sequence[Event]], Response], to_index: str | None) -> ReplayResult:
        """Re-send every letter of the index; delete those that made it, keep the others."""
        letters = self.letters()
        result, keep = resend(letters, send, to_index)
        kept = {letter.doc_id for letter in keep}
        left, reason = self.delete([letter.doc_id for letter in letters if letter.doc_id not in kept])
        if not left:
            return result
        warning = (f"{left} replayed letters could not be deleted from the dead-letter index {self.name} "
                   f"({reason}): they stay listed, and the next replay sends them again (answered as "
                   f"duplicates); lift what stops the deletes (a write block: PUT /{self.name}/_settings "
                   f'{{"index.blocks.write": false}}) and replay again')
        return ReplayResult(result.indexed, result.duplicates, result.still_rejected, result.failed,
                            result.reasons, left, (warning,))

    def delete(self, doc_ids: Sequence[str]) -> tuple[int, str]:
        """Delete these letters; returns how many the node did not delete, and its first reason.
        (A letter already gone, 404, counts as deleted.)"""
        left, first = 0, ""
        for start in range(0, len(doc_ids), _PAGE):
            chunk = doc_ids[start:start + _PAGE]
            body = b"".join(orjson.dumps({"delete": {"_id": doc_id}}) + b"\n" for doc_id in chunk)
            answer = self._request("POST", f"/{self.name}/_bulk", body, "application/x-ndjson")
            if not (isinstance(answer, dict) and answer.get("errors")):
                continue
            for item in answer.get("items", []):
                result = next(iter(item.values()), {}) if isinstance(item, dict) else {}
                if result.get("status", 500) in (200, 404):
                    continue
                left += 1
                first = first or f"HTTP {result.get('status')}: {_reason(result)}"
        return left, first


# What Elasticsearch answers a mapping update that conflicts with the index's
# (9.2.8: "mapper [doc_id] cannot be changed from type [text] to [keyword]").
_MAPPING_REFUSED = ("illegal_argument_exception", "mapper_parsing_exception")


def _error_type(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("type", "")) if isinstance(error, dict) else ""


def _reason(body: Any) -> str:
    """The node's reason from an error answer (``type: reason``), else the answer itself, cut."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("reason"):
        return f"{error.get('type')}: {error['reason']}"[:300]
    return str(body)[:300]
