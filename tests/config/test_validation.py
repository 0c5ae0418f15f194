"""Validation happens once, at resolution: whatever ``run`` would reject later
(the transforms' rules, the Elasticsearch client's URL rules, the spool's
minimum size) is rejected by ``resolve``, and so by ``check config``, with
the flag, variable or file key the value came from."""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from agent.config import resolve
from agent.config import stages
from agent.config.values import url
from agent.errors import ConfigError


def _error(flags=None, env=None, config_file=None) -> str:
    with pytest.raises(ConfigError) as caught:
        resolve(flags or {}, env or {}, config_file)
    assert caught.value.exit_code == 2
    return str(caught.value)


@pytest.mark.parametrize("flags, expected", [
    ({"redact_patterns": ("(",)}, "--redact-pattern '(': not a valid regular expression"),
    ({"redact_patterns": ("x*",)}, "--redact-pattern 'x*': matches the empty string"),
    ({"es_urls": ("http://es:notaport",)}, "--es-url: 'http://es:notaport': the port must be a number"),
    ({"es_urls": ("http://es:99999",)}, "--es-url: 'http://es:99999': the port must be a number"),
    ({"es_urls": ("http://es:0",)}, "--es-url: 'http://es:0': the port must be a number"),
    ({"es_urls": ("http://es",)}, "--es-url: 'http://es' needs a port"),
    ({"es_urls": ("ftp://es:21",)}, "--es-url: 'ftp://es:21' is not an http:// or https:// URL"),
    ({"es_urls": ("https://elastic:hunter2@es:9200",)}, "credentials do not belong in the URL"),
    ({"model_from_path": ("/logs/{model.nme}/*.log",)}, "--model-from-path '/logs/{model.nme}/*.log': "
                                                        "placeholder {model.nme} names no known field"),
    ({"model_from_path": ("/logs/{model.name/*.log",)}, "--model-from-path '/logs/{model.name/*.log': unclosed"),
    ({"hash_fields": ("@timestamp",)}, "--hash-field @timestamp: the agent needs this field"),
    ({"hash_fields": ("http.response.status_code",)}, "--hash-field http.response.status_code: a long field"),
    ({"fields": ("nosuchset.x=1",)}, "--field nosuchset.x: nosuchset is not an ECS or model field set"),
    ({"fields": ("http.response.status_code=abc",)}, "--field http.response.status_code=abc: "),
    ({"labels": ("a.b=c",)}, "--label a.b=c: a label key is"),
    # A key path over 512 bytes below a flattened field: a document's own keys are cut (HEAD~HASH).
    ({"labels": ("k" * 513 + "=v",)}, "the key below labels is 513 bytes, over 512"),
    ({"fields": ("extra." + "k" * 600 + "=1",)}, "--field extra.kkk"),
    ({"fields": ("extra." + "k" * 600 + "=1",)}, "the key below extra is 600 bytes"),
    ({"map_fields": ("x=labels." + "k" * 513,)}, "the key below labels is 513 bytes, over 512"),
    ({"map_fields": ("x=model.prediction.a." + "k" * 600,)}, "the key below model.prediction is 602 bytes"),
    ({"redact_fields": ("message",), "hash_fields": ("message",)}, "--hash-field message: also given to "
                                                                   "--redact-field"),
    ({"max_field_bytes": "10"}, "--max-field-bytes 10: at least 64"),
    ({"spool_max_bytes": "100"}, "--spool-max-bytes: 100 bytes is too small for the spool"),
    ({"multiline_max_lines": "0"}, "--multiline-max-lines: 0 is out of range"),
])
def test_what_run_would_reject_is_rejected_at_resolution(flags, expected):
    assert expected in _error(flags)


def test_a_configured_key_of_512_bytes_is_fine():
    config = resolve({"labels": ("k" * 512 + "=v",), "map_fields": ("x=labels." + "m" * 512,)}, {})
    assert config.labels == (("k" * 512, "v"),)


def test_a_small_spool_is_fine_without_the_spool():
    assert resolve({"spool_max_bytes": "100", "spool": False}, {}).spool_max_bytes == 100


@pytest.mark.parametrize("name, env, expected", [
    ("redact_patterns", {"MODELSCRIBE_REDACT_PATTERN": "("}, "MODELSCRIBE_REDACT_PATTERN '(': not a valid"),
    ("hash_fields", {"MODELSCRIBE_HASH_FIELD": "@timestamp"}, "MODELSCRIBE_HASH_FIELD @timestamp: the agent"),
    ("es_urls", {"MODELSCRIBE_ES_URL": "http://a:9200,http://b:99999"}, "MODELSCRIBE_ES_URL: 'http://b:99999'"),
    ("model_from_path", {"MODELSCRIBE_MODEL_FROM_PATH": "/x/{nope}/*.log"}, "MODELSCRIBE_MODEL_FROM_PATH "),
])
def test_environment_values_are_named_by_their_variable(name, env, expected):
    message = _error(env=env)
    assert message.startswith(expected)
    assert "--" not in message.split(":")[0]


