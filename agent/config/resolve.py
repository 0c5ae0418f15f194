"""One resolution step from flags, environment and YAML file to a frozen Config.

Precedence: flag > environment variable > config file > default. Every value
is converted and validated here, once; a bad value raises ConfigError that
names where it came from (``--workers``, ``MODELSCRIBE_WORKERS`` or
``/etc/modelscribe.yaml: workers``) and why it is wrong. ``Config.origins``
remembers the origin of each value so ``check config`` can show it.

Secrets never come from a flag value (it would show in ``ps``): the API key is
read from ``--api-key-file`` or ``MODELSCRIBE_API_KEY``, the password from
``--password-file`` or ``MODELSCRIBE_PASSWORD``, and both are held as
``Secret``.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from agent.config.options import BY_NAME, OPTIONS, SECRET_ENV, Option
from agent.errors import ConfigError
from agent.selflog import Secret


@dataclass(frozen=True)
class InputSpec:
    """One entry of the config file's ``inputs:`` list: globs read with one format."""

    paths: tuple[str, ...]
    format: str


@dataclass(frozen=True)
class Config:
    paths: tuple[str, ...]
    excludes: tuple[str, ...]
    scan_interval: float
    partial_line_timeout: float
    max_line_bytes: int
    fingerprint_bytes: int
    close_inactive: float
    state_dir: str
    state_ttl: float
    format: str
    multiline_start: str | None
    multiline_max_lines: int
    multiline_max_bytes: int
    multiline_timeout: float
    keep_original: bool
    timezone: str | None
    host_name: str | None
    fields: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    service_name: str | None
    model_from_path: tuple[str, ...]
    kubernetes_paths: bool
    host_metadata: bool
    keep_payloads: bool
    redact_fields: tuple[str, ...]
    redact_patterns: tuple[str, ...]
    redact_defaults: bool
    hash_fields: tuple[str, ...]
    hash_key_file: str | None
    sample: float
    max_field_bytes: int
    output: str
    es_urls: tuple[str, ...]
    api_key_file: str | None
    username: str | None
    password_file: str | None
    ca_cert: str | None
    client_cert: str | None
    client_key: str | None
    tls_verify: bool
    data_stream: str
    index: str | None
    bulk_max_docs: int
    bulk_max_bytes: int
    flush_interval: float
    workers: int
    gzip: bool
    request_timeout: float
    max_retries: int | None
    backoff_max: float
    dead_letter_file: str | None
    dead_letter_index: str | None
    spool: bool
    spool_dir: str | None
    spool_max_bytes: int
    spool_fsync: str
    when_full: str
    close_removed_after: float
    once: bool
    shutdown_timeout: float
    queue_events: int
    log_level: str
    api_key: Secret | None = None
    password: Secret | None = None
    hash_key: Secret | None = None
    inputs: tuple[InputSpec, ...] = ()
    config_file: str | None = None
    origins: Mapping[str, str] = field(default_factory=dict)

    @property
    def all_paths(self) -> tuple[str, ...]:
        """Every glob to tail: --path and the paths of each input."""
        return self.paths + tuple(path for spec in self.inputs for path in spec.paths)

    @property
    def target(self) -> str:
        """The index or data stream documents are written to."""
        return self.index or self.data_stream

    @property
    def spool_path(self) -> str:
        return self.spool_dir or os.path.join(self.state_dir, "spool")

    @property
    def dead_letter_path(self) -> str:
        return self.dead_letter_file or os.path.join(self.state_dir, "dead-letter.ndjson")


def _split_env(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _load_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read the file: {error.strerror}") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"--config {path}: not valid YAML{where}: "
                          f"{getattr(error, 'problem', None) or error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: the file must hold a mapping of settings, not a "
                          f"{type(data).__name__}")
    by_key = {key: option for option in OPTIONS for key in option.keys}
    found: dict[str, Any] = {}
    for key, value in data.items():
        if key == "inputs":
            found["inputs"] = _inputs(value, path)
            continue
        option = by_key.get(str(key))
        if option is None:
            hint = difflib.get_close_matches(str(key), list(by_key), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            if str(key) in SECRET_ENV:
                extra = f" (secrets are not read from the config file: use {key}_file or {SECRET_ENV[key]})"
            raise ConfigError(f"{path}: unknown setting {key!r}{extra}")
        found[option.name] = value
    return found


def _absolute(path: str, base_dir: str) -> str:
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))


def _inputs(raw: Any, path: str) -> tuple[InputSpec, ...]:
    """``inputs: [{paths: [...], format: NAME}, ...]`` (YAML only)."""
    from agent.config.values import log_format

    if not isinstance(raw, list):
        raise ConfigError(f"{path}: inputs must be a list of {{paths: [...], format: NAME}}")
    base = os.path.dirname(os.path.abspath(path))
    specs = []
    for number, item in enumerate(raw, 1):
        where = f"{path}: inputs[{number}]"
        if not isinstance(item, dict) or set(item) - {"paths", "path", "format"}:
            raise ConfigError(f"{where}: expected a mapping with 'paths' and 'format' only")
        globs = item.get("paths", item.get("path"))
        globs = [globs] if isinstance(globs, str) else globs
        if not globs or not all(isinstance(g, str) and g.strip() for g in globs):
            raise ConfigError(f"{where}: 'paths' must be a glob or a list of globs")
        try:
            fmt = log_format(item.get("format", "auto"))
        except ValueError as error:
            raise ConfigError(f"{where}: format: {error}") from None
        specs.append(InputSpec(tuple(_absolute(g, base) for g in globs), fmt))
    return tuple(specs)


