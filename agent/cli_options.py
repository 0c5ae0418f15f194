"""The settings flags of each ``modelscribe`` command, and their grouped help.

Every command resolves the whole ``Config`` (flag > environment > file >
default), but lists in ``--help`` only the settings it uses: ``status``
shows ``--state-dir`` and ``--dead-letter-file``, ``setup templates`` the
connection settings, ``run`` and ``check config`` all of them. The other
settings are still accepted as hidden flags, exactly as their environment
variables and file keys are: one set of flags (or one config file) serves
every command, and a script that passes ``run``'s flags to ``status`` keeps
working.

Click has no option groups: ``GroupedCommand`` writes the settings under
the headings of the README's settings table (input, parsing, output,
enrichment, spool, process), each with its type (``DURATION``, ``SIZE``,
``[batch|interval|never]``...), its default and its environment variable.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

import click

from agent.config import values as v
from agent.config.options import GROUP_TITLES, OPTIONS, Option

# The Elasticsearch connection: what every command that talks to the node needs.
CONNECTION = ("es_urls", "api_key_file", "username", "password_file", "ca_cert", "client_cert", "client_key",
              "tls_verify", "request_timeout")

# Settings a command lists (None: every setting). --log-level is everyone's.
STATUS = ("state_dir", "dead_letter_file", "dead_letter_index", "log_level")
DLQ = ("state_dir", "dead_letter_file", "dead_letter_index") + CONNECTION + ("log_level",)
CHECK_OUTPUT = ("output",) + CONNECTION + ("data_stream", "index", "log_level")
SETUP_TEMPLATES = CONNECTION + ("log_level",)

# The README's order of the groups; options.py's group names.
GROUP_ORDER = ("input", "parsing", "output", "enrich", "spool", "process")

_METAVARS = {
    "paths": "GLOB", "excludes": "GLOB", "state_dir": "DIR", "spool_dir": "DIR", "model_from_path": "TEMPLATE",
    "labels": "KEY=VALUE", "redact_fields": "FIELD", "hash_fields": "FIELD", "service_name": "NAME",
    "host_name": "NAME", "username": "NAME", "log_format": "FORMAT", "redact_patterns": "NAME|REGEX",
}
_BY_CONVERTER: dict[Callable[..., Any], str] = {
    v.duration: "DURATION", v.positive_duration: "DURATION", v.optional_duration: "DURATION|off", v.size: "SIZE", v.regex: "REGEX", v.url: "URL",
    v.index_name: "NAME", v.output: "[elasticsearch|opensearch|file:PATH|console|null]", v.retries: "N|unlimited",
    v.fraction: "RATE", v.listen_address: "HOST:PORT|off", v.timezone: "ZONE", v.map_field: "SOURCE=TARGET",
    v.assignment: "NAME=VALUE",
}

EPILOG = ("DURATION: 250ms, 5s, 2m, 1h, 7d or seconds. SIZE: 512KiB, 10MB, 1GiB or bytes. "
          "Every setting is also an environment variable MODELSCRIBE_<FLAG> and a key of the --config file; "
          "precedence: flag > environment > file > default. Every command accepts every setting; "
          "`modelscribe run --help` lists them all.")


def _closure(option: Option) -> dict[str, Any]:
    """The arguments a converter factory (``v.choice``, ``v.integer``) closed over."""
    try:
        return dict(inspect.getclosurevars(option.convert).nonlocals)
    except TypeError:
        return {}


def metavar(option: Option) -> str | None:
    """How the help names the value: GLOB, DURATION, [batch|interval|never], N (1-64)..."""
    if option.switch:
        return None
    if option.name in _METAVARS:
        return _METAVARS[option.name]
    if option.convert is v.log_format:
        from agent.parsing import FORMATS

        return "[" + "|".join(["auto"] + sorted(set(FORMATS) - {"auto"})) + "]"
    if option.convert in _BY_CONVERTER:
        return _BY_CONVERTER[option.convert]
    bound = _closure(option)
    if "allowed" in bound:
        return "[" + "|".join(bound["allowed"]) + "]"
    if "low" in bound:
        return "N"
    return "FILE" if option.path else "TEXT"


def _duration(seconds: float) -> str:
    for unit, suffix in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if seconds >= unit and seconds % unit == 0:
            return f"{int(seconds // unit)}{suffix}"
    return f"{int(round(seconds * 1000))}ms"


def _size(count: int) -> str:
    for unit, suffix in ((1024 ** 3, "GiB"), (1024 ** 2, "MiB"), (1024, "KiB")):
        if count >= unit and count % unit == 0:
            return f"{count // unit}{suffix}"
    return str(count)


def default_text(option: Option) -> str | None:
    """The default as a user would type it (None: no default worth showing)."""
    default = option.default
    if option.switch:
        return "on" if default else "off"
    if option.multiple:
        return ", ".join(map(str, default)) or None
    if default is None:
        return "unlimited" if option.convert is v.retries else None
    if option.convert in (v.duration, v.positive_duration, v.optional_duration):
        return _duration(default)
    if option.convert is v.size:
        return _size(default)
    return str(default)


def extra_text(option: Option) -> str:
    """``[default: 10s; range 1-64; repeatable; env MODELSCRIBE_X]``."""
    parts = []
    shown = default_text(option)
    if shown is not None:
        parts.append(f"default: {shown}")
    bound = _closure(option)
    if "low" in bound:
        parts.append(f"range {bound['low']}-{bound['high']}" if bound.get("high") is not None
                     else f"at least {bound['low']}")
    if option.multiple and "repeatable" not in option.help:
        parts.append("repeatable")
    parts.append(f"env {option.env}")
    return "[" + "; ".join(parts) + "]"


# Each option's help and metavar, made once: every command declares every
# option, and reading a converter's closure (inspect) is slow enough to show
# in the start-up time of each run.
_TEXTS: dict[str, tuple[str, str | None]] = {}


def _declaration(option: Option, hidden: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    texts = _TEXTS.get(option.name)
    if texts is None:
        texts = _TEXTS[option.name] = (f"{option.help} {extra_text(option)}", metavar(option))
    # default=None: resolve() tells a flag given from one absent by the None.
    common: dict[str, Any] = {"default": None, "hidden": hidden, "help": texts[0]}
    if option.switch:
        stem = option.flag[2:]
        return click.option(f"--{stem}/--no-{stem}", option.name, **common)
    return click.option(option.flag, option.name, multiple=option.multiple, metavar=texts[1], **common)


class _ConfigFile(click.ParamType):
    """--config's type: text, and MODELSCRIBE_CONFIG is one path (never split,
    though the option is ``multiple`` so a repeated --config can be seen)."""

    name = "file"

    def split_envvar_value(self, rv: str) -> list[str]:
        return [rv] if rv else []

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value


_CONFIG_FILE = _ConfigFile()


def _one_config_file(ctx: click.Context, param: click.Parameter, value: Any) -> str | None:
    """The one --config file. Given twice, click would keep the last without a
    word: settings of the first would silently not apply. Refused (exit 2)."""
    given = list(value or ())
    if len(given) > 1:
        raise click.BadParameter(f"given {len(given)} times ({', '.join(given)}); one config file is read: "
                                 "merge the files, or give the settings of one as flags", ctx=ctx, param=param)
    return given[0] if given else None


def settings_options(names: Iterable[str] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: one click option per entry of the option table, plus
    --config. Those in ``names`` (all when None) are listed by --help and
    tagged with their group; the others are hidden but accepted."""
    listed = None if names is None else set(names)
    if listed is not None:
        unknown = listed - {option.name for option in OPTIONS}
        if unknown:
            raise ValueError(f"not options: {sorted(unknown)}")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(OPTIONS):
            func = _declaration(option, hidden=listed is not None and option.name not in listed)(func)
        return click.option("--config", "config_file", default=None, envvar="MODELSCRIBE_CONFIG", metavar="FILE",
                            type=_CONFIG_FILE, multiple=True, callback=_one_config_file,
                            help="YAML file of settings (keys are the option names). "
                                 "[env MODELSCRIBE_CONFIG]")(func)

    return decorate


_GROUP_OF = {option.name: option.group for option in OPTIONS}


class GroupedCommand(click.Command):
    """A command whose --help lists the settings under the README's group
    headings, after the command's own options (and --config, --help)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", EPILOG)
        super().__init__(*args, **kwargs)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own: list[tuple[str, str]] = []
        grouped: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            group = _GROUP_OF.get(param.name or "")
            if group is None:
                own.append(record)
            else:
                grouped.setdefault(group, []).append(record)
        if own:
            with formatter.section("Options"):
                formatter.write_dl(own)
        for group in sorted(grouped, key=lambda g: GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER)):
            with formatter.section(GROUP_TITLES.get(group, group.capitalize())):
                formatter.write_dl(grouped[group])
