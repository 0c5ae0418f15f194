"""Where health reads its fields: defaults that need no configuration (the JSON prediction log
through the real JSON parser, BentoML monitor roles), configured paths, and bad input."""

from __future__ import annotations

import math
from datetime import datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_switch import IMPLEMENTATIONS, health_implementation

from agent.enrich import Enricher
from agent.errors import ConfigError
from agent.events import Line, Source
from agent.health.config import FieldPaths, parse_fields, parse_health
from agent.health.extract import BAD_LATENCY, MISSING, extract, extractor
from agent.parsing import ParseSettings, make_parser

SOURCE = Source("k", "/logs/predictions.log")


def parsed(text: str, fmt: str = "json") -> dict:
    """The document the agent ships for one line (parser + enrichment), as health reads it."""
    parser = make_parser(ParseSettings(format=fmt), SOURCE)
    records = list(parser.feed(Line(SOURCE, 0, len(text) + 1, text, 1_767_225_600.0))) + list(parser.flush())
    event = Enricher("edge-1", "agent-id", False).build(records[0])
    return orjson.loads(event.data)


def test_a_json_prediction_log_needs_no_configuration():
    doc = parsed('{"timestamp": "2026-01-01T00:00:01Z", "model_name": "churn", "request_id": "r1", '
                 '"prediction": 1, "features": {"age": 41.5, "country": "DE"}, "latency_ms": 12.5}')
    obs = extract(doc, FieldPaths())
    assert obs is not None
    assert obs.key == ("churn", "", "", "edge-1")
    assert obs.request_id == "r1"
    assert obs.latency_ms == pytest.approx(12.5)
    assert obs.prediction == 1
    assert obs.features == {"age": 41.5, "country": "DE"}
    assert obs.label is MISSING
    assert obs.time == 1_767_225_601.0
    assert obs.error is False


def test_a_label_record_has_no_model_and_no_prediction():
    for text in ('{"timestamp": "2026-01-01T00:00:09Z", "request_id": "r1", "label": 0}',
                 '{"timestamp": "2026-01-01T00:00:09Z", "request_id": "r1", "ground_truth": 0}'):
        obs = extract(parsed(text), FieldPaths())
        assert obs is not None and obs.label == 0 and obs.prediction is MISSING and obs.key[0] == ""


def test_errors_come_from_the_outcome_the_status_or_the_level():
    assert extract(parsed('{"model_name": "m", "status": 503, "latency_ms": 3}'), FieldPaths()).error
    assert not extract(parsed('{"model_name": "m", "status": 404, "latency_ms": 3}'), FieldPaths()).error
    assert extract(parsed('{"model_name": "m", "level": "ERROR", "latency_ms": 3}'), FieldPaths()).error
    assert extract(parsed('{"model_name": "m", "level": "ERROR"}'), FieldPaths()) is None  # a log line, no request
    custom = parse_fields({"error": "extra.failed"}, "test")
    assert extract(parsed('{"model_name": "m", "failed": true}'), custom).error
    assert not extract(parsed('{"model_name": "m", "failed": false}'), custom).error


def test_bentoml_monitor_roles_fill_features_prediction_and_target(tmp_path):
    doc = {"@timestamp": "2026-01-01T00:00:00.000Z", "model": {
        "name": "iris", "request_id": "42", "input": {"features": {"sepal_len": 5.1}},
        "prediction": {"value": "setosa"}, "target": {"value": "setosa"}}}
    obs = extract(doc, FieldPaths())
    assert obs.features == {"sepal_len": 5.1} and obs.prediction == "setosa" and obs.label == "setosa"


