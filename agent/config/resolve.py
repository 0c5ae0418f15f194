"""One resolution step from flags, environment and YAML file to a frozen Config.

Precedence: flag > environment variable > config file > default. Every value
is converted and validated here, once; a bad value raises ConfigError that
names where it came from (``--workers``, ``MODELSCRIBE_WORKERS`` or
``/etc/modelscribe.yaml: workers``) and why it is wrong. ``Config.origins``
remembers the origin of each value so ``check config`` can show it.

Secrets never come from a flag value (it would show in ``ps``): the API key is
read from ``--api-key-file`` or ``MODELSCRIBE_API_KEY``, the password from
``--password-file`` or ``MODELSCRIBE_PASSWORD``, and both are held as
``Secret``. Under systemd, when none of those is given, they come from the
credentials ``es-api-key`` and ``es-password`` in ``$CREDENTIALS_DIRECTORY``
(``agent.service``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from agent.config import stages, yamlfile
from agent.config import values as v
from agent.config.options import BY_NAME, OPTIONS, SECRET_ENV, Option
from agent.config.secrets import read_secrets
from agent.errors import ConfigError
from agent.selflog import Secret

if TYPE_CHECKING:
    from agent.parsing.settings import ParseSettings


# The parse settings an ``inputs:`` entry may set for its files (ParseSettings
# field names); every other key of an entry is an error with a did-you-mean.
INPUT_SETTINGS = ("format", "log_format", "map_fields", "parse_at", "container_format")
# ``health`` is an input's model-health block, read by agent.health.config
# (not a parse setting), but a key of the entry all the same.
_INPUT_KEYS = ("paths", "path") + INPUT_SETTINGS + ("health",)
# The shortest --backoff-max: retries are spread at random below it (tenacity's
# wait_random_exponential), so 0 retried at once, in a busy loop.
MIN_BACKOFF = 0.1


@dataclass(frozen=True)
class InputSpec:
    """One entry of the config file's ``inputs:`` list: globs, and the parse
    settings that differ for their files (None: not set for this input, the
    global setting applies)."""

    paths: tuple[str, ...]
    format: str | None = None
    log_format: str | None = None
    map_fields: tuple[tuple[str, str], ...] | None = None
    parse_at: str | None = None
    container_format: str | None = None
    # How the file spelt each setting's key (log-format or log_format), for messages.
    keys: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def apply(self, settings: ParseSettings) -> ParseSettings:
        """``settings`` with this input's own values in place of the global ones."""
        changes = {name: getattr(self, name) for name in INPUT_SETTINGS if getattr(self, name) is not None}
        return dataclasses.replace(settings, **changes) if changes else settings

    def describe(self) -> str:
        """``/logs/*.log (format=torchserve, log_format=...)`` for ``check config``."""
        own = [f"{name}={_shown(getattr(self, name))}" for name in INPUT_SETTINGS
               if getattr(self, name) is not None]
        return ", ".join(self.paths) + (f" ({'; '.join(own)})" if own else "")


@dataclass(frozen=True)
class Config:
    paths: tuple[str, ...]
    excludes: tuple[str, ...]
    scan_interval: float
    partial_line_timeout: float
    max_line_bytes: int
    fingerprint_bytes: int
    close_inactive: float
    read_from: str
    ignore_older: float | None
    state_dir: str
    state_ttl: float
    format: str
    log_format: str | None
    multiline_start: str | None
    multiline_max_lines: int
    multiline_max_bytes: int
    multiline_timeout: float
    keep_original: bool
    map_fields: tuple[tuple[str, str], ...]
    parse_at: str
    container_format: str
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
    metrics_addr: str | None
    health_blocked_after: float
    self_metrics_interval: float | None
    api_key: Secret | None = None
    password: Secret | None = None
    hash_key: Secret | None = None
    inputs: tuple[InputSpec, ...] = ()
    config_file: str | None = None
    origins: Mapping[str, str] = field(default_factory=dict)
    health: Any = None  # agent.health.config.HealthSettings, from the file's health: block

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


