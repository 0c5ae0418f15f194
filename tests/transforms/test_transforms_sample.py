"""Sampling: deterministic by document id, only successful requests, rate recorded."""

from __future__ import annotations

import orjson
import pytest

from agent.enrich import document_id
from agent.transforms import HostInfo, Transforms, TransformSettings
from agent.transforms.sample import Sampler, is_successful_request, unit

HOST = HostInfo(name="node-1")


def _request(status=200, **fields):
    doc = {"@timestamp": "2026-11-27T12:00:00.000Z", "message": "POST /predictions/resnet 200",
           "log": {"level": "info"}, "http": {"request": {"method": "POST"}, "response": {"status_code": status}},
           "model": {"server": "torchserve"}}
    doc.update(fields)
    return doc


def _ids(count: int) -> list[str]:
    return [document_id("source-key", offset * 97) for offset in range(count)]


def test_decision_depends_on_the_id_only():
    first = Transforms(TransformSettings(sample_rate=0.3), HOST)
    again = Transforms(TransformSettings(sample_rate=0.3), HOST)  # a restart after a crash
    ids = _ids(2000)
    kept = [first.process(_request(), "/a.log", doc_id) is not None for doc_id in ids]
    assert kept == [again.process(_request(status=201), "/b.log", doc_id) is not None for doc_id in ids]
    assert 0 < sum(kept) < len(ids)


def test_observed_rate_is_within_tolerance_and_recorded():
    rate, count = 0.1, 20_000
    transforms = Transforms(TransformSettings(sample_rate=rate), HOST)
    kept = [transforms.process(_request(), "/a.log", doc_id) for doc_id in _ids(count)]
    survivors = [orjson.loads(data) for data in kept if data is not None]
    # binomial: sd = sqrt(n p (1-p)) = 42; 5 sd
    assert abs(len(survivors) - rate * count) < 5 * 42
    assert all(doc["model"]["sample_rate"] == rate for doc in survivors)
    assert all(doc["model"]["server"] == "torchserve" for doc in survivors)
    estimate = sum(1 / doc["model"]["sample_rate"] for doc in survivors)
    assert abs(estimate - count) / count < 0.05


def test_unit_is_uniform_enough():
    values = [unit(doc_id) for doc_id in _ids(20_000)]
    assert all(0 <= value < 1 for value in values)
    for low in (0.0, 0.25, 0.5, 0.75):
        share = sum(low <= value < low + 0.25 for value in values) / len(values)
        assert abs(share - 0.25) < 0.02


@pytest.mark.parametrize("doc", [
    _request(status=500),
    _request(status=404),
    _request(status="503"),
    _request(log={"level": "error"}),
    _request(log={"level": "WARNING"}),
    _request(log={"level": "critical"}),
    _request(log={"level": "fatal"}),
    _request(event={"outcome": "failure"}),
    _request(error={"message": "boom"}),
    {"message": "vllm stats", "event": {"kind": "metric"}, "model": {"request_id": "r1", "metric": {"name": "x"}}},
    {"message": "Loading model resnet50", "log": {"level": "info"}},  # not a request
    {"message": "plain text", "tags": ["parse_failure"]},
])
def test_errors_warnings_metrics_and_non_requests_are_always_kept(doc):
    transforms = Transforms(TransformSettings(sample_rate=0.000001), HOST)
    for doc_id in _ids(50):
        out = transforms.process(dict(doc), "/a.log", doc_id)
        assert out is not None
        assert "sample_rate" not in orjson.loads(out).get("model", {})


@pytest.mark.parametrize("doc, expected", [
    (_request(), True),
    ({"message": "x", "url": {"path": "/ping"}}, True),
    ({"message": "x", "model": {"request_id": "r1"}}, True),
    ({"message": "x", "model": {"operation": "predict"}}, True),
    ({"message": "x", "gen_ai": {"request": {"id": "cmpl-1"}}}, True),
    ({"message": "x", "model": {"server": "vllm"}}, False),
    (_request(status="garbage"), False),
])
def test_what_counts_as_a_successful_request(doc, expected):
    assert is_successful_request(doc) is expected


def test_rate_one_keeps_everything_unmarked():
    transforms = Transforms(TransformSettings(sample_rate=1.0), HOST)
    for doc_id in _ids(200):
        assert "sample_rate" not in orjson.loads(transforms.process(_request(), "/a", doc_id))["model"]


def test_sampler_threshold_matches_unit():
    sampler = Sampler(0.5)
    for doc_id in _ids(500):
        assert sampler.keep(_request(), doc_id) is (unit(doc_id) < 0.5)