def test_configured_paths_and_a_feature_list():
    paths = parse_fields({"model": "extra.m", "request_id": "extra.rid", "latency": "extra.took",
                          "latency_unit": "s", "features": ["extra.a", "extra.b"], "prediction": "extra.y"}, "t")
    doc = parsed('{"m": "x", "rid": "q", "took": 0.25, "a": 1, "b": "z", "y": 3}')
    obs = extract(doc, paths)
    assert obs.key[0] == "x" and obs.request_id == "q" and obs.latency_ms == pytest.approx(250.0)
    assert obs.features == {"extra.a": 1, "extra.b": "z"} and obs.prediction == 3


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-5", '"fast"'])
def test_an_unusable_latency_is_reported_as_bad(raw):
    doc = {"@timestamp": "2026-01-01T00:00:00.000Z", "model": {"name": "m"}, "extra": {"lat": None}}
    doc["extra"]["lat"] = {"NaN": math.nan, "Infinity": math.inf, "-5": -5, '"fast"': "fast"}[raw]
    assert extract(doc, parse_fields({"latency": "extra.lat"}, "t")).latency_ms == BAD_LATENCY


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("raw", ['"NaN"', "-5", '"1e400"', '"abc"', "[1]", "true", "1e308", '{"a": 1}'])
def test_a_latency_the_json_mapping_refused_is_bad_not_absent(implementation, raw):
    """The zero-configuration JSON log: the mapping leaves ``latency_ms: "NaN"``
    in extra (no event.duration), and health counted no latency at all (audit)."""
    doc = parsed('{"timestamp": "2026-01-01T00:00:01Z", "model_name": "m", "request_id": "r1", "prediction": 1, '
                 f'"latency_ms": {raw}}}')
    assert "event" not in doc or "duration" not in doc["event"]
    with health_implementation(implementation):
        assert extractor(FieldPaths())(doc).latency_ms == BAD_LATENCY
    assert extract(doc, FieldPaths()).latency_ms == BAD_LATENCY
    # A configured latency path reads only its own field.
    assert extract(doc, parse_fields({"latency": "extra.other"}, "t")).latency_ms is None


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("stamp", ['"not a date"', '""', '"2026-13-45T25:00:00Z"', "1e300", "[1]"])
def test_a_time_the_line_had_and_the_agent_could_not_use_is_a_bad_time(implementation, stamp):
    """Audit 9: @timestamp fell back to the read time, and health took it for the
    event's: one such line in a backfill moved the model's windows to "now"."""
    doc = parsed(f'{{"@timestamp": {stamp}, "model_name": "m", "request_id": "r1", "prediction": 1, '
                 '"latency_ms": 3}')
    assert doc["tags"] == ["timestamp_unusable"] and doc["@timestamp"] == "2026-01-01T00:00:00.000Z"
    with health_implementation(implementation):
        assert math.isnan(extractor(FieldPaths())(doc).time)
    good = parsed('{"@timestamp": "2026-01-01T00:00:05Z", "time": "12:00", "model_name": "m", "prediction": 1}')
    assert "tags" not in good and good["extra"] == {"time": "12:00"}  # a second time key that lost: no word
    with health_implementation(implementation):
        assert extractor(FieldPaths())(good).time == 1_767_225_605.0


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match=r"f\.yml: health\.window"):
        parse_health({"window": 0}, "f.yml: health")
    with pytest.raises(ConfigError, match=r"did you mean 'lateness'"):
        parse_health({"latenes": 3}, "f.yml: health")
    with pytest.raises(ConfigError, match=r"health\.fields\.features"):
        parse_health({"fields": {"features": 3}}, "f.yml: health")
    with pytest.raises(ConfigError, match=r"thresholds\.psi"):
        parse_health({"thresholds": {"psi": None}}, "f.yml: health")


