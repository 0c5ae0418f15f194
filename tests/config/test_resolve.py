"""Config resolution: precedence, conversion, validation messages, origins."""

import os

import pytest

from agent.config import describe, resolve
from agent.config.options import OPTIONS
from agent.config.resolve import config_field_names
from agent.errors import ConfigError


def test_every_option_is_a_config_field_and_back():
    assert config_field_names() == {option.name for option in OPTIONS}


def test_defaults_when_nothing_is_given():
    config = resolve({}, {})
    assert config.es_urls == ("http://localhost:9200",)
    assert config.data_stream == "logs-modelscribe-default"
    assert config.target == "logs-modelscribe-default"
    assert config.tls_verify is True
    assert config.max_retries is None
    assert all(origin == "default" for origin in config.origins.values())


def test_flag_beats_env_beats_file_beats_default(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("workers: 3\nbulk_max_docs: 10\nflush-interval: 2s\nlog_level: debug\n")
    env = {"MODELSCRIBE_WORKERS": "5", "MODELSCRIBE_BULK_MAX_DOCS": "20"}
    config = resolve({"workers": "7"}, env, str(cfg))
    assert config.workers == 7 and config.origins["workers"] == "flag --workers"
    assert config.bulk_max_docs == 20 and config.origins["bulk_max_docs"] == "env MODELSCRIBE_BULK_MAX_DOCS"
    assert config.flush_interval == 2.0 and config.origins["flush_interval"] == f"file {cfg}"
    assert config.request_timeout == 30.0 and config.origins["request_timeout"] == "default"


def test_multi_valued_from_each_source(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("paths: [logs/a.log, /abs/*.log]\n")
    from_file = resolve({}, {}, str(cfg))
    assert from_file.paths == (str(tmp_path / "logs/a.log"), "/abs/*.log")
    from_env = resolve({}, {"MODELSCRIBE_ES_URL": "https://a:9200, https://b:9200/"})
    assert from_env.es_urls == ("https://a:9200", "https://b:9200")
    from_flag = resolve({"es_urls": ("http://c:9200",)}, {"MODELSCRIBE_ES_URL": "https://a:9200"})
    assert from_flag.es_urls == ("http://c:9200",)


@pytest.mark.parametrize("flags, env, expected", [
    ({"workers": "0"}, {}, "--workers: 0 is out of range"),
    ({"flush_interval": "soon"}, {}, "--flush-interval: 'soon' is not a duration"),
    ({}, {"MODELSCRIBE_BULK_MAX_BYTES": "lots"}, "MODELSCRIBE_BULK_MAX_BYTES: 'lots' is not a size"),
    ({"es_urls": ("es:9200",)}, {}, "--es-url: 'es:9200' is not an http:// or https:// URL"),
    ({"output": "kafka"}, {}, "--output: 'kafka' is not an output"),
    ({"multiline_start": "("}, {}, "--multiline-start: invalid regular expression"),
    ({"data_stream": "Logs"}, {}, "--data-stream: 'Logs' is not a valid index name"),
    ({"index": "a", "data_stream": "b"}, {}, "--index and --data-stream"),
    ({"client_cert": "/nonexistent"}, {}, "--client-cert and --client-key go together"),
    ({"ca_cert": "/nonexistent/ca.pem"}, {}, "--ca-cert /nonexistent/ca.pem: the file does not exist"),
    ({"username": "elastic"}, {}, "--username needs a password"),
    ({}, {"MODELSCRIBE_KEEP_ORIGINAL": "maybe"}, "MODELSCRIBE_KEEP_ORIGINAL: 'maybe' is not a boolean"),
    ({"read_from": "tail"}, {}, "--read-from: 'tail' is not one of: beginning, end"),
    ({"ignore_older": "0s"}, {}, "--ignore-older:"),
    ({}, {"MODELSCRIBE_IGNORE_OLDER": "yesterday"}, "MODELSCRIBE_IGNORE_OLDER: 'yesterday' is not a duration"),
])
def test_bad_values_name_their_source(flags, env, expected):
    with pytest.raises(ConfigError) as caught:
        resolve(flags, env)
    assert expected in str(caught.value)
    assert caught.value.exit_code == 2


def test_paths_are_required_for_run():
    with pytest.raises(ConfigError, match="--path: at least one glob"):
        resolve({}, {}, require_paths=True)


def test_file_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("workers: 2\n  oops: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line \d+"):
        resolve({}, {}, str(bad))
    typo = tmp_path / "typo.yaml"
    typo.write_text("wrokers: 2\n")
    with pytest.raises(ConfigError, match="unknown setting 'wrokers' \\(did you mean 'workers'\\?\\)"):
        resolve({}, {}, str(typo))
    secret = tmp_path / "secret.yaml"
    secret.write_text("api_key: abc\n")
    with pytest.raises(ConfigError, match="secrets are not read from the config file"):
        resolve({}, {}, str(secret))
    with pytest.raises(ConfigError, match="cannot read the file"):
        resolve({}, {}, str(tmp_path / "missing.yaml"))
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        resolve({}, {}, str(listing))


def test_secrets_come_from_files_or_env_and_are_masked(tmp_path):
    key = tmp_path / "api_key"
    key.write_text("c2VjcmV0LWtleQ==\n")
    config = resolve({"api_key_file": str(key)}, {})
    assert config.api_key.reveal() == "c2VjcmV0LWtleQ=="
    assert "c2VjcmV0" not in repr(config)
    rows = {name: (value, origin) for name, value, origin in describe(config)}
    assert rows["api_key"] == ("***", f"file {key}")
    from_env = resolve({"username": "elastic"}, {"MODELSCRIBE_PASSWORD": "hunter2"})
    assert from_env.password.reveal() == "hunter2"
    assert "hunter2" not in repr(from_env)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="--api-key-file .*: the file is empty"):
        resolve({"api_key_file": str(empty)}, {})
    with pytest.raises(ConfigError, match="choose one way to authenticate"):
        resolve({"api_key_file": str(key), "username": "u"}, {"MODELSCRIBE_PASSWORD": "p"})


def test_relative_paths_in_file_are_relative_to_the_file(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    cfg = tmp_path / "conf" / "m.yaml"
    cfg.write_text("state_dir: state\n")
    monkeypatch.chdir("/")
    config = resolve({}, {}, str(cfg))
    assert config.state_dir == os.path.join(str(tmp_path), "conf", "state")


@pytest.mark.parametrize("raw, seconds", [("250ms", 0.25), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0),
                                          ("7d", 604800.0), ("3", 3.0), (1.5, 1.5)])
def test_durations(raw, seconds):
    assert resolve({"flush_interval": raw}, {}).flush_interval == seconds


@pytest.mark.parametrize("raw, size", [("512", 512), ("1KiB", 1024), ("10MB", 10_000_000), ("1GiB", 1 << 30)])
def test_sizes(raw, size):
    assert resolve({"bulk_max_bytes": raw}, {}).bulk_max_bytes == size


def test_inputs_with_their_own_format(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("inputs:\n  - paths: [ts/*.log]\n    format: torchserve\n  - path: /srv/triton.log\n"
                   "    format: triton\n")
    config = resolve({}, {}, str(cfg), require_paths=True)
    assert [(spec.paths, spec.format) for spec in config.inputs] == [
        ((str(tmp_path / "ts/*.log"),), "torchserve"), (("/srv/triton.log",), "triton")]
    assert config.all_paths == (str(tmp_path / "ts/*.log"), "/srv/triton.log")
    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs:\n  - paths: [a.log]\n    format: nginx\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: inputs\[1\].format: 'nginx' is not a known format"):
        resolve({}, {}, str(bad))


def test_timezone_is_checked():
    assert resolve({"timezone": "Europe/Paris"}, {}).timezone == "Europe/Paris"
    with pytest.raises(ConfigError, match="--timezone: 'Mars/Olympus' is not a known time zone"):
        resolve({"timezone": "Mars/Olympus"}, {})


def test_where_unknown_files_start_reaches_the_tailer(tmp_path):
    from agent.pipeline import tail_settings

    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"paths: [{tmp_path}/*.log]\nread_from: end\nignore_older: 2d\n")
    settings = tail_settings(resolve({}, {}, str(cfg)))
    assert settings.read_from_end is True and settings.ignore_older == 2 * 86400
    off = tail_settings(resolve({"paths": (str(tmp_path / "*.log"),), "ignore_older": "off"}, {}))
    assert off.read_from_end is False and off.ignore_older is None