@pytest.mark.parametrize("yaml_text, expected", [
    ("redact_patterns: ['email', '(']\n", "{file}: redact_patterns '(': not a valid regular expression"),
    ("redact-pattern: '('\n", "{file}: redact-pattern '(': not a valid regular expression"),
    ("hash_fields: ['@timestamp']\n", "{file}: hash_fields @timestamp: the agent needs this field"),
    ("fields:\n  nosuchset.x: '1'\n", "{file}: fields nosuchset.x: nosuchset is not an ECS"),
    ("es_urls: ['http://es:9200', 'http://es:notaport']\n", "{file}: es_urls[2]: 'http://es:notaport': the port"),
    ("es_url: http://es:99999\n", "{file}: es_url: 'http://es:99999': the port must be a number"),
    ("paths: ['a.log', '']\n", "{file}: paths[2]: must not be empty"),
    ("keep_original: maybe\n", "{file}: keep_original: 'maybe' is not a boolean"),
    ("keep-original: [true]\n", "{file}: keep-original: expected a single value, not a list"),
    ("workers: {a: 1}\n", "{file}: workers: expected a single value, not a mapping"),
    ("paths: {a: 1}\n", "{file}: paths: expected a list (or one value), not a mapping"),
    ("api_key_file: missing-key\n", "{file}: api_key_file {dir}/missing-key: cannot read the file"),
    ("password-file: missing\nusername: u\n", "{file}: password-file {dir}/missing: cannot read the file"),
    ("ca_cert: ca.pem\n", "{file}: ca_cert {dir}/ca.pem: the file does not exist"),
    ("client_cert: c.pem\n", "{file}: client_cert and --client-key go together"),
    ("username: elastic\n", "{file}: username needs a password"),
    ("index: a\ndata_stream: logs-b-c\n", "{file}: index and {file}: data_stream: choose one target"),
    ("output: file:no/such/dir/out.ndjson\n", "{file}: output file:{dir}/no/such/dir/out.ndjson: directory"),
    ("spool_max_bytes: 100\n", "{file}: spool_max_bytes: 100 bytes is too small"),
    ("multiline_timeout: 0s\n", "{file}: multiline_timeout: must be longer than zero"),
    ("es_url: http://a:9200\nes_urls: [http://b:9200]\n", "{file}: 'es_url' and 'es_urls' are the same setting"),
    ("inptus: []\n", "{file}: unknown setting 'inptus' (did you mean 'inputs'?)"),
])
def test_file_values_are_named_by_their_file_key(tmp_path, yaml_text, expected):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(yaml_text)
    message = _error(config_file=str(cfg))
    assert message.startswith(expected.format(file=cfg, dir=tmp_path)), message


def test_a_secret_file_named_by_env_is_reported_by_its_variable(tmp_path):
    message = _error(env={"MODELSCRIBE_API_KEY_FILE": str(tmp_path / "none")})
    assert message.startswith(f"MODELSCRIBE_API_KEY_FILE {tmp_path}/none: cannot read the file")


