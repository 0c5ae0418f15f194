"""Privacy, first step: payload stripping.

Guarantee: payload fields (``schema.PAYLOAD_FIELDS``: prompts, completions,
request and response bodies, also where a parser kept one in ``extra``
because it did not fit its field: ``schema.PAYLOAD_KEYS``) are removed unless
--keep-payloads; their text is also cut out of ``message`` and
``event.original`` (as written, JSON-quoted or Python-repr-quoted), so the
prompt of an LLM server's "Received request" line does not survive in the
line itself. The event is tagged ``payload_removed`` (by the caller).

Nothing here changes a nested dict or list in place: the parser's record may
share them. Changed containers are copied along the changed path only.
"""

from __future__ import annotations

from typing import Any

import orjson

from agent.transforms import schema


def _quoted_forms(text: str) -> list[str]:
    """How a payload appears inside a log line: JSON- and repr-quoted, and bare when long."""
    forms = ['"' + orjson.dumps(text).decode()[1:-1] + '"', repr(text)]
    if len(text) >= 16:
        forms.append(text)
        forms.append(orjson.dumps(text).decode()[1:-1])
    return forms


def _cut(text: Any, payloads: list[str]) -> Any:
    if type(text) is not str:
        return text
    for payload in payloads:
        for form in _quoted_forms(payload):
            if form and form in text:
                text = text.replace(form, "[REMOVED:payload]")
    return text


def _as_text(value: Any) -> str:
    """How a non-string payload (a JSON body kept as an object) was written in the line."""
    if type(value) is str:
        return value
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        try:
            return str(value)
        except Exception:
            return ""


def has_body(http: dict[str, Any]) -> bool:
    request, response = http.get("request"), http.get("response")
    return (type(request) is dict and "body" in request) or (type(response) is dict and "body" in response)


_BELOW_PAYLOAD = tuple(key + "." for key in sorted(schema.PAYLOAD_KEYS))


def strip_payloads(doc: dict[str, Any]) -> bool:
    """Remove the payload fields of ``doc`` (top level changed in place). True if any was there.

    A payload a parser kept in ``extra`` because it did not fit its field
    (``extra["http.request.body"]``, ``extra["gen_ai.prompt"]``: the keys of
    ``schema.PAYLOAD_KEYS``, and keys below them when one of those is there)
    is removed too."""
    removed: list[str] = []
    gen_ai = doc.get("gen_ai")
    if type(gen_ai) is dict and ("prompt" in gen_ai or "completion" in gen_ai):
        kept = dict(gen_ai)
        for key in ("prompt", "completion"):
            value = kept.pop(key, None)
            if value is not None:
                removed.append(value)
        doc["gen_ai"] = kept
    http = doc.get("http")
    if type(http) is dict and has_body(http):
        new_http = None
        for side in ("request", "response"):
            part = http.get(side)
            if type(part) is dict:
                body = part.get("body")
                if type(body) is dict and "content" in body:
                    new_body = dict(body)
                    value = new_body.pop("content")
                    if value is not None:
                        removed.append(value)
                    new_part = dict(part)
                    new_part["body"] = new_body
                    if new_http is None:
                        new_http = dict(http)
                    new_http[side] = new_part
        if new_http is not None:
            doc["http"] = new_http
    extra = doc.get("extra")
    if type(extra) is dict and not schema.PAYLOAD_KEYS.isdisjoint(extra):
        kept_extra = {}
        for key, value in extra.items():
            if key in schema.PAYLOAD_KEYS or key.startswith(_BELOW_PAYLOAD):
                if value is not None:
                    removed.append(value)
                    if type(value) is list:  # (two values of one key, see json_fit.keep)
                        removed.extend(value)
            else:
                kept_extra[key] = value
        if kept_extra:
            doc["extra"] = kept_extra
        else:
            del doc["extra"]
    if not removed:
        return False
    texts = [text for text in map(_as_text, removed) if text]
    if texts:
        doc["message"] = _cut(doc.get("message"), texts)
        event = doc.get("event")
        if type(event) is dict and type(event.get("original")) is str:
            doc["event"] = {**event, "original": _cut(event["original"], texts)}
    return True


# -- field rules -----------------------------------------------------------
