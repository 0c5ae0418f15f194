"""A payload a parser kept in extra because it did not fit its field
(``extra["http.request.body"]``, ``extra["gen_ai.prompt"]``) is stripped like
the payload fields, and its text cut from the message; --keep-payloads keeps it."""

from __future__ import annotations

from agent.transforms import schema
from agent.transforms.payloads import strip_payloads


def test_payload_keys_come_from_the_schema():
    assert schema.PAYLOAD_KEYS == {"gen_ai.prompt", "gen_ai.completion", "http.request.body",
                                   "http.request.body.content", "http.response.body",
                                   "http.response.body.content"}


def test_payloads_kept_in_extra_are_stripped():
    secret = "a prompt that must not ship"
    doc = {"message": f"got {secret!r}", "extra": {"gen_ai.prompt": secret, "http.request.body": ["x", {"y": 1}],
                                                 "http.request.body.content.z": 3, "keep": 1}}
    extra = doc["extra"]
    assert strip_payloads(doc)
    assert doc["extra"] == {"keep": 1} and secret not in doc["message"]
    assert extra["gen_ai.prompt"] == secret  # (the parser's dict is not changed in place)
    only = {"message": "m", "extra": {"http.response.body": "b"}}
    assert strip_payloads(only) and "extra" not in only


def test_nothing_to_strip_in_extra():
    doc = {"message": "m", "extra": {"gen_ai": "x", "http.request": "y"}}
    assert not strip_payloads(doc) and doc["extra"] == {"gen_ai": "x", "http.request": "y"}
