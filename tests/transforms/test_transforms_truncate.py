"""Oversized string fields and documents orjson cannot write as they are."""

from __future__ import annotations

import orjson

from agent.transforms import TAG_FIELD_TRUNCATED, HostInfo, Transforms, TransformSettings
from agent.transforms.truncate import cut_utf8, sanitise, truncate_fields

HOST = HostInfo(name="node-1")


def _process(doc, **settings) -> dict:
    return orjson.loads(Transforms(TransformSettings(**settings), HOST).process(doc, "/a.log", "id"))


def test_cut_on_a_character_boundary():
    assert cut_utf8("abc", 3) == "abc"
    assert cut_utf8("aé", 2) == "a"  # é is two bytes: never half of it
    assert cut_utf8("日本語", 7) == "日本"
    assert cut_utf8("🙂🙂", 7) == "🙂"


def test_long_fields_are_cut_and_tagged_but_message_and_original_are_not():
    big = "x" * 5000
    doc = {"message": big, "event": {"original": big, "dataset": "y" * 3000},
           "error": {"stack_trace": "é" * 3000}, "extra": {"list": ["z" * 2000, "short"], "n": 5},
           "tags": ["partial_line"]}
    out = _process(doc, max_field_bytes=1024, redact_defaults=False, host_metadata=False)
    assert out["message"] == big and out["event"]["original"] == big
    assert out["event"]["dataset"] == "y" * 1024
    assert out["error"]["stack_trace"] == "é" * 512
    assert out["extra"] == {"list": ["z" * 1024, "short"], "n": 5}
    assert out["tags"] == ["partial_line", TAG_FIELD_TRUNCATED]


def test_large_documents_with_small_fields_are_not_tagged():
    doc = {"message": "m", "extra": {f"k{i}": "v" * 100 for i in range(100)}}
    out = _process(doc, max_field_bytes=1024)
    assert "tags" not in out and out["extra"]["k5"] == "v" * 100


def test_default_cap_stays_under_the_lucene_term_limit():
    out = _process({"message": "m", "url": {"query": "q=" + "a" * 40000}})
    assert len(out["url"]["query"].encode()) == 32000 < 32766


def test_truncate_fields_copies_only_changed_paths():
    inner = {"a": "x" * 100}
    untouched = {"b": "short"}
    doc = {"one": inner, "two": untouched}
    new, count = truncate_fields(doc, 64)
    assert count == 1 and new["one"] == {"a": "x" * 64} and new["two"] is untouched
    assert inner == {"a": "x" * 100}


def test_documents_orjson_refuses_are_repaired():
    doc = {"message": "bad \ud800 surrogate", "extra": {"big": 2 ** 70, 7: "int key", "obj": object}}
    out = _process(doc)
    assert out["message"] == "bad ? surrogate"
    assert out["extra"]["big"] == str(2 ** 70) and out["extra"]["7"] == "int key"
    assert out["extra"]["obj"] == "<class 'object'>"


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_values_with_a_broken_str_do_not_raise():
    out = _process({"message": "m", "extra": {"x": _Unprintable()}}, redact_patterns=("email",))
    assert out["extra"] == {"x": "<_Unprintable>"}


def test_very_deep_nesting_is_cut():
    deep: dict = {"message": "m"}
    node = deep
    for _ in range(300):
        node["d"] = {}
        node = node["d"]
    data = Transforms(TransformSettings(), HOST).process(deep, "/a.log", "id")
    assert b"[depth limit]" in data


def test_sanitise_keeps_good_values():
    value = {"a": [1, 2.5, None, True, "s"], "b": {"c": "d"}}
    assert sanitise(value) == value
