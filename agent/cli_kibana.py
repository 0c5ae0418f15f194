"""``modelscribe setup dashboards``: the click side of agent.kibana.importer.

Registered on the ``setup`` group by agent/cli.py. Takes the Elasticsearch
connection's credential and TLS options (Kibana accepts the same API keys
and users) plus ``--kibana-url`` and ``--space``.
"""

from __future__ import annotations

from typing import Any

import click

from agent import cli_options as listed
from agent.cli_options import GroupedCommand, settings_options


@click.command("dashboards", cls=GroupedCommand)
@click.option("--kibana-url", required=True, envvar="MODELSCRIBE_KIBANA_URL", metavar="URL",
              help="Kibana's URL, e.g. https://kibana.example:5601 (or MODELSCRIBE_KIBANA_URL).")
@click.option("--space", default=None, metavar="ID", help="Kibana space to import into (default: the default space).")
@settings_options(listed.SETUP_TEMPLATES)
def dashboards(kibana_url: str, space: str | None, **params: Any) -> None:
    """Import the data views, saved search and dashboards of kibana/ into Kibana
    8.8 or later (overwrites our own objects; reports each one)."""
    from agent.cli import _fail, _resolve
    from agent.errors import ModelscribeError
    from agent.kibana.importer import KibanaSettings, format_outcomes, import_dashboards
    from agent.kibana.render import ndjson

    try:
        config = _resolve(params, require_paths=False)
        settings = KibanaSettings(kibana_url, space, config.api_key, config.username, config.password,
                                  config.ca_cert, config.client_cert, config.client_key, config.tls_verify,
                                  config.request_timeout)
        outcomes = import_dashboards(settings, ndjson().encode())
    except ModelscribeError as error:
        _fail(error)
        return
    click.echo(format_outcomes(outcomes))
    click.echo(f"{len(outcomes)} objects imported into {kibana_url}" + (f" (space {space})" if space else ""))