class _FileSettings:
    """What the config file holds: values by option name, the key each was
    written under (``api-key-file`` stays ``api-key-file`` in messages), and
    the ``inputs:`` entries."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.values: dict[str, Any] = {}
        self.keys: dict[str, str] = {}
        self.inputs: tuple[InputSpec, ...] = ()
        self.health: Any = None  # agent.health.config.HealthSettings

    def label(self, name: str) -> str:
        return f"{self.path}: {self.keys[name]}"


def _load_file(path: str, origin: str = "--config") -> _FileSettings:
    """The settings of the config file ``path`` (``origin``: --config or
    MODELSCRIBE_CONFIG, as messages about the file as a whole name it)."""
    try:
        # O_NONBLOCK: a FIFO (or a device) named by mistake must not hang the command at open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ConfigError(f"{origin} {path}: not a regular file (a config file is YAML text)")
            content = handle.read()
    except OSError as error:
        raise ConfigError(f"{origin} {path}: cannot read the file: {error.strerror}") from error
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise ConfigError(f"{origin} {path}: not UTF-8 text (byte 0x{content[error.start]:02x} at line {line}); "
                          "a config file is YAML text") from None
    try:
        data = yamlfile.load(text)
    except yamlfile.DuplicateKey as error:
        raise ConfigError(f"{origin} {path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{origin} {path}: not valid YAML{where}: "
                          f"{getattr(error, 'problem', None) or error}") from error
    found = _FileSettings(path)
    if data is None:
        return found
    if not isinstance(data, dict):
        raise ConfigError(f"{origin} {path}: the file must hold a mapping of settings, not a "
                          f"{type(data).__name__}")
    by_key = {key: option for option in OPTIONS for key in option.keys}
    for key, value in data.items():
        if key == "inputs":
            if value is not None:  # `inputs:` with no value: absent, as any key with no value
                found.inputs = _inputs(value, path)
            continue
        if key == "health":
            continue  # read below, with the inputs' own health blocks (agent.health.config)
        option = by_key.get(str(key))
        if option is None:
            hint = difflib.get_close_matches(str(key), list(by_key) + ["inputs"], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            if str(key) in SECRET_ENV:
                extra = f" (secrets are not read from the config file: use {key}_file or {SECRET_ENV[key]})"
            raise ConfigError(f"{path}: unknown setting {key!r}{extra}")
        if option.name in found.keys:
            raise ConfigError(f"{path}: {found.keys[option.name]!r} and {key!r} are the same setting; keep one")
        if value is None:  # `key:` with no value: as if the key were absent
            continue
        found.values[option.name] = value
        found.keys[option.name] = str(key)
    if "health" in data or any(isinstance(i, dict) and "health" in i for i in data.get("inputs") or []):
        from agent.health.config import from_file
        found.health = from_file(yamlfile.plain(data), path, found.inputs)
    return found


def _absolute(path: str, base_dir: str) -> str:
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))


def _inputs(raw: Any, path: str) -> tuple[InputSpec, ...]:
    """``inputs: [{paths: [...], format: NAME, log_format: ..., map_fields: ..., parse_at: ...}, ...]`` (YAML only)."""
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: inputs must be a list of {{paths: [...], format: NAME}}")
    base = os.path.dirname(os.path.abspath(path))
    accepted = {key: name for name in _INPUT_KEYS for key in (name, name.replace("_", "-"))}
    specs = []
    for number, item in enumerate(raw, 1):
        where = f"{path}: inputs[{number}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping with 'paths' and the settings of its files "
                              f"({', '.join(INPUT_SETTINGS)})")
        given: dict[str, tuple[str, Any]] = {}
        for key, value in item.items():
            if key == "health":
                continue  # the input's own health fields: agent.health.config.from_file
            name = accepted.get(str(key))
            if name is None:
                hint = difflib.get_close_matches(str(key), list(_INPUT_KEYS), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ConfigError(f"{where}: unknown key {key!r}{extra}; an input takes "
                                  f"{', '.join(('paths',) + INPUT_SETTINGS + ('health',))}")
            name = "paths" if name == "path" else name
            if name in given:
                raise ConfigError(f"{where}: {given[name][0]!r} and {key!r} are the same key; keep one")
            given[name] = (str(key), value)
        globs = given.get("paths", (None, None))[1]
        globs = [globs] if isinstance(globs, str) else globs
        if not globs or not isinstance(globs, list) or not all(isinstance(g, str) and g.strip() for g in globs):
            raise ConfigError(f"{where}: 'paths' must be a glob or a list of globs")
        settings = {name: _input_setting(name, value, f"{where}.{key}")
                    for name, (key, value) in given.items() if name != "paths" and value is not None}
        unknown = set(settings) - _parse_setting_names()
        if unknown:  # a setting this version's parsing stage does not have
            raise ConfigError(f"{where}.{given[min(unknown)][0]}: not supported by this version of the parser")
        specs.append(InputSpec(tuple(_absolute(g, base) for g in globs), **settings,
                               keys={name: key for name, (key, _) in given.items()}))
    return tuple(specs)


def _parse_setting_names() -> set[str]:
    from agent.parsing.settings import ParseSettings

    return {f.name for f in fields(ParseSettings)}


def _input_setting(name: str, raw: Any, where: str) -> Any:
    """One parse setting of an input, converted as the option of the same
    name converts it (``format``: a known format; ``map_fields``: SOURCE=TARGET
    items, or a mapping {SOURCE: TARGET})."""
    option = BY_NAME.get(name)
    try:
        if name == "map_fields":
            items = [_pair_item(source, target, where) for source, target in raw.items()] \
                if isinstance(raw, dict) else raw if isinstance(raw, list) else [raw]
            if not all(isinstance(item, str) for item in items):
                raise ValueError("expected SOURCE=TARGET items or a mapping {SOURCE: TARGET}")
            return tuple(option.convert(item) if option else _pair(item) for item in items)
        if isinstance(raw, (list, dict)):
            raise ValueError(f"expected a single value, not a {'list' if isinstance(raw, list) else 'mapping'}")
        return option.convert(yamlfile.scalar(option.convert, raw)) if option else str(raw)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def _pair_item(name: Any, value: Any, where: str) -> str:
    """``NAME=VALUE`` of one entry of a mapping given for a list of pairs
    (``labels: {version: '1.10'}``), each side a text scalar."""
    if value is None:
        raise ConfigError(f"{where}.{name}: no value (YAML reads an empty value or ~ as null); "
                          "write '' for an empty one")
    if isinstance(value, (list, dict)):
        raise ConfigError(f"{where}.{name}: expected a single value, not a "
                          f"{'list' if isinstance(value, list) else 'mapping'}")
    try:
        return f"{yamlfile.scalar(v.text, name)}={yamlfile.scalar(v.text, value)}"
    except ValueError as error:
        raise ConfigError(f"{where}.{name}: {error}") from None


def _pair(raw: str) -> tuple[str, str]:
    """SOURCE=TARGET (before the map_fields option exists to convert it)."""
    source, sep, target = raw.partition("=")
    if not sep or not source.strip() or not target.strip():
        raise ValueError(f"{raw!r}: expected SOURCE=TARGET")
    return source.strip(), target.strip()


# List options whose items are NAME=VALUE: the file may also give them as a mapping.
_PAIR_OPTIONS = ("fields", "labels", "map_fields")


def _convert(option: Option, raw: Any, where: str, base_dir: str | None, from_file: bool = False) -> Any:
    """The typed value of ``option``; ConfigError names ``where`` (and, for a
    list in the config file, the item: ``FILE: paths[2]``)."""
    if option.multiple:
        if from_file and isinstance(raw, dict):
            if option.name not in _PAIR_OPTIONS:
                raise ConfigError(f"{where}: expected a list (or one value), not a mapping")
            raw = [_pair_item(name, value, where) for name, value in raw.items()]
        items = raw if isinstance(raw, (list, tuple)) else [raw]
        numbered = from_file and isinstance(raw, list)
        for number, item in enumerate(items, 1):
            if item is None:
                raise ConfigError(f"{where}[{number}]: an empty item (YAML reads ~, null or a bare '-' as no "
                                  "value); remove it, or quote the text")
        return tuple(_convert_one(option, item, f"{where}[{number}]" if numbered else where, base_dir, from_file)
                     for number, item in enumerate(items, 1))
    if raw is None:
        return None
    return _convert_one(option, raw, where, base_dir, from_file)


def _convert_one(option: Option, raw: Any, where: str, base_dir: str | None, from_file: bool) -> Any:
    if from_file and isinstance(raw, (list, dict)):
        raise ConfigError(f"{where}: expected a single value, not a {'list' if isinstance(raw, list) else 'mapping'}")
    try:
        value = option.convert(yamlfile.scalar(option.convert, raw) if from_file else raw)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None
    if value is not None and base_dir:
        if option.path:
            value = _absolute(value, base_dir)
        elif option.name == "output" and value.startswith("file:"):
            value = "file:" + _absolute(value[5:], base_dir)
    return value


def resolve(flags: Mapping[str, Any], env: Mapping[str, str], config_file: str | None = None,
            require_paths: bool = False, config_origin: str = "--config", credentials: bool = True) -> Config:
    """Build the Config. ``flags`` maps option names to values given on the
    command line (absent or None when not given); ``config_origin`` names
    where ``config_file`` was given (--config or MODELSCRIBE_CONFIG).
    ``credentials=False``: a password the settings need may be missing (the
    check of systemd's ExecReload=, which cannot see the credentials)."""
    from_file = _load_file(config_file, config_origin) if config_file else None
    file_dir = os.path.dirname(os.path.abspath(config_file)) if config_file else None
    chosen: dict[str, Any] = {}
    origins: dict[str, str] = {}
    where: dict[str, str] = {}  # option name -> how messages name it: --flag, MODELSCRIBE_X or FILE: key
    for option in OPTIONS:
        given = flags.get(option.name)
        if given is not None and not (option.multiple and len(given) == 0):
            where[option.name] = option.flag
            chosen[option.name] = _convert(option, given, option.flag, os.getcwd())
            # (--no-spool was given as itself: check config names it so)
            origins[option.name] = f"flag --no-{option.flag[2:]}" if option.switch and given is False \
                else f"flag {option.flag}"
        elif env.get(option.env, "").strip():
            where[option.name] = option.env
            raw: Any = env[option.env]
            if option.multiple:
                raw = _split_env(raw) if option.env_split else [raw]
                if not raw:
                    raise ConfigError(f"{option.env}: {env[option.env]!r} holds no value (values are separated "
                                      "by commas); unset the variable to use the file's or the default")
            chosen[option.name] = _convert(option, raw, option.env, os.getcwd())
            origins[option.name] = f"env {option.env}"
        elif from_file is not None and option.name in from_file.values:
            where[option.name] = from_file.label(option.name)
            chosen[option.name] = _convert(option, from_file.values[option.name], where[option.name], file_dir,
                                           from_file=True)
            origins[option.name] = f"file {config_file}"
        else:
            where[option.name] = option.flag
            chosen[option.name] = option.default
            origins[option.name] = "default"
    secrets = read_secrets(chosen, env, origins, where)
    inputs = from_file.inputs if from_file is not None else ()
    config = Config(**chosen, **secrets, inputs=inputs, config_file=config_file, origins=origins,
                    health=from_file.health if from_file is not None else None)
    _validate(config, where, credentials)
    stages.check(config, where)
    if require_paths:  # run and check config: the agent writes its state there
        stages.check_state_dir(config.state_dir, f"{where['state_dir']} {config.state_dir}")
    if require_paths and not config.all_paths:  # last: a message about a given value comes first
        raise ConfigError("--path: at least one glob of files to tail is required "
                          "(flag --path, env MODELSCRIBE_PATH or 'paths' in the config file)")
    return config


def _validate(config: Config, where: Mapping[str, str], credentials: bool = True) -> None:
    """Checks across settings; messages name each value where it came from."""
    if not config.es_urls:
        raise ConfigError(f"{where['es_urls']}: no URL given; at least one Elasticsearch URL is needed "
                          "(e.g. http://localhost:9200)")
    if config.api_key and (config.username or config.password):
        raise ConfigError(f"{where['api_key']} and {where['username']}: choose one way to authenticate, "
                          "not both")
    if config.password and not config.username:
        raise ConfigError(f"{where['password']} needs --username")
    if config.username and not config.password and credentials:
        raise ConfigError(f"{where['username']} needs a password: --password-file or MODELSCRIBE_PASSWORD")
    if bool(config.client_cert) != bool(config.client_key):
        raise ConfigError(f"{where['client_cert']} and {where['client_key']} go together: give both or neither")
    for name in ("ca_cert", "client_cert", "client_key"):
        path = getattr(config, name)
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"{where[name]} {path}: the file does not exist or is not readable")
        problem = stages.regular_file_problem(path) if path else None
        if problem is not None:  # a FIFO would hang the TLS layer's read
            raise ConfigError(f"{where[name]} {path}: {problem}; give the PEM file")
    if config.backoff_max < MIN_BACKOFF:
        raise ConfigError(f"{where['backoff_max']}: {config.backoff_max * 1000:g}ms is too short: the longest wait "
                          f"between retries must be at least {MIN_BACKOFF * 1000:g}ms (a retry loop with no pause "
                          "hammers a cluster that is recovering, with a warning per try)")
    if config.index and config.origins.get("data_stream") != "default":
        raise ConfigError(f"{where['index']} and {where['data_stream']}: choose one target, not both")
    state = Path(config.state_dir)
    if state.exists() and not state.is_dir():
        raise ConfigError(f"{where['state_dir']} {state}: exists and is not a directory")
    if config.spool and config.spool_dir and \
            os.path.realpath(config.spool_dir) == os.path.realpath(config.state_dir):
        raise ConfigError(f"{where['spool_dir']} {config.spool_dir} and {where['state_dir']} {config.state_dir}: "
                          "the same directory; the spool needs a directory of its own (leave --spool-dir unset "
                          "for the default, STATE_DIR/spool, or name another one)")


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join("=".join(item) if isinstance(item, tuple) else str(item) for item in value) or "(none)"
    return "(unset)" if value is None else str(value)


