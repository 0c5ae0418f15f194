"""The loader of pipelines/*.yml: names, versioned references, tags, and
clear errors for a definition that cannot be installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from agent import __version__
from agent.setup import pipeline_defs
from agent.setup.pipeline_defs import (CUSTOM_HOOK, ENTRY, FINAL, PIPELINES_DIR, PipelineDefinitionError,
                                       load_pipelines, processors_used)


def walk(processors: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for item in processors:
        (kind, options), = item.items()
        yield kind, options
        yield from walk(options.get("on_failure", []))
        if kind == "foreach":
            yield from walk([options["processor"]])


def test_one_pipeline_per_file_under_a_versioned_name() -> None:
    bodies = load_pipelines()
    files = sorted(path.stem for path in PIPELINES_DIR.glob("*.yml"))
    assert sorted(bodies) == sorted(f"modelscribe-{name}-{__version__}" for name in files)
    assert ENTRY == f"modelscribe-entry-{__version__}" and ENTRY in bodies
    assert FINAL == f"modelscribe-final-{__version__}" and FINAL in bodies
    assert {"json", "plain"} <= set(files)


def test_deterministic() -> None:
    first, second = load_pipelines(), load_pipelines()
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert list(first) == sorted(first)
    first[ENTRY]["processors"].clear()  # a copy: the next call is not affected
    assert load_pipelines()[ENTRY]["processors"]


def test_references_are_versioned_and_resolve() -> None:
    bodies = load_pipelines()
    called = set()
    for body in bodies.values():
        for kind, options in walk(body["processors"] + body.get("on_failure", [])):
            if kind == "pipeline":
                called.add(options["name"])
    assert CUSTOM_HOOK in called
    for name in called - {CUSTOM_HOOK}:
        assert name.endswith(f"-{__version__}") and name in bodies, name


def test_every_processor_has_a_unique_tag() -> None:
    seen: set[str] = set()
    for body in load_pipelines().values():
        for kind, options in walk(body["processors"] + body.get("on_failure", [])):
            assert options.get("tag"), (kind, options)
            assert options["tag"] not in seen, options["tag"]
            seen.add(options["tag"])


def test_final_pipeline_contract() -> None:
    final = load_pipelines()[FINAL]
    first = final["processors"][0]["set"]
    assert first["field"] == "event.ingested" and "_ingest.timestamp" in first["value"]
    for body in (final, load_pipelines()[ENTRY]):  # a failure in the entry pipeline is captured too
        on_failure = {(kind, options.get("field")) for kind, options in walk(body["on_failure"])}
        # appended, never set: the line's own error.message is not overwritten
        assert ("append", "error.message") in on_failure and ("set", "error.message") not in on_failure
        assert ("set", "event.kind") in on_failure and ("append", "tags") in on_failure
        assert not any(kind in ("drop", "fail") for kind, _ in walk(body["on_failure"]))


def test_processors_used_lists_nested_ones() -> None:
    used = processors_used()
    assert ("set", "tag") in used and ("script", "source") in used
    assert ("pipeline", "on_failure") in used  # the hook's own on_failure
    assert ("json", "target_field") in used


def write(directory: Path, name: str, text: str) -> None:
    (directory / f"{name}.yml").write_text(text, encoding="utf-8")


GOOD = "description: d\nprocessors:\n  - set: {tag: a, field: x, value: 1}\n"


@pytest.mark.parametrize("text, expected", [
    ("description: d\nprocessors:\n  - set: {field: x, value: 1}\n", r"processors\[0\] \(set\) has no tag"),
    ("description: d\nprocessors:\n  - set: {tag: a, field: x, value: 1}\n  - set: {tag: a, field: y, value: 1}\n",
     r"processors\[1\] \(set, tag 'a'\): tag 'a' is used twice"),
    ("description: d\nprocessors:\n  - set: {tag: a, field: x, value: 1, on_failure: [{remove: {field: x}}]}\n",
     r"processors\[0\] \(set, tag 'a'\)\.on_failure\[0\] \(remove\) has no tag"),
    ("description: d\nprocessors:\n  - pipeline: {tag: a, name: modelscribe-nowhere}\n",
     r"calls 'modelscribe-nowhere', which is neither"),
    ("description: d\nprocessors:\n  - {set: {tag: a}, remove: {tag: b}}\n", r"processors\[0\] must be a mapping of one"),
    ("description: d\nprocessors: [\n", r"cannot be read as YAML"),
    ("processors: []\n", r"a description \(text\) is required"),
    ("description: d\nprocessors: []\nversion: 3\n", r"unknown top-level key"),
])
def test_bad_definitions_are_refused_naming_file_and_processor(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, "good", GOOD)
    write(tmp_path, "broken", text)
    with pytest.raises(PipelineDefinitionError, match=expected) as caught:
        load_pipelines(tmp_path, "9.9.9")
    assert "broken.yml" in str(caught.value)


def test_references_rewritten_for_the_version(tmp_path: Path) -> None:
    write(tmp_path, "good", GOOD)
    write(tmp_path, "caller", "description: d\nprocessors:\n  - pipeline: {tag: a, name: modelscribe-good}\n"
          "  - pipeline: {tag: b, name: modelscribe@custom}\n")
    bodies = load_pipelines(tmp_path, "9.9.9")
    assert sorted(bodies) == ["modelscribe-caller-9.9.9", "modelscribe-good-9.9.9"]
    names = [item["pipeline"]["name"] for item in bodies["modelscribe-caller-9.9.9"]["processors"]]
    assert names == ["modelscribe-good-9.9.9", "modelscribe@custom"]


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineDefinitionError, match="no pipeline definitions"):
        pipeline_defs.read_definitions(tmp_path)