def test_the_time_settings_take_durations_as_every_other_time_setting():
    settings = parse_health({"window": "5m", "lateness": "30s", "label_ttl": "2h"}, "f.yml: health")
    assert (settings.window, settings.lateness, settings.label_ttl) == (300, 30.0, 7200.0)
    assert type(settings.window) is int  # windows are aligned on the epoch in whole seconds
    assert parse_health({"window": 90, "lateness": 0.5}, "f.yml: health").window == 90
    for bad, reason in (("1.5s", "whole seconds"), (0, "whole seconds"), ("500ms", "whole seconds"),
                        ("abc", "not a duration"), (-5, "negative"), (float("inf"), "expected a duration"),
                        (True, "expected a duration")):
        with pytest.raises(ConfigError, match=rf"f\.yml: health\.window: .*{reason}"):
            parse_health({"window": bad}, "f.yml: health")
    for key in ("lateness", "label_ttl"):
        with pytest.raises(ConfigError, match=rf"f\.yml: health\.{key}: .*not a duration"):
            parse_health({key: "soon"}, "f.yml: health")
        with pytest.raises(ConfigError, match=rf"f\.yml: health\.{key}: .*expected a duration"):
            parse_health({key: float("nan")}, "f.yml: health")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                      max_size=3), max_leaves=12)


@given(st.dictionaries(st.sampled_from(["@timestamp", "model", "event", "extra", "http", "log", "gen_ai"]),
                       json_values, max_size=6))
def test_extract_never_raises(doc):
    extract(doc, FieldPaths())
    extract(doc, parse_fields({"features": ["model.x", "extra"], "error": "event.failed"}, "t"))