def test_a_key_without_value_counts_as_absent(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text("workers:\nhost_name:\n")
    config = resolve({}, {}, str(cfg))
    assert config.workers == 2 and config.origins["workers"] == "default"


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    (conf / "out").mkdir(parents=True)
    cfg = conf / "agent.yml"
    cfg.write_text("output: file:out/docs.ndjson\nmodel_from_path: ['logs/{model.name}/*.log']\n"
                   "paths: [logs/*.log]\n")
    monkeypatch.chdir("/")
    config = resolve({}, {}, str(cfg))
    assert config.output == f"file:{conf}/out/docs.ndjson"
    assert config.model_from_path == (f"{conf}/logs/{{model.name}}/*.log",)
    assert config.paths == (f"{conf}/logs/*.log",)


def test_mappings_for_name_value_lists(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text("fields:\n  service.environment: prod\nlabels: {team: search}\n")
    config = resolve({}, {}, str(cfg))
    assert config.fields == (("service.environment", "prod"),)
    assert config.labels == (("team", "search"),)


def test_hash_fields_without_a_key_are_accepted_without_creating_one(tmp_path):
    state = tmp_path / "state"
    config = resolve({"hash_fields": ("user.name",), "state_dir": str(state)}, {})
    assert config.hash_fields == ("user.name",)
    assert not state.exists()  # the key is created by run, not by check config


def test_a_short_hash_key_is_rejected_where_it_came_from():
    assert _error({"hash_fields": ("user.name",)}, {"MODELSCRIBE_HASH_KEY": "short"}).startswith(
        "--hash-key-file / MODELSCRIBE_HASH_KEY: the key must be at least")


@pytest.mark.parametrize("raw", ["http://es:9200", "https://es", "https://es:443/prefix", "http://[::1]:9200",
                                 "http://10.0.0.1:9200/", "HTTP://es:9200"])
def test_every_url_the_config_accepts_the_client_accepts(raw):
    from elasticsearch import Elasticsearch

    try:
        value = url(raw)
    except ValueError:
        return  # refusing more than the client is allowed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Elasticsearch([value]).close()


@pytest.mark.parametrize("raw", ["http://es", "http://es:notaport", "http://es:99999", "http://:9200"])
def test_urls_the_client_refuses_are_refused(raw):
    from elasticsearch import Elasticsearch

    with pytest.raises(ValueError):
        url(raw)
    with pytest.raises(ValueError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Elasticsearch([raw])


def test_the_stage_settings_agree_with_the_daemon(tmp_path):
    from agent.pipeline import build_transforms, parse_settings

    config = resolve({"format": "json", "multiline_start": "^X", "multiline_max_lines": "7",
                      "keep_original": True, "redact_patterns": ("email",), "sample": "0.5",
                      "hash_fields": ("user.name",), "state_dir": str(tmp_path / "state")}, {})
    assert stages.parse_settings(config) == parse_settings(config)
    transforms = build_transforms(config)  # accepted at resolution -> the daemon takes it
    assert transforms.settings == stages.transform_settings(config, transforms.settings.hash_key)


def test_a_config_that_skipped_resolution_fails_loudly(tmp_path):
    """build_transforms no longer turns a ValueError into a ConfigError: with
    validation at resolution, a bad value reaching it is a bug."""
    from agent.pipeline import build_transforms

    config = dataclasses.replace(resolve({"state_dir": str(tmp_path)}, {}), redact_patterns=("(",))
    with pytest.raises(ValueError, match="--redact-pattern"):
        build_transforms(config)


def test_relabel_swaps_only_flags_that_came_from_elsewhere():
    where = {"fields": "/f.yml: fields", "service_name": "--service-name"}
    by_flag = {"--field": "fields", "--service-name": "service_name"}
    message = "--service-name and --field service.name=...: choose one"
    assert stages.relabel(message, where, by_flag) == \
        "--service-name and /f.yml: fields service.name=...: choose one"
    assert stages.relabel("--no-such-flag x", where, by_flag) == "--no-such-flag x"


def test_output_files_are_checked_as_the_outputs_will_open_them(tmp_path):
    text = tmp_path / "not-pem.txt"
    text.write_text("hello\n")
    assert _error({"ca_cert": str(text)}).startswith(f"--ca-cert {text}: not a PEM CA bundle")
    assert _error({"client_cert": str(text), "client_key": str(text)}) == \
        f"--client-cert {text}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    assert _error({"output": f"file:{tmp_path}"}) == f"--output file:{tmp_path}: is a directory, not a file"
    assert _error({"dead_letter_file": str(tmp_path / "no" / "dl.ndjson")}) == \
        f"--dead-letter-file {tmp_path}/no/dl.ndjson: directory {tmp_path}/no does not exist"
    # In the state directory (created by run) is fine even before it exists.
    state = tmp_path / "state"
    assert resolve({"state_dir": str(state), "dead_letter_file": str(state / "dl.ndjson")}, {})
    cfg = tmp_path / "agent.yml"
    cfg.write_text(f"ca-cert: {text.name}\n")
    assert _error(config_file=str(cfg)).startswith(f"{cfg}: ca-cert {text}: not a PEM CA bundle")


def test_a_client_key_or_certificate_that_does_not_load_is_named_with_the_reason(tmp_path):
    # Audit 5: an encrypted key, or the two files swapped, got "not a PEM
    # certificate and its key ([SSL] PEM lib ...)".
    cert = tmp_path / "client.crt"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----\n")
    message = _error({"client_cert": str(cert), "client_key": str(encrypted)})
    assert message.startswith(f"--client-key {encrypted}: the key is encrypted"), message
    assert f"openssl pkey -in {encrypted}" in message
    message = _error({"client_cert": str(key), "client_key": str(cert)})
    assert message == (f"--client-cert {key}: holds no PEM certificate (-----BEGIN CERTIFICATE-----) "
                       "(it holds a private key: are the two flags swapped?)"), message
    message = _error({"client_cert": str(cert), "client_key": str(cert)})
    assert message == (f"--client-key {cert}: holds no PEM private key (-----BEGIN PRIVATE KEY-----) "
                       "(it holds a certificate: are the two flags swapped?)"), message
    message = _error({"client_cert": str(cert), "client_key": str(key)})  # (both of the right kind, damaged)
    assert message.startswith(f"--client-cert {cert} and --client-key {key}: not a PEM certificate and its key ("), \
        message


def test_a_directory_the_agent_cannot_write_is_refused_with_the_remedy(tmp_path, monkeypatch):
    # Audit 8: "--spool-dir X: the directory is not writable" and nothing more, for
    # an immutable directory (root's access() says no there; chattr -i says why).
    spool = tmp_path / "spool"
    spool.mkdir()
    real_access = stages.os.access
    monkeypatch.setattr(stages.os, "access", lambda path, mode: False if str(path) == str(spool)
                        else real_access(path, mode))
    with pytest.raises(ConfigError) as raised:
        resolve({"state_dir": str(tmp_path / "state"), "spool_dir": str(spool)}, {})
    assert str(raised.value) == (f"--spool-dir {spool}: the directory is not writable; make it writable for the "
                                 "agent's user (its owner and mode; an immutable directory: chattr -i; a read-only "
                                 "file system: repair it and mount it read-write)")
