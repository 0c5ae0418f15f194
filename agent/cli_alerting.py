"""``modelscribe setup watchers``, ``setup rules`` and ``setup elastalert``: the click side of agent.alerting.

Registered on the ``setup`` group by agent/cli.py (``register(setup)``).
``watchers`` and ``rules`` take the Elasticsearch connection's credential
and TLS options; ``rules`` adds ``--kibana-url`` and ``--space`` (Kibana
accepts the same API keys and users, as for ``setup dashboards``).
``elastalert`` writes the ElastAlert2 rule files into ``--out``.

All three take ``--health-window`` and ``--health-lateness``: the rules'
look-backs are derived from the agents' health windows
(agent.alerting.rules.for_windows), because a window's document is written
only after window + lateness. Each flag wins over the ``--config`` file's
``health.window`` / ``health.lateness``, which win over 60 s and 30 s. A bad
value is a configuration error naming the flag, before anything is written.

Exit codes: 0 installed (or written), or (watchers) skipped because the
licence has no Watcher - the reason is printed; 2 a bad option (an unknown
space, a bad URL, a bad window, an unwritable ``--out``); 3 the cluster or
Kibana unreachable, credentials refused, a missing privilege, a Kibana too
old; 4 an object refused. Whatever was installed before a failure is
printed first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from agent import cli_options as listed
from agent.cli_options import GroupedCommand, settings_options


def _window_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--health-lateness", default=None, metavar="DURATION",
                        help="The agents' health.lateness (e.g. 30s, 2m): how long a window waits before it "
                             "is written. Default: the --config file's, else 30s.")(func)
    return click.option("--health-window", default=None, metavar="DURATION",
                        help="The agents' health.window (e.g. 60s, 5m, 1h): the rules' look-backs cover "
                             "enough windows of this size. Default: the --config file's, else 60s.")(func)


def health_spans(window: str | None, lateness: str | None, config: Any = None) -> tuple[int, float]:
    """(window, lateness) in seconds: the flags, else the config file's health block, else the defaults.
    ConfigError naming the flag for a bad value."""
    from agent.alerting.rules import DEFAULT_LATENESS_SECONDS, DEFAULT_WINDOW_SECONDS
    from agent.config.values import duration, whole_seconds
    from agent.errors import ConfigError

    health = getattr(config, "health", None)
    window_s: float = health.window if health is not None else DEFAULT_WINDOW_SECONDS
    lateness_s: float = health.lateness if health is not None else DEFAULT_LATENESS_SECONDS
    if window is not None:
        try:
            window_s = whole_seconds(window)  # as health.window: windows are aligned on the epoch
        except ValueError as error:
            raise ConfigError(f"--health-window {window}: {error}") from None
    if lateness is not None:
        try:
            lateness_s = duration(lateness)
        except ValueError as error:
            raise ConfigError(f"--health-lateness {lateness}: {error}") from None
    return int(window_s), float(lateness_s)


def _spans_line(rules: tuple, window: int, lateness: float) -> str:
    spans = ", ".join(f"{rule.slug} {rule.lookback_minutes} min" for rule in rules if rule.windows is not None)
    return f"look-backs for health windows of {window:g} s (lateness {lateness:g} s): {spans}"


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
@_window_options
@settings_options(listed.SETUP_TEMPLATES)
def watchers(health_window: str | None, health_lateness: str | None, **params: Any) -> None:
    """Install the anomaly rules as Elasticsearch Watcher watches (needs a Standard,
    Gold or higher licence: on Basic nothing is written and the reason is printed)."""
    from agent.alerting.install import install_watchers
    from agent.alerting.rules import for_windows
    from agent.outputs.elasticsearch import ElasticsearchOutput
    from agent.setup.templates import requester

    spans: list[str] = []

    def install(config: Any) -> list:
        window, lateness = health_spans(health_window, health_lateness, config)
        rules = for_windows(window, lateness)
        spans.append(_spans_line(rules, window, lateness))
        output = ElasticsearchOutput.from_config(config)
        try:
            return install_watchers(requester(output), rules)
        finally:
            output.close()

    installed = _install(params, install)
    if installed is None:
        return
    if installed and installed[0].outcome == "skipped":
        click.echo("watchers: skipped")
    else:
        click.echo(spans[0])
        click.echo(f"{len(installed)} watches installed")


@click.command("rules", cls=GroupedCommand)
@click.option("--kibana-url", required=True, envvar="MODELSCRIBE_KIBANA_URL", metavar="URL",
              help="Kibana's URL, e.g. https://kibana.example:5601 (or MODELSCRIBE_KIBANA_URL).")
@click.option("--space", default=None, metavar="ID", help="Kibana space for the rules (default: the default space).")
@_window_options
@settings_options(listed.SETUP_TEMPLATES)
def rules(kibana_url: str, space: str | None, health_window: str | None, health_lateness: str | None,
          **params: Any) -> None:
    """Install the anomaly rules as Kibana "Elasticsearch query" rules (any licence),
    with an index connector writing what fires into modelscribe-alerts."""
    from agent.alerting.install import install_rules
    from agent.alerting.rules import for_windows
    from agent.kibana.importer import KibanaSettings

    spans: list[str] = []

    def install(config: Any) -> list:
        window, lateness = health_spans(health_window, health_lateness, config)
        chosen = for_windows(window, lateness)
        spans.append(_spans_line(chosen, window, lateness))
        return install_rules(KibanaSettings(
            kibana_url, space, config.api_key, config.username, config.password, config.ca_cert,
            config.client_cert, config.client_key, config.tls_verify, config.request_timeout), chosen)

    installed = _install(params, install)
    if installed is None:
        return
    click.echo(spans[0])
    click.echo(f"{len(installed) - 1} rules installed into {kibana_url}" + (f" (space {space})" if space else ""))


@click.command("elastalert", cls=GroupedCommand)
@click.option("--out", required=True, metavar="DIR",
              help="Folder to write <rule>.yaml into (ElastAlert2's rules_folder, or one to review first); "
                   "created when missing; our files in it are overwritten.")
@_window_options
@settings_options(("log_level",))
def elastalert_files(out: str, health_window: str | None, health_lateness: str | None, **params: Any) -> None:
    """Write the anomaly rules as ElastAlert2 rule files (no licence; Elasticsearch or
    OpenSearch), with look-backs for the agents' health windows."""
    from agent.alerting import elastalert
    from agent.alerting.rules import for_windows
    from agent.cli import _fail, _resolve
    from agent.errors import ConfigError, ModelscribeError

    try:
        config = _resolve(params, require_paths=False, credentials=False)
        window, lateness = health_spans(health_window, health_lateness, config)
        chosen = for_windows(window, lateness)
        header = (f"# Generated by `modelscribe setup elastalert` for health windows of {window:g} s "
                  f"(lateness {lateness:g} s): do not edit.\n"
                  "# Replace `alert: [debug]` with your alerter; see docs/alerting.md.\n")
        folder = Path(out)
        written = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for rule in chosen:
                target = folder / f"{rule.slug}.yaml"
                target.write_text(elastalert.rule_yaml(rule, header), encoding="utf-8")
                written.append(target)
        except OSError as error:
            done = ", ".join(path.name for path in written) or "nothing"
            raise ConfigError(f"--out {out}: cannot write the rule files: {error} (written before: {done})") \
                from None
    except ModelscribeError as error:
        _fail(error)
        return
    for target in written:
        click.echo(f"wrote    {target}")
    click.echo(_spans_line(chosen, window, lateness))
    click.echo(f"{len(written)} ElastAlert2 rule files written into {out}")


def register(group: click.Group) -> None:
    """Attach ``watchers``, ``rules`` and ``elastalert`` to the ``setup`` group (agent/cli.py calls this)."""
    group.add_command(watchers)
    group.add_command(rules)
    group.add_command(elastalert_files)
