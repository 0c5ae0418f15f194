"""``modelscribe setup watchers`` and ``setup rules``: the click side of agent.alerting.install.

Registered on the ``setup`` group by agent/cli.py (``register(setup)``).
Both take the Elasticsearch connection's credential and TLS options;
``rules`` adds ``--kibana-url`` and ``--space`` (Kibana accepts the same API
keys and users, as for ``setup dashboards``).

Exit codes: 0 installed, or (watchers) skipped because the licence has no
Watcher - the reason is printed; 2 a bad option (an unknown space, a bad
URL); 3 the cluster or Kibana unreachable, credentials refused, a missing
privilege, a Kibana too old; 4 an object refused. Whatever was installed
before a failure is printed first.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from agent import cli_options as listed
from agent.cli_options import GroupedCommand, settings_options


def _install(params: dict[str, Any], install: Callable[[Any], list]) -> list | None:
    """Resolve the config, run `install(config)` and print what was installed.

    On failure, what was installed before it is printed, then the error
    (exit code by its class); None is returned."""
    from agent.alerting.install import PartialInstall, format_installed
    from agent.cli import _fail, _resolve
    from agent.errors import ModelscribeError

    try:
        installed = install(_resolve(params, require_paths=False))
    except PartialInstall as error:
        for line in format_installed(error.installed):
            click.echo(line)
        _fail(error)
        return None
    except ModelscribeError as error:
        _fail(error)
        return None
    for line in format_installed(installed):
        click.echo(line)
    return installed


@click.command("watchers", cls=GroupedCommand)
@settings_options(listed.SETUP_TEMPLATES)
def watchers(**params: Any) -> None:
    """Install the anomaly rules as Elasticsearch Watcher watches (needs a Standard,
    Gold or higher licence: on Basic nothing is written and the reason is printed)."""
    from agent.alerting.install import install_watchers
    from agent.outputs.elasticsearch import ElasticsearchOutput
    from agent.setup.templates import requester

    def install(config: Any) -> list:
        output = ElasticsearchOutput.from_config(config)
        try:
            return install_watchers(requester(output))
        finally:
            output.close()

    installed = _install(params, install)
    if installed is None:
        return
    if installed and installed[0].outcome == "skipped":
        click.echo("watchers: skipped")
    else:
        click.echo(f"{len(installed)} watches installed")


@click.command("rules", cls=GroupedCommand)
@click.option("--kibana-url", required=True, envvar="MODELSCRIBE_KIBANA_URL", metavar="URL",
              help="Kibana's URL, e.g. https://kibana.example:5601 (or MODELSCRIBE_KIBANA_URL).")
@click.option("--space", default=None, metavar="ID", help="Kibana space for the rules (default: the default space).")
@settings_options(listed.SETUP_TEMPLATES)
def rules(kibana_url: str, space: str | None, **params: Any) -> None:
    """Install the anomaly rules as Kibana "Elasticsearch query" rules (any licence),
    with an index connector writing what fires into modelscribe-alerts."""
    from agent.alerting.install import install_rules
    from agent.kibana.importer import KibanaSettings

    def install(config: Any) -> list:
        return install_rules(KibanaSettings(
            kibana_url, space, config.api_key, config.username, config.password, config.ca_cert,
            config.client_cert, config.client_key, config.tls_verify, config.request_timeout))

    installed = _install(params, install)
    if installed is None:
        return
    click.echo(f"{len(installed) - 1} rules installed into {kibana_url}" + (f" (space {space})" if space else ""))


def register(group: click.Group) -> None:
    """Attach ``watchers`` and ``rules`` to the ``setup`` group (agent/cli.py calls this)."""
    group.add_command(watchers)
    group.add_command(rules)
