"""--map-field SOURCE=TARGET: a flag, MODELSCRIBE_MAP_FIELD (comma-separated)
and the file key map_field / map_fields; every bad spec stops start-up with
the flag, variable or file key and the reason."""

from __future__ import annotations

import pytest

from agent.config import resolve
from agent.config.options import BY_NAME
from agent.errors import ConfigError
from agent.parsing import ParseSettings, validate_settings
from agent.pipeline import parse_settings


def _error(flags=None, env=None, config_file=None) -> str:
    with pytest.raises(ConfigError) as caught:
        resolve(flags or {}, env or {}, config_file)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_the_option_is_declared_like_the_other_repeatable_ones():
    option = BY_NAME["map_fields"]
    assert (option.flag, option.env, option.multiple) == ("--map-field", "MODELSCRIBE_MAP_FIELD", True)
    assert {"map_field", "map_fields", "map-field", "map-fields"} <= set(option.keys)


def test_flag_env_and_file_reach_the_parse_settings(tmp_path):
    config = resolve({"map_fields": ("meta.took=event.duration:ms", "tenant = labels.tenant")}, {})
    assert config.map_fields == (("meta.took", "event.duration:ms"), ("tenant", "labels.tenant"))
    settings = parse_settings(config)
    assert settings.map_fields == config.map_fields
    validate_settings(settings)

    config = resolve({}, {"MODELSCRIBE_MAP_FIELD": "a=model.name, b=model.version"})
    assert config.map_fields == (("a", "model.name"), ("b", "model.version"))
    assert config.origins["map_fields"] == "env MODELSCRIBE_MAP_FIELD"

    cfg = tmp_path / "agent.yml"
    cfg.write_text("map_field:\n  - code=http.response.status_code\n")
    assert resolve({}, {}, str(cfg)).map_fields == (("code", "http.response.status_code"),)
    cfg.write_text("map_fields: {took: 'event.duration:s'}\n")
    assert resolve({}, {}, str(cfg)).map_fields == (("took", "event.duration:s"),)


def test_default_is_no_user_mapping():
    config = resolve({}, {})
    assert config.map_fields == ()
    assert parse_settings(config) == ParseSettings(map_fields=())


@pytest.mark.parametrize("spec, reason", [
    ("latency", "expected SOURCE=TARGET"),
    ("latency=", "expected SOURCE=TARGET"),
    ("latency=event.durration", "event.durration is not a field of the schema"),
    ("latency=model", "model is an object, not a leaf field"),
    ("latency=event.duration:hours", "unknown unit 'hours' for event.duration"),
    ("latency=model.name:ms", "a unit suffix (:ms) is only accepted on event.duration"),
    ("x=tags", "tags is set by the agent itself"),
    ("a..b=model.name", "source 'a..b' must be a key or a dotted path"),
])
def test_a_bad_spec_names_the_flag_and_the_reason(spec, reason):
    message = _error({"map_fields": (spec,)})
    assert message.startswith("--map-field")
    assert reason in message


def test_a_bad_spec_names_the_variable_or_the_file_key(tmp_path):
    assert _error(env={"MODELSCRIBE_MAP_FIELD": "a=model.name,b=nope"}).startswith("MODELSCRIBE_MAP_FIELD")
    cfg = tmp_path / "agent.yml"
    cfg.write_text("map_fields: [a=model.name, b=nope]\n")
    message = _error(config_file=str(cfg))
    assert message.startswith(f"{cfg}: map_fields")
    assert "nope is not a field of the schema" in message