def test_the_config_file_block_global_and_per_input(tmp_path):
    import subprocess
    import sys

    from agent.config.resolve import resolve

    config = tmp_path / "modelscribe.yml"
    config.write_text("paths: [/logs/*.log]\nhealth:\n  window: 30\n  fields: {latency: extra.took, latency_unit: s}\n"
                      "inputs:\n  - paths: /fraud/*.log\n    format: json\n"
                      "    health: {fields: {model: extra.service, features: [extra.amount]}}\n")
    resolved = resolve({}, {}, str(config)).health
    assert resolved.window == 30 and resolved.fields.latency == ("extra", "took")
    (globs, paths), = resolved.per_input
    assert globs == ("/fraud/*.log",) and paths.model == ("extra", "service")
    assert paths.latency == ("extra", "took")  # inherited from the global block
    assert paths.features == (("extra", "amount"),) and paths.features_under is None
    shown = subprocess.run([sys.executable, "-m", "agent", "check", "config", "--config", str(config)],
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "health: windows of 30s" in shown.stdout
    assert "install them with --health-window 30s --health-lateness 30s" in shown.stdout  # (not the rules' 60s)
    assert "health: fields for /fraud/*.log: model=extra.service" in shown.stdout
    assert "features=extra.amount" in shown.stdout
    config.write_text("health: {window: 0}\n")
    bad = subprocess.run([sys.executable, "-m", "agent", "check", "config", "--config", str(config)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and f"{config}: health.window" in bad.stderr
    none = tmp_path / "none.yml"
    none.write_text("paths: [/logs/*.log]\n")
    off = subprocess.run([sys.executable, "-m", "agent", "check", "config", "--config", str(none)],
                         capture_output=True, text=True)
    assert "health: off" in off.stdout


def test_bentoml_monitor_records_through_the_real_parser(tmp_path):
    import shutil
    from pathlib import Path

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "servers" / "bentoml" / "monitoring"
    shutil.copytree(fixtures, tmp_path / "monitoring")
    data = tmp_path / "monitoring" / "iris_classifier_prediction" / "data" / "data.0.log"
    source = Source("bento", str(data))
    parser = make_parser(ParseSettings(format="bentoml"), source)
    text = data.read_text().split("\n")[0]
    [record] = list(parser.feed(Line(source, 0, len(text) + 1, text, 1.0)))
    doc = orjson.loads(Enricher("edge-1", "agent-id", False).build(record).data)
    obs = extract(doc, FieldPaths())
    assert obs.key[0] == "iris_classifier_prediction" and obs.key[2] == "iris_classifier"
    assert obs.features == {"sepal length": 5.1, "sepal width": 3.5, "petal length": 1.4, "petal width": 0.2}
    assert obs.prediction == "setosa" and obs.label == "setosa" and obs.request_id == "8213476905214387731"


def test_server_formats_fill_the_fields_without_configuration():
    """TorchServe's access log and KServe's: requests with a model, latency or outcome; metric
    lines, probes and lines that only mention a model are not requests."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "fixtures" / "servers"
    found: dict[str, list] = {}
    for fmt, name in (("torchserve", "torchserve/access_log.log"), ("torchserve", "torchserve/model_metrics.log"),
                      ("kserve", "kserve/kserve.log"), ("triton", "triton/default.log")):
        path = root / name
        source = Source(name, str(path))
        parser = make_parser(ParseSettings(format=fmt), source)
        offset, records = 0, []
        for text in path.read_text().split("\n"):
            records += parser.feed(Line(source, offset, offset + len(text) + 1, text, 1.0))
            offset += len(text) + 1
        records += parser.flush()
        enricher = Enricher("edge-1", "agent-id", False)
        found[name] = [o for r in records if (o := extract(orjson.loads(enricher.build(r).data), FieldPaths()))]
    torchserve = found["torchserve/access_log.log"]
    assert torchserve and {o.key[0] for o in torchserve} == {"resnet-18", "bert_sentiment"}
    assert any(o.latency_ms is not None and o.latency_ms > 0 for o in torchserve)
    assert found["torchserve/model_metrics.log"] == []  # metric lines
    triton = found["triton/default.log"]  # "loading model ...": no request; its verbose request line is one
    assert [(o.key[0], o.latency_ms, o.error) for o in triton] == [("densenet_onnx", None, False)]
    kserve = found["kserve/kserve.log"]
    assert {o.key[0] for o in kserve} == {"sklearn-iris"} and len(kserve) == 4  # predict, explain, 2 infer
    assert sum(o.error for o in kserve) == 1  # the 500


# Documents health may see, built from the keys extraction reads, with any JSON value
# (and the values that steer it) at each of them.
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10, 600), st.just(10**400),
                  st.floats(allow_nan=True), st.text(max_size=3),
                  st.sampled_from(["event", "metric", "failure", "ERROR", "ready", "infer", "m1",
                                   "2026-01-01T00:00:01Z",
                                   "2026-01-01T00:00:01.250+02:00", "1969-12-31T00:00:00Z", "x"]),
                  st.lists(st.integers(), max_size=2))


def _objects(keys: list[str], inner=_leaf, usual=None):
    """Mostly an object with each of ``keys`` or not (``usual`` values, when given, half the time)."""
    value = inner if usual is None else st.one_of(usual, inner)
    objects = st.fixed_dictionaries({}, optional={key: value for key in keys})
    # (one_of flattens nested one_ofs: _leaf alone would be 8 branches of 11)
    return st.one_of(objects, objects, objects, st.sampled_from([None, 3, "x", [1], True, 2.5]))


_nested = st.one_of(_leaf, st.dictionaries(st.sampled_from(["value", "label", "features", "name", "a"]),
                                           st.one_of(_leaf, st.dictionaries(st.sampled_from(["f", "g"]), _leaf,
                                                                            max_size=2)),
                                           max_size=2))
_named = st.one_of(st.sampled_from(["m1", "r1", "cat", 3]), _nested)
_model_object = st.fixed_dictionaries({}, optional={
    **{key: _named for key in ["name", "version", "request_id", "operation", "target", "prediction", "monitor"]},
    "input": st.one_of(st.fixed_dictionaries({"features": st.one_of(
        st.dictionaries(st.sampled_from(["f", "g"]), _leaf, max_size=2), _leaf)}), _nested)})
_model = st.one_of(_model_object, _model_object, _model_object, st.sampled_from([None, "m", [1]]))
# Timestamps in the agent's own shape (the C extraction parses these itself) and near misses of it.
_zulu = st.builds(lambda moment, digits, stamp: stamp(moment, digits),
                  st.one_of(st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2300, 1, 1)),
                            st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))),
                  st.sampled_from([0, 3, 6]),
                  st.sampled_from([lambda m, d: m.isoformat(timespec={0: "seconds", 3: "milliseconds",
                                                                      6: "microseconds"}[d]) + "Z",
                                   lambda m, d: m.isoformat(timespec="seconds") + "." + "1" * (d + 1) + "Z",
                                   lambda m, d: m.isoformat(sep=" ", timespec="milliseconds") + "Z",
                                   lambda m, d: m.isoformat(timespec="milliseconds") + "z",
                                   lambda m, d: m.isoformat(timespec="milliseconds") + "+00:00",
                                   lambda m, d: m.isoformat(timespec="milliseconds")]))
_stamps = st.one_of(st.sampled_from(["2026-01-01T00:00:01Z", "2026-01-01T00:00:01.250+02:00"]), _zulu,
                    st.floats(0, 2e11), st.integers(-5, 2**70),
                    st.sampled_from([None, "x", "1969-12-31T00:00:00Z", True, 10**400, -1, [1], 253402300799,
                                     253402300800, "2026-02-29T00:00:00Z", "2024-02-29T00:00:00.000Z",
                                     "2100-02-29T00:00:00Z", "2000-02-29T23:59:59.999999Z", "2026-13-01T00:00:00Z",
                                     "2026-01-01T24:00:00Z", "2026-01-01T23:59:60Z", "0000-01-01T00:00:00Z",
                                     "9999-12-31T23:59:59.999Z", "7454-05-04T22:42:38.999029Z",
                                     "2026-01-01T00:00:0xZ", "2026-01-01T00:00:00.1Z",
                                     "２０２６-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z\n"]))
_documents = st.fixed_dictionaries({"@timestamp": _stamps, "model": _model}, optional={
    "event": _objects(["kind", "duration", "outcome"], usual=st.sampled_from(["event", 5_000_000, "failure"])),
    "extra": _objects(["label"]),
    "http": _objects(["response"], _objects(["status_code"], usual=st.sampled_from([200, 503]))),
    "log": _objects(["level", "file"], usual=st.sampled_from(["info", "error", "ERROR", "Fatal", "critical",
                                                               "CRITICAL", "errors", "\u212aritical", "fatal\u00e9",
                                                               "FATA\u0141"])),
    "gen_ai": _objects(["usage", "request"], _objects(["model", "input_tokens", "output_tokens"])),
    "service": _objects(["name"]), "host": _objects(["name"])})


def _same(a, b) -> bool:
    return repr(a) == repr(b)  # NaN anywhere compares unequal to itself; its repr does not


def _default_extractor_agrees(implementation: str, doc) -> None:
    """The default paths' extractor (C or Python) gives what ``extract`` gives."""
    with health_implementation(implementation):
        assert _same(extractor(FieldPaths())(doc), extract(doc, FieldPaths()))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=500, deadline=None)
@given(doc=_documents)
def test_the_default_extractor_is_extract_with_the_default_paths(implementation, doc):
    _default_extractor_agrees(implementation, doc)


class _Level(str):
    """A log level whose lower() is its own (C defers to it, as Python calls it)."""

    def lower(self):
        return "error" if self == "OOPS" else super().lower()


# Requests (a model, a request id) that reach every step of extraction: the time, the
# error rules, the tokens, the prediction's shapes.
_requests = st.fixed_dictionaries({
    "@timestamp": st.one_of(_zulu, _zulu, _stamps),
    "model": st.fixed_dictionaries({"name": st.sampled_from(["m", 7, "é"]), "request_id": _named}, optional={
        "prediction": _nested, "target": _nested, "version": _named})}, optional={
    "event": st.fixed_dictionaries({}, optional={"duration": _leaf, "outcome": st.sampled_from(["failure", "x", 1])}),
    "extra": st.fixed_dictionaries({}, optional={"latency_ms": _leaf, "other": _leaf}),
    "http": st.fixed_dictionaries({"response": st.fixed_dictionaries({"status_code": st.one_of(
        st.sampled_from([499, 500, 503, True, "503", 10**30, 500.0]), _leaf)})}),
    "log": st.fixed_dictionaries({"level": st.one_of(st.sampled_from(
        ["error", "ERROR", "Fatal", "critical", "CRITICAL", "errors", "crit", "\u212aritical", "fatal\u00e9",
         "ERRO\u0280", "\u0130rror"]), st.sampled_from(["OOPS", "ERROR", "x"]).map(_Level), _leaf)}),
    "gen_ai": st.fixed_dictionaries({"usage": st.one_of(st.fixed_dictionaries({}, optional={
        "input_tokens": st.one_of(st.integers(-3, 10**20), _leaf), "output_tokens": _leaf}), _leaf)}),
    "service": _objects(["name"]), "host": _objects(["name"])})


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=1000, deadline=None)
@given(doc=_requests)
def test_the_default_extractor_on_requests_is_extract(implementation, doc):
    _default_extractor_agrees(implementation, doc)


# Any JSON document at all, with the keys extraction reads among others: the C extraction
# must answer what the Python one answers, whatever nests where.
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.text(max_size=4),
              _stamps),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
        st.one_of(st.sampled_from(["model", "name", "event", "kind", "duration", "features", "input", "prediction",
                                   "value", "label", "target", "request_id", "outcome", "usage", "input_tokens",
                                   "http", "response", "status_code", "log", "level", "gen_ai", "request",
                                   "monitor", "operation", "@timestamp", "extra", "service", "host", "version"]),
                  st.text(max_size=3)), inner, max_size=4)),
    max_leaves=25)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=1000, deadline=None)
