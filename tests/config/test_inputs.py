"""The config file's ``inputs:`` entries: keys checked with a did-you-mean,
per-input parse settings (``format``, ``log_format``, ``map_fields``)
validated by the parsing stage at resolution, errors named ``FILE: inputs[N].KEY``."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from agent.config import resolve
from agent.config.resolve import InputSpec
from agent.errors import ConfigError
from agent.parsing.settings import ParseSettings


def _resolve(tmp_path, text):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(text)
    return cfg, lambda: resolve({}, {}, str(cfg))


@pytest.mark.parametrize("key, suggestion", [("fromat", "format"), ("pahts", "paths"),
                                             ("log_fromat", "log_format"), ("map_field", "map_fields")])
def test_a_misspelt_key_names_the_entry_and_the_right_key(tmp_path, key, suggestion):
    cfg, run = _resolve(tmp_path, f"inputs:\n  - paths: [a.log]\n  - paths: [b.log]\n    {key}: x\n")
    with pytest.raises(ConfigError) as caught:
        run()
    assert str(caught.value).startswith(f"{cfg}: inputs[2]: unknown key {key!r} (did you mean {suggestion!r}?)")


def test_an_unknown_key_without_a_close_match_lists_the_keys(tmp_path):
    cfg, run = _resolve(tmp_path, "inputs:\n  - paths: [a.log]\n    zzz: 1\n")
    with pytest.raises(ConfigError, match=r"inputs\[1\]: unknown key 'zzz'; an input takes paths, format"):
        run()


def test_a_misspelt_health_block_is_suggested_and_listed(tmp_path):
    """``health`` is an input's key too (README, "Per-input parse settings")."""
    cfg, run = _resolve(tmp_path, "inputs:\n  - paths: [a.log]\n    healht: {}\n")
    with pytest.raises(ConfigError) as caught:
        run()
    assert str(caught.value) == (f"{cfg}: inputs[1]: unknown key 'healht' (did you mean 'health'?); an input "
                                 "takes paths, format, log_format, map_fields, parse_at, container_format, health")


def test_bad_entries(tmp_path):
    for text, expected in [
        ("inputs: {paths: a}\n", "inputs must be a list"),
        ("inputs:\n  - a.log\n", r"inputs\[1\]: expected a mapping"),
        ("inputs:\n  - format: json\n", r"inputs\[1\]: 'paths' must be a glob or a list of globs"),
        ("inputs:\n  - paths: [a.log]\n    path: b.log\n", r"inputs\[1\]: 'paths' and 'path' are the same key"),
        ("inputs:\n  - paths: [a.log]\n    format: [json]\n", r"inputs\[1\].format: expected a single value"),
        ("inputs:\n  - paths: [a.log]\n    format: nginx\n", r"inputs\[1\].format: 'nginx' is not a known format"),
    ]:
        _, run = _resolve(tmp_path, text)
        with pytest.raises(ConfigError, match=expected):
            run()


def test_an_input_sets_only_what_it_names(tmp_path):
    _, run = _resolve(tmp_path, "format: json\ninputs:\n  - paths: [ts/*.log]\n    format: torchserve\n"
                                "  - paths: [other/*.log]\n")
    config = run()
    first, second = config.inputs
    assert first.format == "torchserve" and second.format is None
    assert first.log_format is None and first.map_fields is None
    base = ParseSettings(format="json", multiline_max_lines=9)
    assert first.apply(base) == dataclasses.replace(base, format="torchserve")
    assert second.apply(base) is base  # not set for this input: the global settings apply


def test_apply_replaces_each_set_value():
    spec = InputSpec(("/a/*.log",), format="plain")
    assert spec.apply(ParseSettings()).format == "plain"
    assert InputSpec(("/a/*.log",)).apply(ParseSettings(format="json")).format == "json"


def test_log_format_per_input(tmp_path):
    _, run = _resolve(tmp_path, "inputs:\n  - paths: [a.log]\n    log_format: '%(asctime)s %(levelname)s %(message)s'\n")
    spec, = run().inputs
    assert spec.log_format == "%(asctime)s %(levelname)s %(message)s"
    assert spec.apply(ParseSettings()).log_format == spec.log_format
    cfg, run = _resolve(tmp_path, "inputs:\n  - paths: [a.log]\n  - paths: [b.log]\n    log-format: '%(nosuch'\n")
    with pytest.raises(ConfigError) as caught:
        run()
    assert str(caught.value).startswith(f"{cfg}: inputs[2].log-format: ")  # the key as the file spells it


def test_map_fields_per_input_as_a_list_or_a_mapping(tmp_path):
    _, run = _resolve(tmp_path, "inputs:\n  - paths: [a.log]\n    map_fields: [lat=event.duration]\n"
                                "  - paths: [b.log]\n    map_fields: {lat: event.duration}\n")
    first, second = run().inputs
    assert first.map_fields == second.map_fields == (("lat", "event.duration"),)
    assert first.apply(ParseSettings()).map_fields == (("lat", "event.duration"),)
    cfg, run = _resolve(tmp_path, "inputs:\n  - paths: [a.log]\n    map_fields: [no-equals-sign]\n")
    with pytest.raises(ConfigError) as caught:
        run()
    assert str(caught.value).startswith(f"{cfg}: inputs[1].map_fields")


def test_a_setting_the_parser_does_not_have_is_refused_not_a_crash(tmp_path, monkeypatch):
    module = importlib.import_module("agent.config.resolve")  # agent.config.resolve is also the function
    monkeypatch.setattr(module, "_parse_setting_names", lambda: {"format"})
    cfg, run = _resolve(tmp_path, "inputs:\n  - paths: [a.log]\n    log-format: '%(message)s'\n")
    with pytest.raises(ConfigError) as caught:
        run()
    assert str(caught.value) == f"{cfg}: inputs[1].log-format: not supported by this version of the parser"


def test_a_bare_inputs_key_counts_as_absent(tmp_path):
    """Audit 11, finding 8: ``inputs:`` with no value (the packaged file's line,
    uncommented alone) was an error, though a key with no value counts as absent."""
    _, run = _resolve(tmp_path, "paths: [a.log]\ninputs:\n")
    config = run()
    assert config.inputs == () and config.paths == (str(tmp_path / "a.log"),)
    _, run = _resolve(tmp_path, "paths: [a.log]\ninputs: ~\n")
    assert run().inputs == ()
