"""The ``health:`` block of the config file (agent.health.config): bad
values are ConfigErrors naming the key, the reference file is relative to
the config file and is read at resolution, as ``run`` would read it."""

from __future__ import annotations

import pytest

from agent.config import resolve
from agent.errors import ConfigError


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