@given(doc=st.one_of(st.dictionaries(st.sampled_from(["model", "event", "@timestamp", "http", "log", "gen_ai",
                                                      "extra", "service", "host", "agent"]), _json, max_size=8),
                     _json))
def test_the_default_extractor_on_any_json_is_extract(implementation, doc):
    _default_extractor_agrees(implementation, doc)


def test_the_default_extractor_on_real_documents():
    lines = ['{"timestamp": "2026-01-01T00:00:01Z", "model_name": "churn", "request_id": "r1", "prediction": 1, '
             '"features": {"age": 41.5, "country": "DE"}, "latency_ms": 12.5}',
             '{"timestamp": "2026-01-01T00:00:02Z", "request_id": "r1", "ground_truth": 0}',
             '{"timestamp": "2026-01-01T00:00:03Z", "model_name": "m", "status": 503, "level": "error"}']
    for line in lines:
        doc = parsed(line)
        assert extractor(FieldPaths())(doc) == extract(doc, FieldPaths()) is not None
    configured = FieldPaths(model=("svc",), features=(("a",), ("b", "c")), features_under=None)
    doc = {"@timestamp": 5.0, "svc": "m", "a": 1, "b": {"c": "x"}}
    assert extractor(configured)(doc) == extract(doc, configured) is not None


