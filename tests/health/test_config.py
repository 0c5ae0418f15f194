"""The ``health:`` block of the config file (agent.health.config): bad
values are ConfigErrors naming the key (thresholds included: one that could
never fire, or would fire on nearly every window, is refused), the reference
file is relative to the config file and is read at resolution, as ``run``
would read it."""

from __future__ import annotations

import pytest

from agent.config import resolve
from agent.errors import ConfigError
from agent.health.config import Thresholds


def _error(path) -> str:
    with pytest.raises(ConfigError) as caught:
        resolve({}, {}, str(path))
    assert caught.value.exit_code == 2
    return str(caught.value)


@pytest.mark.parametrize("block, where", [
    ("health:\n  fields: {latency_unit: [ms]}\n", "health.fields.latency_unit"),
    ("health:\n  fields: {latency_unit: {ms: 1}}\n", "health.fields.latency_unit"),
    ("health:\n  fields: {latency_unit: 1}\n", "health.fields.latency_unit"),
    ("inputs: [{paths: x, health: {fields: {latency_unit: [1]}}}]\n", "inputs[1].health.fields.latency_unit"),
])
def test_a_latency_unit_that_is_not_a_name_is_a_config_error(tmp_path, block, where):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(block)
    assert _error(cfg).startswith(f"{cfg}: {where}: one of ns, us, ms, s, got ")


def test_a_relative_reference_is_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ref.csv").write_text("x,prediction\n1,a\n2,b\n")
    cfg = tmp_path / "sub" / "agent.yml"
    cfg.write_text("health: {reference: ref.csv}\n")
    monkeypatch.chdir("/")
    assert resolve({}, {}, str(cfg)).health.reference == str(tmp_path / "sub" / "ref.csv")
    cfg.write_text("health: {reference: previous}\n")
    assert resolve({}, {}, str(cfg)).health.reference == "previous"


@pytest.mark.parametrize("name, content, expected", [
    ("missing.csv", None, "cannot read the file: No such file or directory"),
    ("empty.csv", "", "the file holds no rows"),
    ("header.csv", "x,prediction\n", "the file holds no rows"),
    ("bad.jsonl", '{"x": 1}\nnot json\n', "line 2 is not JSON"),
    ("list.jsonl", "[1, 2]\n", "line 1 is not a JSON object"),
    ("binary.csv", b"\xff\xfe\x00\x80", "not readable as CSV/JSON lines"),
    ("adir", "dir", "cannot read the file"),
])
def test_check_config_reads_the_reference_as_run_would(tmp_path, name, content, expected):
    ref = tmp_path / name
    if content == "dir":
        ref.mkdir()
    elif isinstance(content, bytes):
        ref.write_bytes(content)
    elif content is not None:
        ref.write_text(content)
    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"health: {{reference: {name}}}\n")
    message = _error(cfg)
    assert message.startswith(f"{cfg}: health.reference {ref}: ")
    assert expected in message
    cfg.write_text(f"health: {{reference: {name}, enabled: false}}\n")
    assert resolve({}, {}, str(cfg)).health.enabled is False  # health off: the file is not used


@pytest.mark.parametrize("thresholds, message", [
    ("{js: 5}", "health.thresholds.js: 5 is above 1, the largest Jensen-Shannon distance"),
    ("{js: 0}", "health.thresholds.js: 0 is not above 0: every window whose distribution differs at all"),
    ("{psi: 0}", "health.thresholds.psi: 0 is not above 0: every window whose distribution differs at all"),
    ("{error_rate: 2}", "health.thresholds.error_rate: 2 is not below 1, the largest error rate: the alert "
                        "would never fire (null turns it off)"),
    ("{error_rate: 1}", "health.thresholds.error_rate: 1 is not below 1"),
    ("{accuracy_drop: 1}", "health.thresholds.accuracy_drop: 1 is not below 1, the largest accuracy drop"),
    ("{p95_ms: 0}", "health.thresholds.p95_ms: 0 is not above 0: every window with a latency would alert"),
    ("{psi: -1}", "health.thresholds.psi: expected a number >= 0, got -1"),
    ("{drift_p: 0}", "health.thresholds.drift_p: 0 is not a p-value above 0 and at most 1"),
    ("{drift_p: 1.5}", "health.thresholds.drift_p: 1.5 is not a p-value above 0 and at most 1"),
    ("{drift_p: null}", "health.thresholds.drift_p: expected a number >= 0, got None"),
    # YAML 1.1 reads an exponent without a dot as text (audit 12)
    ("{drift_p: 1e-3}", "health.thresholds.drift_p: expected a number >= 0, got '1e-3'; YAML read it as text: "
                        "write it as a plain number, 0.001"),
])
def test_a_threshold_that_could_never_fire_or_would_always_fire_is_refused(tmp_path, thresholds, message):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"health: {{thresholds: {thresholds}}}\n")
    assert _error(cfg).startswith(f"{cfg}: {message}")


def test_the_edges_of_each_thresholds_range_are_taken(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text("health: {thresholds: {js: 1, psi: 0.001, error_rate: 0, accuracy_drop: 0, p95_ms: 0.5, "
                   "drift_p: 1}}\n")
    thresholds = resolve({}, {}, str(cfg)).health.thresholds
    assert (thresholds.js, thresholds.error_rate, thresholds.accuracy_drop, thresholds.drift_p) == (1, 0, 0, 1)
    from agent.health.wiring import describe
    assert "drift_p 1 " in " ".join(describe(resolve({}, {}, str(cfg)).health))  # check config shows it
    cfg.write_text("health: {thresholds: {error_rate: null, accuracy_drop: null, p95_ms: null}}\n")
    assert resolve({}, {}, str(cfg)).health.thresholds.error_rate is None


def test_thresholds_made_in_code_keep_the_same_ranges():
    # (the drift alert divides by the psi and js thresholds)
    with pytest.raises(ValueError, match="thresholds.psi: 0 is not above 0"):
        Thresholds(psi=0)
    with pytest.raises(ValueError, match="thresholds.js: 2 is above 1"):
        Thresholds(js=2)