def _convert(option: Option, raw: Any, where: str, base_dir: str | None) -> Any:
    try:
        if option.multiple:
            items = raw if isinstance(raw, (list, tuple)) else [raw]
            value: Any = tuple(option.convert(item) for item in items)
        elif raw is None:
            return None
        else:
            value = option.convert(raw)
        if option.path and value is not None and base_dir:
            value = tuple(_absolute(item, base_dir) for item in value) if option.multiple \
                else _absolute(value, base_dir)
        return value
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def resolve(flags: Mapping[str, Any], env: Mapping[str, str], config_file: str | None = None,
            require_paths: bool = False) -> Config:
    """Build the Config. ``flags`` maps option names to values given on the
    command line (absent or None when not given)."""
    file_values = _load_file(config_file) if config_file else {}
    file_dir = os.path.dirname(os.path.abspath(config_file)) if config_file else None
    chosen: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for option in OPTIONS:
        given = flags.get(option.name)
        if given is not None and not (option.multiple and len(given) == 0):
            chosen[option.name] = _convert(option, given, option.flag, os.getcwd())
            origins[option.name] = f"flag {option.flag}"
        elif env.get(option.env, "").strip():
            raw: Any = env[option.env]
            if option.multiple:
                raw = _split_env(raw) if option.env_split else [raw]
            chosen[option.name] = _convert(option, raw, option.env, os.getcwd())
            origins[option.name] = f"env {option.env}"
        elif option.name in file_values:
            chosen[option.name] = _convert(option, file_values[option.name],
                                           f"{config_file}: {option.name}", file_dir)
            origins[option.name] = f"file {config_file}"
        else:
            chosen[option.name] = option.default
            origins[option.name] = "default"
    secrets = _read_secrets(chosen, env, origins)
    inputs = file_values.pop("inputs", ())
    config = Config(**chosen, **secrets, inputs=inputs, config_file=config_file, origins=origins)
    _validate(config, require_paths)
    return config


def _read_secret_file(path: str, flag: str) -> Secret:
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as error:
        raise ConfigError(f"{flag} {path}: cannot read the file: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{flag} {path}: the file is not UTF-8 text") from error
    if not value:
        raise ConfigError(f"{flag} {path}: the file is empty")
    return Secret(value)


def _read_secrets(chosen: dict[str, Any], env: Mapping[str, str], origins: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {"api_key": None, "password": None, "hash_key": None}
    for name, file_option in (("api_key", "api_key_file"), ("password", "password_file"),
                              ("hash_key", "hash_key_file")):
        path = chosen[file_option]
        if path:
            found[name] = _read_secret_file(path, BY_NAME[file_option].flag)
            origins[name] = f"file {path}"
        elif env.get(SECRET_ENV[name], "").strip():
            found[name] = Secret(env[SECRET_ENV[name]].strip())
            origins[name] = f"env {SECRET_ENV[name]}"
    return found


def _validate(config: Config, require_paths: bool) -> None:
    if require_paths and not config.all_paths:
        raise ConfigError("--path: at least one glob of files to tail is required "
                          "(flag --path, env MODELSCRIBE_PATH or 'paths' in the config file)")
    if config.api_key and (config.username or config.password):
        raise ConfigError("--api-key-file and --username: choose one way to authenticate, not both")
    if config.password and not config.username:
        raise ConfigError("--password-file / MODELSCRIBE_PASSWORD needs --username")
    if config.username and not config.password:
        raise ConfigError("--username needs a password: --password-file or MODELSCRIBE_PASSWORD")
    if bool(config.client_cert) != bool(config.client_key):
        raise ConfigError("--client-cert and --client-key go together: give both or neither")
    for name in ("ca_cert", "client_cert", "client_key"):
        path = getattr(config, name)
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"{BY_NAME[name].flag} {path}: the file does not exist or is not readable")
    if config.index and config.origins.get("data_stream") != "default":
        raise ConfigError("--index and --data-stream: choose one target, not both")
    if config.output.startswith("file:"):
        parent = os.path.dirname(os.path.abspath(config.output[5:])) or "."
        if not os.path.isdir(parent):
            raise ConfigError(f"--output {config.output}: directory {parent} does not exist")
    if config.multiline_max_bytes < 1 or config.max_line_bytes < 1:
        raise ConfigError("--max-line-bytes and --multiline-max-bytes must be positive")
    state = Path(config.state_dir)
    if state.exists() and not state.is_dir():
        raise ConfigError(f"--state-dir {state}: exists and is not a directory")


def describe(config: Config) -> list[tuple[str, str, str]]:
    """(setting, value, origin) rows for ``check config``; secrets masked."""
    rows = []
    for option in OPTIONS:
        value = getattr(config, option.name)
        if option.multiple:
            shown = ", ".join("=".join(item) if isinstance(item, tuple) else item for item in value) \
                if value else "(none)"
        else:
            shown = "(unset)" if value is None else str(value)
        rows.append((option.name, shown, config.origins.get(option.name, "default")))
    for name in ("api_key", "password", "hash_key"):
        if getattr(config, name) is not None:
            rows.append((name, "***", config.origins[name]))
    for number, spec in enumerate(config.inputs, 1):
        rows.append((f"inputs[{number}]", f"{', '.join(spec.paths)} as {spec.format}", f"file {config.config_file}"))
    return rows


def config_field_names() -> set[str]:
    return {f.name for f in fields(Config)} - {"api_key", "password", "hash_key", "inputs", "config_file",
                                               "origins"}