def test_default_windows_need_no_word_about_the_rules():
    from agent.health.config import parse_health
    from agent.health.wiring import describe

    assert not [line for line in describe(parse_health({}, "t: health")) if "--health-window" in line]
    assert [line for line in describe(parse_health({"window": "5m"}, "t: health")) if "--health-window 300s" in line]


def test_check_config_says_what_a_server_format_gives_health(tmp_path):
    # Audit 9: a Triton input yielded no window at all and check config said nothing of it.
    from click.testing import CliRunner

    from agent.cli import main

    (tmp_path / "t.log").write_text('I0501 10:00:00.123456 1 http_server.cc:4521] "HTTP request: 2 /v2/models/m/infer"\n')
    config = tmp_path / "c.yml"
    config.write_text(f"inputs:\n  - paths: ['{tmp_path}/*.log']\n    format: triton\nhealth: {{}}\n")
    result = CliRunner().invoke(main, ["check", "config", "--config", str(config), "--state-dir",
                                       str(tmp_path / "st"), "--output", "null", "--format", "vllm"])
    assert result.exit_code == 0, result.output
    assert f"health: {tmp_path}/*.log (format triton): requests only from the verbose request lines" in result.output
    assert "health: --format (format vllm): requests only where a line names its model (LoRA adapters): the " \
           "base model's are not counted" in result.output
