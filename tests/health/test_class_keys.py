"""Accuracy in health documents (audit 9): every (true, predicted) pair and every class has
a key of its own in ``model.accuracy.confusion`` / ``per_class`` (two class names never
share one, so the counts add up to ``n``), and labels beyond the class cap are counted in
``model.health.labels_capped``, not as unusable."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import FakeClock
from agent.events import Event
from agent.health.config import parse_health
from agent.health.documents import label_fields
from agent.health.engine import HealthEngine
from agent.health.state import LabelState

AGENT = {"name": "modelscribe", "id": "test"}
FIGURES = ("precision", "recall", "f1", "support")


def _labels(pairs: list[tuple[str, str]], max_classes: int = 100) -> LabelState:
    labels = LabelState(max_classes)
    for true, predicted in pairs:
        labels.add(true, predicted)
    return labels


def test_class_names_that_looked_alike_keep_their_own_counts():
    # The audit's case: a.b and a_b, and x__y+z against x+y__z, made 10 pairs sum to 6.
    pairs = [("a.b", "a.b")] * 3 + [("a_b", "a_b")] * 2 + [("x__y", "z")] * 4 + [("x", "y__z")]
    accuracy = label_fields(_labels(pairs), 10)["accuracy"]
    assert accuracy["n"] == 10
    assert sum(accuracy["confusion"].values()) == 10
    assert accuracy["confusion"] == {"a%2Eb__a%2Eb": 3, "a_b__a_b": 2, "x%5F%5Fy__z": 4, "x__y%5F%5Fz": 1}
    per_class = accuracy["per_class"]
    assert per_class["a%2Eb__support"] == 3 and per_class["a_b__support"] == 2
    assert sum(per_class[f"{name}__support"] for name in ("a%2Eb", "a_b", "x%5F%5Fy", "x", "y%5F%5Fz", "z")) == 10
    assert len(per_class) == 6 * len(FIGURES)


def test_usual_class_names_keep_their_keys():
    accuracy = label_fields(_labels([("cat", "dog"), ("class_1", "class_1"), ("1", "0")]), 3)["accuracy"]
    assert set(accuracy["confusion"]) == {"cat__dog", "class_1__class_1", "1__0"}
    assert {"cat__precision", "class_1__support", "0__recall"} <= set(accuracy["per_class"])


names = st.text(alphabet="ab_.%2E5F", max_size=6)


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(names, names), min_size=1, max_size=30))
def test_every_pair_and_class_has_a_key_of_its_own_and_the_counts_add_up(pairs):
    labels = _labels(pairs, max_classes=1000)
    accuracy = label_fields(labels, len(pairs))["accuracy"]
    assert len(accuracy["confusion"]) == len(set(pairs))
    assert sum(accuracy["confusion"].values()) == accuracy["n"] == len(pairs)
    classes = {name for pair in pairs for name in pair}
    assert len(accuracy["per_class"]) == len(classes) * len(FIGURES)
    assert sum(v for k, v in accuracy["per_class"].items() if k.endswith("__support")) == len(pairs)
    for key in list(accuracy["confusion"]) + list(accuracy["per_class"]):
        assert "." not in key  # (a dot would be a sub-object in the mapping)


def test_labels_beyond_the_class_cap_are_counted_as_capped_not_unusable():
    labels = LabelState(max_classes=3)
    assert labels.add("a", "a") is None and labels.add("b", "c") is None
    assert labels.add("d", "d") == "labels_capped"  # a fourth class
    assert labels.add(None, "a") == "labels_unusable"
    assert labels.add("a", "c") is None  # known classes are still counted
    health = label_fields(labels, 5)["health"]
    assert health == {"labelled": 3, "labels_unusable": 1, "labels_capped": 1, "labelled_share": 3 / 5}


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _window(settings_: Any, tmp_path, docs: list[dict[str, Any]]) -> dict[str, Any]:
    engine = HealthEngine(settings_, str(tmp_path), None, AGENT, FakeClock())
    engine.observe([Event("f", i, i + 1, f"i{i}", orjson.dumps(doc)) for i, doc in enumerate(docs)])
    engine.close_due(final=True)
    shipped: dict[str, dict[str, Any]] = {}
    while engine.ship(lambda events: shipped.update((e.doc_id, orjson.loads(e.data)) for e in events)):
        pass
    engine.close()
    return next(d for d in shipped.values() if d["event"]["dataset"] == "modelscribe.health"
                and "requests" in d["model"]["health"])


def _labelled(classes: list[tuple[str, str]]) -> list[dict[str, Any]]:
    t0 = 1_767_225_600.0
    docs: list[dict[str, Any]] = []
    for i, (true, predicted) in enumerate(classes):
        docs.append({"@timestamp": _stamp(t0 + i / 10), "model": {"name": "m", "request_id": f"r{i}",
                                                                 "prediction": {"value": predicted}}})
        docs.append({"@timestamp": _stamp(t0 + i / 10), "model": {"request_id": f"r{i}", "target": {"value": true}}})
    return docs


def test_a_window_with_more_classes_than_the_cap_counts_the_rest_as_capped(tmp_path):
    # The audit's case: 300 distinct classes, each labelled right; caps.categories is 100.
    settings_ = parse_health({"window": 60, "reference_size": 1}, "test: health")
    window = _window(settings_, tmp_path, _labelled([(f"k{i}", f"k{i}") for i in range(300)]))
    health = window["model"]["health"]
    assert window["model"]["accuracy"]["n"] == health["labelled"] == 100
    assert health["labels_capped"] == 200 and health["labels_unusable"] == 0


def test_a_window_document_keeps_look_alike_classes_apart(tmp_path):
    settings_ = parse_health({"window": 60, "reference_size": 1}, "test: health")
    pairs = [("a.b", "a.b")] * 3 + [("a_b", "a_b")] * 2 + [("x__y", "z")] * 4 + [("x", "y__z")]
    accuracy = _window(settings_, tmp_path, _labelled(pairs))["model"]["accuracy"]
    assert sum(accuracy["confusion"].values()) == accuracy["n"] == 10
    assert accuracy["per_class"]["a%2Eb__support"] == 3 and accuracy["per_class"]["a_b__support"] == 2
