"""Bad input of every kind is a ConfigError (exit code 2) naming the flag,
variable or file key, never an internal error, and never shows a secret:
secrets that cannot go into a request, credentials in a URL, a config file
that is not UTF-8, non-finite or huge durations and sizes, host names the
client cannot parse, scalars YAML typed on its own, null list items,
duplicate keys, empty URL lists and an unusable spool directory."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import resolve, yamlfile
from agent.config.options import OPTIONS
from agent.config.values import MAX_DURATION, MAX_SIZE, duration, size, url
from agent.errors import ConfigError


def _error(flags=None, env=None, config_file=None, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        resolve(flags or {}, env or {}, config_file, **kwargs)
    assert caught.value.exit_code == 2
    return str(caught.value)


def _file(tmp_path, text: str | bytes, name: str = "agent.yml") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


# -- secrets ---------------------------------------------------------------------------

_BAD_KEYS = [("Zq9\nKw", "a line break"), ("ключZq9Kw", "a non-ASCII character"), ("Zq9\x01Kw", "a control character"),
             ("Zq9\rKw", "a line break"), ("Zq9\x7fKw", "a control character")]


@pytest.mark.parametrize("key, found", _BAD_KEYS)
def test_an_api_key_that_cannot_go_into_a_header_is_refused_and_not_shown(tmp_path, key, found):
    path = tmp_path / "key"
    path.write_text(key + "\n")
    message = _error({"api_key_file": str(path)})
    assert message.startswith(f"--api-key-file {path}: the API key must be one line of printable ASCII")
    assert found in message
    message_env = _error(env={"MODELSCRIBE_API_KEY": key})
    assert message_env.startswith("MODELSCRIBE_API_KEY: the API key must be one line")
    for shown in (message, message_env):
        assert "Zq9" not in shown and "Kw" not in shown


def test_a_password_with_a_line_break_is_refused_and_a_non_ascii_one_is_fine(tmp_path):
    path = tmp_path / "pw"
    path.write_text("hunter2\nsecond-line\n")
    message = _error({"username": "elastic", "password_file": str(path)})
    assert message == (f"--password-file {path}: the password must be one line without control characters; "
                       "it holds a line break (the value is not shown)")
    assert "hunter2" not in _error({"username": "elastic"}, {"MODELSCRIBE_PASSWORD": "hunter2\tx"})
    # Basic authentication sends base64 of UTF-8: any printable text works.
    assert resolve({"username": "elastic"}, {"MODELSCRIBE_PASSWORD": "pässwörd"}).password is not None


def test_a_systemd_credential_is_checked_too(tmp_path):
    (tmp_path / "es-api-key").write_text("a\nb\n")
    message = _error(env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert message.startswith("$CREDENTIALS_DIRECTORY/es-api-key") and "a line break" in message


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1).filter(lambda text: text.strip()))
def test_any_api_key_either_fits_in_a_header_or_is_refused_without_being_shown(key):
    try:
        config = resolve({}, {"MODELSCRIBE_API_KEY": key})
    except ConfigError as error:
        assert key.strip() not in str(error)
        return
    ("ApiKey " + config.api_key.reveal()).encode("latin-1")  # what the HTTP client does
    assert "\n" not in config.api_key.reveal() and "\r" not in config.api_key.reveal()


# -- URLs ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["https://jdoe:se/cret@es:9200", "https://jdoe:pa#ss@es:9200",
                                 "https://jdoe:pa?ss@es:9200", "https://jdoe:p@ss@w0rd@es:9200",
                                 "ftp://jdoe:pa@ss@es:21", "https://jdoe:pa ss@es:9200"])
def test_credentials_in_a_url_are_never_shown(raw):
    message = _error({"es_urls": (raw,)})
    assert "credentials do not belong in the URL" in message
    assert "@es" in message
    for part in ("jdoe", "se/cret", "pa#ss", "pa?ss", "ss@w0rd", "pa@ss", "pa ss"):
        assert part not in message


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=4, max_size=20))
def test_no_url_message_shows_the_password_whatever_it_holds(password):
    def message(secret: str) -> str:
        with pytest.raises(ValueError) as refused:  # every URL with an @ is refused
            url(f"https://elastic:{secret}@es.example:9200")
        return str(refused.value)

    # The message does not depend on the password at all (a plain "not in" fails
    # for a password such as "http", which the message holds anyway).
    assert message(password) == message("\x00never-shown\x00")


@pytest.mark.parametrize("host", ["a..b", ".a", "a" * 64 + ".example", "a\x01b", ("a" * 60 + ".") * 5 + "b"])
def test_a_host_the_client_cannot_parse_is_refused(host):
    message = _error({"es_urls": (f"http://{host}:9200",)})
    assert message.startswith("--es-url: ") and "is not a host name" in message


@pytest.mark.parametrize("raw", ["http://es_1:9200", "http://a.b.example.:9200", "http://[::1]:9200",
                                 "http://bücher.example:9200", "https://10.0.0.1", "http://es:9200/prefix"])
def test_usual_hosts_are_fine(raw):
    assert url(raw) == raw


@pytest.mark.parametrize("env, config_text, expected", [
    ({"MODELSCRIBE_ES_URL": ","}, None, "MODELSCRIBE_ES_URL: ',' holds no value"),
    ({"MODELSCRIBE_PATH": " , ,"}, None, "MODELSCRIBE_PATH: ' , ,' holds no value"),
    ({}, "es_url: []\n", "agent.yml: es_url: no URL given"),
])
def test_an_empty_list_of_urls_or_paths_is_refused(tmp_path, env, config_text, expected):
    config_file = _file(tmp_path, config_text) if config_text else None
    assert expected in _error({}, env, config_file)


# -- the config file -------------------------------------------------------------------

@pytest.mark.parametrize("content, expected", [
    (b"\xff\xfe bad: \x80\n", "not UTF-8 text (byte 0xff at line 1)"),
    (b"workers: 2\n\x7fELF\x02\x01\x01\x00\x00\x00\x80\x81", "not UTF-8 text (byte 0x80 at line 2)"),
])
def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path, content, expected):
    path = _file(tmp_path, content)
    assert _error(config_file=path) == f"--config {path}: {expected}; a config file is YAML text"
    assert _error(config_file=path, config_origin="MODELSCRIBE_CONFIG").startswith(f"MODELSCRIBE_CONFIG {path}: ")


def test_a_utf8_bom_is_fine(tmp_path):
    assert resolve({}, {}, _file(tmp_path, b"\xef\xbb\xbfworkers: 3\n")).workers == 3


def test_errors_about_the_file_name_where_it_was_given(tmp_path):
    missing = str(tmp_path / "nope.yml")
    assert _error(config_file=missing, config_origin="MODELSCRIBE_CONFIG").startswith(
        f"MODELSCRIBE_CONFIG {missing}: cannot read the file")


@pytest.mark.parametrize("text, expected", [
    ("workers: 3\nworkers: 5\n", "the key 'workers' is given twice, at line 1 and at line 2; keep one"),
    ("health:\n  window: 60\n  window: 30\n", "the key 'window' is given twice, at line 2 and at line 3"),
    ("labels:\n  a: x\n  b: y\n  a: z\n", "the key 'a' is given twice, at line 2 and at line 4"),
])
def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path, text, expected):
    path = _file(tmp_path, text)
    assert _error(config_file=path).startswith(f"--config {path}: {expected}")


def test_a_merge_key_override_is_not_a_duplicate(tmp_path):
    path = _file(tmp_path, "labels:\n  <<: {a: x, b: y}\n  a: z\n")
    assert dict(resolve({}, {}, path).labels) == {"a": "z", "b": "y"}


# -- durations and sizes -----------------------------------------------------------------

_DURATIONS = [o for o in OPTIONS if o.convert.__name__ in ("duration", "positive_duration", "optional_duration")]
_SIZES = [o for o in OPTIONS if o.convert.__name__ == "size"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(_DURATIONS + _SIZES),
       value=st.one_of(st.floats(), st.integers(min_value=-10 ** 30, max_value=10 ** 30),
                       st.sampled_from([".inf", "-.inf", ".nan", "1e400", "99999999999999d", "9" * 400])))
def test_any_number_for_a_duration_or_size_is_a_value_in_bounds_or_a_config_error(tmp_path, option, value):
    text = f"{option.name}: {value!r}\n" if isinstance(value, (int, float)) else f"{option.name}: {value}\n"
    text = text.replace("nan", ".nan").replace("inf", ".inf").replace("-.inf", "-.inf")
    path = _file(tmp_path, text)
    try:
        config = resolve({}, {}, path)
    except ConfigError as error:
        assert str(error).startswith(f"{path}: {option.name}")
        return
    got = getattr(config, option.name)
    if got is not None:
        assert math.isfinite(got) and 0 <= got <= (MAX_SIZE if option in _SIZES else MAX_DURATION)


@pytest.mark.parametrize("flag, raw, expected", [
    ("flush_interval", "99999999999d", "'99999999999d' is too long: a duration is at most 3650d (10 years)"),
    ("shutdown_timeout", "3651d", "is too long"),
    ("spool_max_bytes", "99999999999999GiB", "is too large: a size is at most 1PiB"),
    ("spool_max_bytes", "1.001PiB", "'1.001PiB' is too large: a size is at most 1PiB"),
    ("max_line_bytes", "9" * 400, "is too large"),
])
def test_durations_and_sizes_have_upper_bounds(flag, raw, expected):
    assert expected in _error({flag: raw})


def test_nan_and_infinity_are_refused_by_the_converters():
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            duration(bad)
        with pytest.raises(ValueError):
            size(bad)
    assert duration("3650d") == MAX_DURATION and size("1048576GiB") == MAX_SIZE


def test_the_limit_is_written_in_units_the_parser_takes():
    """The message quotes the limit as 1PiB: TiB and PiB (and TB, PB) are units like GiB and GB."""
    assert size("1PiB") == size("1pib") == size("1024TiB") == MAX_SIZE == 1024 ** 5
    assert size("2TiB") == 2 * 1024 ** 4 and size("3TB") == 3 * 1000 ** 4 and size("1PB") == 1000 ** 5
    assert size("0.5 TiB") == 1024 ** 4 // 2
    assert resolve({"spool_max_bytes": "1PiB"}, {}).spool_max_bytes == MAX_SIZE


# -- YAML's own types ------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("username: 0123\n", "username: YAML reads 0123 as the number 83; quote the value"),
    ("service_name: no\n", "service_name: YAML reads an unquoted false, no or off as the boolean false"),
    ("state_dir: yes\n", "state_dir: YAML reads an unquoted true, yes or on as the boolean true"),
    ("labels: {version: 1.10}\n", "labels.version: YAML reads 1.10 as the number 1.1; quote the value if it is "
                                  "meant as text, e.g. '1.10'"),
    ("labels: {a: }\n", "labels.a: no value"),
    ("labels: {a: [1, 2]}\n", "labels.a: expected a single value, not a list"),
    ("labels: {on: x}\n", "labels.True: YAML reads an unquoted true"),
    ("workers: 010\n", "workers: YAML reads 010 as the number 8 (octal, hexadecimal or base 60)"),
    ("workers: 0x10\n", "workers: YAML reads 0x10 as the number 16"),
    ("scan_interval: 1:30\n", "scan_interval: YAML reads 1:30 as the number 90"),
    ("host_name: 1_000\n", "host_name: YAML reads 1_000 as the number 1000"),
    ("spool_fsync: off\n", "spool_fsync: YAML reads an unquoted false, no or off as the boolean false"),
    ("paths: [~]\n", "paths[1]: an empty item (YAML reads ~, null or a bare '-' as no value)"),
    ("exclude: [a, null]\n", "exclude[2]: an empty item"),
    ("redact_pattern: [~]\n", "redact_pattern[1]: an empty item"),
    ("paths:\n  - a.log\n  -\n", "paths[2]: an empty item"),
    ("map_fields: {took: 1.10}\n", "map_fields.took: YAML reads 1.10"),
    ("inputs: [{paths: a.log, format: no}]\n", "inputs[1].format: YAML reads an unquoted false"),
])
def test_a_scalar_yaml_would_change_is_refused_with_advice(tmp_path, text, expected):
    path = _file(tmp_path, text)
    assert f"{path}: {expected}" in _error(config_file=path)


def test_scalars_that_read_back_exactly_are_taken(tmp_path):
    path = _file(tmp_path, "service_name: 8080\nusername: '0123'\nlabels: {version: 2, rate: 1.5, v: '1.10'}\n"
                           "workers: 4\nsample: 0.50\nflush_interval: 1.5\nmax_line_bytes: 1_000\n"
                           "self_metrics_interval: off\nmetrics_addr: off\ngzip: yes\nspool_fsync: never\n"
                           "host_name: 2024-01-01\nmax_retries: -1\n",)
    config = resolve({}, {"MODELSCRIBE_PASSWORD": "pw"}, path)
    assert config.service_name == "8080" and config.username == "0123"
    assert dict(config.labels) == {"version": "2", "rate": "1.5", "v": "1.10"}
    assert config.workers == 4 and type(config.workers) is int
    assert config.sample == 0.5 and config.flush_interval == 1.5 and config.max_line_bytes == 1000
    assert config.self_metrics_interval is None and config.metrics_addr is None
    assert config.gzip is True and config.host_name == "2024-01-01" and config.max_retries is None


def test_health_numbers_are_plain_numbers(tmp_path):
    path = _file(tmp_path, "health: {reference_size: 10, thresholds: {psi: 0.5}}\n")
    health = resolve({}, {}, path).health
    assert type(health.reference_size) is int and type(health.thresholds.psi) is float


def test_plain_numbers_keep_shared_structures_shared():
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 30)]
    data = yamlfile.plain(yamlfile.load("\n".join(lines)))  # 10**30 leaves if expanded
    assert data["a29"][0] is data["a28"] and type(data["a0"][0]) is int
    recursive = yamlfile.plain(yamlfile.load("&r [1, *r]"))
    assert recursive[1] is recursive


# -- directories -----------------------------------------------------------------------

def test_an_unusable_spool_dir_is_refused_at_resolution(tmp_path):
    afile = tmp_path / "a.log"
    afile.write_text("x\n")
    assert _error({"spool_dir": str(afile)}) == f"--spool-dir {afile}: exists and is not a directory"
    nested = afile / "spool"
    assert _error({"spool_dir": str(nested)}) == f"--spool-dir {nested}: cannot be created: {afile} is not a directory"
    assert resolve({"spool_dir": str(afile), "spool": False}, {}).spool_dir == str(afile)  # no spool: not used
    assert resolve({"spool_dir": str(tmp_path / "new" / "spool")}, {}).spool_dir == str(tmp_path / "new" / "spool")
    assert not os.path.exists(tmp_path / "new")  # checked, not created


# -- redaction pattern names -----------------------------------------------------------

@pytest.mark.parametrize("spec, close", [("emial", "email"), ("Email", "email"), ("cards", "card"),
                                         ("api-key", "api_key"), ("bearr", "bearer"), ("secrets", "secret")])
def test_a_near_miss_of_a_builtin_pattern_name_is_refused_with_a_suggestion(tmp_path, spec, close):
    assert _error({"redact_patterns": (spec,)}) == (
        f"--redact-pattern {spec!r}: not a built-in pattern (did you mean {close!r}?); to redact the word {spec!r} "
        f"itself, write the regex (?:{spec})")
    path = _file(tmp_path, f"redact_pattern: [email, {spec}]\n")
    assert _error(config_file=path).startswith(f"{path}: redact_pattern {spec!r}: not a built-in pattern")


@pytest.mark.parametrize("spec", ["email", "card", "password", "(?:emial)", r"token=\w+"])
def test_builtin_names_and_other_words_and_regexes_are_taken(spec):
    assert resolve({"redact_patterns": (spec,)}, {}).redact_patterns == (spec,)


def test_a_config_that_is_a_fifo_or_a_directory_is_refused_at_once(tmp_path):
    """A FIFO given as --config blocked the command forever at open()."""
    fifo = tmp_path / "agent.yml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as caught:
        resolve({}, {}, str(fifo))
    assert str(caught.value) == f"--config {fifo}: not a regular file (a config file is YAML text)"
    with pytest.raises(ConfigError) as caught:
        resolve({}, {}, str(tmp_path))
    assert str(caught.value) == f"--config {tmp_path}: cannot read the file: Is a directory"
