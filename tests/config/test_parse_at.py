"""``--parse-at agent|elasticsearch``: flag, environment, config file and
``inputs:`` entries; validated once at resolution, shown by ``check config``,
and reaching the parser the daemon makes for each file."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.config import resolve
from agent.config.stages import parse_settings as stage_settings
from agent.errors import ConfigError
from agent.events import Line, Source, records_of
from agent.parsing.raw import RawSourceParser
from agent.pipeline import parse_settings
from agent.sink import Sink


def test_default_is_agent():
    config = resolve({}, {})
    assert config.parse_at == "agent"
    assert parse_settings(config).parse_at == "agent" == stage_settings(config).parse_at


def test_flag_env_and_file_in_that_order(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text("parse_at: elasticsearch\n")
    assert resolve({}, {}, str(cfg)).parse_at == "elasticsearch"
    assert resolve({}, {"MODELSCRIBE_PARSE_AT": "agent"}, str(cfg)).parse_at == "agent"
    assert resolve({"parse_at": "agent"}, {"MODELSCRIBE_PARSE_AT": "elasticsearch"}).parse_at == "agent"
    config = resolve({}, {"MODELSCRIBE_PARSE_AT": "Elasticsearch"})
    assert config.parse_at == "elasticsearch" and config.origins["parse_at"] == "env MODELSCRIBE_PARSE_AT"
    assert parse_settings(config) == stage_settings(config)
    assert parse_settings(config).parse_at == "elasticsearch"


@pytest.mark.parametrize("flags, env, file_text, expected", [
    ({"parse_at": "cluster"}, {}, None, "--parse-at: 'cluster' is not one of: agent, elasticsearch"),
    ({}, {"MODELSCRIBE_PARSE_AT": "es"}, None, "MODELSCRIBE_PARSE_AT: 'es' is not one of: agent, elasticsearch"),
    ({}, {}, "parse-at: opensearch\n", "{cfg}: parse-at: 'opensearch' is not one of: agent, elasticsearch"),
    ({}, {}, "inputs:\n  - paths: [a.log]\n    parse_at: [elasticsearch]\n",
     "{cfg}: inputs[1].parse_at: expected a single value, not a list"),
    ({}, {}, "inputs:\n  - paths: [a.log]\n  - paths: [b.log]\n    parse-at: edge\n",
     "{cfg}: inputs[2].parse-at: 'edge' is not one of: agent, elasticsearch"),
    ({}, {}, "inputs:\n  - paths: [a.log]\n    parse_on: agent\n",
     "{cfg}: inputs[1]: unknown key 'parse_on' (did you mean 'parse_at'?)"),
])
def test_a_bad_value_is_named_where_it_came_from(tmp_path, flags, env, file_text, expected):
    cfg = None
    if file_text is not None:
        cfg = tmp_path / "agent.yml"
        cfg.write_text(file_text)
    with pytest.raises(ConfigError) as caught:
        resolve(flags, env, str(cfg) if cfg else None)
    assert str(caught.value).startswith(expected.format(cfg=cfg))


def test_per_input_setting_applies_to_its_files_only(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text("paths: [other/*.log]\ninputs:\n  - paths: [gpu/*.log]\n    parse_at: elasticsearch\n"
                   "    format: torchserve\n")
    config = resolve({}, {}, str(cfg))
    assert config.parse_at == "agent"
    (spec,) = config.inputs
    assert spec.parse_at == "elasticsearch"
    assert "parse_at=elasticsearch" in spec.describe()
    applied = spec.apply(parse_settings(config))
    assert applied.parse_at == "elasticsearch" and applied.format == "torchserve"


class _Handoff:
    group_size = 1000
    accepting = True

    def put(self, group):
        pass


class _Enricher:
    """Keeps the records it is given (the real one is tested in tests/test_enrich.py)."""

    scan = None  # no batch prefilter
    samples = False  # no --sample

    def __init__(self):
        self.built = []

    def build(self, record, present=None):
        self.built.append(record)
        return None

    def build_all(self, records, present=None, first=0):
        self.built.extend(records_of(records))
        return []


def test_the_daemon_makes_a_raw_parser_for_an_elasticsearch_input(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"paths: ['{tmp_path}/plain/*.log']\ninputs:\n  - paths: ['{tmp_path}/raw/*.log']\n"
                   "    parse_at: elasticsearch\n")
    config = resolve({}, {}, str(cfg))
    enricher = _Enricher()
    sink = Sink(parse_settings(config), enricher, _Handoff(), config.inputs)
    raw, agent = Source("k1", f"{tmp_path}/raw/a.log"), Source("k2", f"{tmp_path}/plain/a.log")
    for source in (raw, agent):
        sink.line(Line(source, 0, 10, '{"msg": "x"}', 1.0))
    assert isinstance(sink._parsers["k1"], RawSourceParser)
    assert not isinstance(sink._parsers["k2"], RawSourceParser)
    assert enricher.built[0].fields == {"modelscribe": {"raw": {"format": "json"}}}
    assert enricher.built[0].message == '{"msg": "x"}'
    assert "modelscribe" not in enricher.built[1].fields and enricher.built[1].message == "x"


def test_check_config_shows_it(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"paths: ['{tmp_path}/*.log']\ninputs:\n  - paths: ['{tmp_path}/gpu/*.log']\n"
                   "    parse_at: elasticsearch\n")
    done = subprocess.run([sys.executable, "-m", "agent", "check", "config", "--config", str(cfg),
                           "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, env={"MODELSCRIBE_PARSE_AT": "agent", "PATH": "/usr/bin"})
    assert done.returncode == 0, done.stderr
    shown = [line.split() for line in done.stdout.splitlines()]
    assert ["parse_at", "agent", "(env", "MODELSCRIBE_PARSE_AT)"] in shown
    assert any(row[:1] == ["inputs[1]"] and "(parse_at=elasticsearch)" in row for row in shown), done.stdout


@pytest.mark.parametrize("flags, env, file_text, expected", [
    ({"redact_fields": ("user.email",), "parse_at": "elasticsearch"}, {}, None,
     "--redact-field acts on parsed fields, but --parse-at ships the raw line"),
    ({"hash_fields": ("user.id",)}, {"MODELSCRIBE_PARSE_AT": "elasticsearch"}, None,
     "--hash-field acts on parsed fields, but MODELSCRIBE_PARSE_AT ships the raw line"),
    ({}, {"MODELSCRIBE_REDACT_FIELD": "user.email"},
     "inputs:\n  - paths: [a.log]\n  - paths: [b.log]\n    parse-at: elasticsearch\n",
     "MODELSCRIBE_REDACT_FIELD acts on parsed fields, but {cfg}: inputs[2].parse-at ships the raw line"),
])
def test_field_rules_are_refused_with_raw_shipping(tmp_path, flags, env, file_text, expected):
    """A redacted or hashed field is not there yet in a raw document: its value would leave the host."""
    cfg = None
    if file_text is not None:
        cfg = tmp_path / "agent.yml"
        cfg.write_text(file_text)
    with pytest.raises(ConfigError) as caught:
        resolve(flags, env, str(cfg) if cfg else None)
    assert str(caught.value).startswith(expected.format(cfg=cfg))
    assert "--redact-pattern" in str(caught.value)


def test_field_rules_with_agent_parsing_and_patterns_with_raw_are_fine():
    assert resolve({"redact_fields": ("user.email",), "parse_at": "agent"}, {}).redact_fields == ("user.email",)
    config = resolve({"redact_patterns": ("email",), "parse_at": "elasticsearch"}, {})
    assert config.redact_patterns == ("email",)


def test_a_reload_that_changes_an_inputs_parse_at_replaces_its_parser(tmp_path):
    """SIGHUP: the file's open event is flushed as it stood, its next line goes to a raw parser."""
    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"inputs:\n  - paths: ['{tmp_path}/*.log']\n")
    before = resolve({}, {}, str(cfg))
    enricher = _Enricher()
    sink = Sink(parse_settings(before), enricher, _Handoff(), before.inputs)
    source = Source("k", f"{tmp_path}/a.log")
    sink.line(Line(source, 0, 6, "hello", 1.0))  # held: a traceback may follow
    assert not enricher.built
    cfg.write_text(f"inputs:\n  - paths: ['{tmp_path}/*.log']\n    parse_at: elasticsearch\n")
    after = resolve({}, {}, str(cfg))
    sink.reconfigure(parse_settings(after), after.inputs, None)
    assert [record.message for record in enricher.built] == ["hello"]
    sink.line(Line(source, 6, 12, "world", 2.0))
    assert isinstance(sink._parsers["k"], RawSourceParser)
