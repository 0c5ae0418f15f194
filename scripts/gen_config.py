#!/usr/bin/env python3
"""Generate packaging/modelscribe.yml, the packaged /etc/modelscribe/modelscribe.yml,
from the option table (agent/config/options.py ``OPTIONS``).

Every option appears once, commented out, with its help text, its flag and
environment variable, and its default written as a value the file accepts
(``#scan_interval: 10s``). Explanations start with ``# ``; a setting line
starts with ``#`` directly followed by the key, so deleting that one ``#``
turns it on. A test fails when the checked-in file differs from what this
script writes, and another uncomments every setting line and resolves the
file through the real configuration code: each written default must read back
as the option's default.

    python3 scripts/gen_config.py            # rewrite packaging/modelscribe.yml
    python3 scripts/gen_config.py --check    # exit 1 when it is stale
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from agent.config import values as v  # noqa: E402
from agent.config.options import OPTIONS, SECRET_ENV, Option  # noqa: E402

TARGET = ROOT / "packaging" / "modelscribe.yml"

GROUPS = {
    "input": "Input: which files are tailed, and where offsets are kept",
    "parsing": "Parsing",
    "enrich": "Enrichment, privacy and volume",
    "output": "Output",
    "spool": "Spool: the disk buffer between reading and sending",
    "process": "Process",
}

HEADER = """\
# modelscribe configuration (/etc/modelscribe/modelscribe.yml)
#
# Generated from the agent's option table by scripts/gen_config.py: every
# setting is listed below, commented out, with its default. To change one,
# delete the "#" in front of its key and edit the value. A key with no value
# counts as absent. Relative paths are relative to this file.
#
# Each setting is also a flag (modelscribe run --help) and an environment
# variable MODELSCRIBE_<NAME>; precedence: flag > environment > this file >
# default. `modelscribe check config --config /etc/modelscribe/modelscribe.yml`
# shows the value each setting takes and where it came from.
#
# Secrets are not read from this file. The API key comes from api_key_file or
# {api_key}, the password from password_file or {password};
# under systemd, from the credentials es-api-key and es-password
# (LoadCredential= in modelscribe.service: /etc/modelscribe/es-api-key and
# /etc/modelscribe/es-password, mode 0600, owned by root).
""".format(api_key=SECRET_ENV["api_key"], password=SECRET_ENV["password"])

FOOTER = """\

# --- Per-input parse settings -------------------------------------------------
#
# Groups of paths with their own format, log_format or map_fields (what an
# input does not set comes from the settings above), for example:
#
#   inputs:
#     - paths: [/var/log/torchserve/*.log]
#       format: torchserve
#     - paths: [/var/log/triton/*.log]
#       format: triton
"""

_DURATIONS = (v.duration, v.positive_duration, v.optional_duration)
_UNITS = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))
_SIZES = ((1024 ** 3, "GiB"), (1024 ** 2, "MiB"), (1024, "KiB"))


def _duration(seconds: float) -> str:
    for unit, suffix in _UNITS:
        if seconds >= unit and seconds % unit == 0:
            return f"{int(seconds // unit)}{suffix}"
    return f"{int(round(seconds * 1000))}ms"


def _size(count: int) -> str:
    for unit, suffix in _SIZES:
        if count >= unit and count % unit == 0:
            return f"{count // unit}{suffix}"
    return str(count)


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def render_value(option: Option) -> str:
    """The default as the file writes it, as ``--help`` shows it ('' for none:
    the key reads as absent; ``unlimited`` and ``off`` where None means that)."""
    default = option.default
    if default is None:
        return "unlimited" if option.convert is v.retries else "off" if option.convert is v.optional_duration else ""
    if option.multiple:
        return _scalar(list(default))
    if option.convert in _DURATIONS:
        return _duration(default)
    if option.convert is v.size:
        return _size(default)
    return _scalar(default)


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, width=78, initial_indent="# ", subsequent_indent="# ",
                         break_on_hyphens=False, break_long_words=False)


def render() -> str:
    lines = [HEADER]
    group = None
    for option in OPTIONS:
        if option.group != group:
            group = option.group
            title = GROUPS.get(group, group.capitalize())
            lines.append(f"\n# --- {title} " + "-" * max(3, 73 - len(title)) + "\n")
        value = render_value(option)
        shown = (", ".join(map(str, option.default)) if option.multiple else value) or "none"
        flag = f"{option.flag}/--no-{option.flag[2:]}" if option.switch else option.flag
        lines.extend(_wrap(option.help))
        lines.extend(_wrap(f"flag {flag}, environment {option.env}; default: {shown}"))
        lines.append(f"#{option.name}:" + (f" {value}" if value else ""))
        lines.append("")
    lines.append(FOOTER)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    parser.add_argument("--output", type=Path, default=TARGET, help=f"default: {TARGET.relative_to(ROOT)}")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python3 scripts/gen_config.py", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