# Settings whose None is a value in force, as ``check config`` shows it (not "(unset)").
_NONE_SHOWN = {"ignore_older": "off", "metrics_addr": "off", "self_metrics_interval": "off",
               "max_retries": "unlimited"}


def _effective(config: Config, name: str) -> tuple[str, str | None]:
    """(value, origin or None) of ``name`` as ``check config`` shows it: what
    is in force, ``off`` or ``unlimited`` for a setting turned off, and the
    path a default in the state directory gives."""
    value = getattr(config, name)
    origin = config.origins.get(name, "default")
    if value is None and name in _NONE_SHOWN:
        return _NONE_SHOWN[name], None
    if value is None and "not used:" in origin:  # a key file the environment's value overrides
        return "(not used)", None
    if name == "spool_dir" and value is None:
        return ("off (--no-spool)", None) if not config.spool else \
            (config.spool_path, f"{origin}: STATE_DIR/spool" if origin == "default" else origin)
    if name == "dead_letter_file" and value is None:
        return config.dead_letter_path, f"{origin}: STATE_DIR/dead-letter.ndjson" if origin == "default" else origin
    return _shown(value), None


def describe(config: Config) -> list[tuple[str, str, str]]:
    """(setting, value, origin) rows for ``check config``; secrets masked."""
    rows = []
    for option in OPTIONS:
        value, origin = _effective(config, option.name)
        rows.append((option.name, value, origin or config.origins.get(option.name, "default")))
    for name in ("api_key", "password", "hash_key"):
        if getattr(config, name) is not None:
            rows.append((name, "***", config.origins[name]))
    for number, spec in enumerate(config.inputs, 1):
        rows.append((f"inputs[{number}]", spec.describe(), f"file {config.config_file}"))
    return rows


def config_field_names() -> set[str]:
    return {f.name for f in fields(Config)} - {"api_key", "password", "hash_key", "inputs", "config_file",
                                               "origins", "health"}
