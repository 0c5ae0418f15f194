"""``modelscribe health ...``: commands about model health's saved state.

``health reset-reference`` drops the references collected from the first
events (``<state_dir>/health/reference.json``) and leaves a marker that a
running agent (at its next checkpoint, within a second) or the next start
takes: the references are then collected again from the next events. A
reference given as a file (``health.reference``) is not touched.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from agent import cli_options as listed
from agent.cli import _fail, _resolve, main
from agent.cli_options import GroupedCommand, settings_options
from agent.errors import EXIT_OK, ModelscribeError


@main.group()
def health() -> None:
    """Model health: the reference distributions drift is measured against."""


@health.command("reset-reference", cls=GroupedCommand)
@settings_options(listed.STATUS)
def reset_reference(**params: Any) -> None:
    """Collect the reference again from the next events (drops the stored one)."""
    from agent.health.reference import reset

    try:
        config = _resolve(params, require_paths=False)
        if not os.path.isdir(config.state_dir):  # nothing to reset; create no state directory
            click.echo(f"no state directory {config.state_dir}; nothing to reset")
            sys.exit(EXIT_OK)
        existed = reset(os.path.join(config.state_dir, "health"))
    except ModelscribeError as error:
        _fail(error)
        return
    click.echo("reference dropped; it is collected again from the next events" if existed
               else "no stored reference; the next events build it")
    sys.exit(EXIT_OK)
