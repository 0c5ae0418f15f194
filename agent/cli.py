"""The ``modelscribe`` command. It only parses arguments and calls into the
package: ``run`` builds a Config and hands it to ``pipeline.Pipeline``.

    modelscribe run --path '/var/log/models/*.log' --es-url https://es:9200 --api-key-file KEY
    modelscribe check config [same flags]    # resolved settings, their origin, secrets masked
    modelscribe check output [connection flags]    # version, auth, privileges of the output
    modelscribe status --state-dir DIR        # offsets, lag, spool, dead letters
    modelscribe setup all|templates|pipelines|lifecycle [--dry-run] [--cleanup] [--retention 30d]
    modelscribe --version

Every flag has an environment variable (``MODELSCRIBE_<FLAG>``) and a YAML
key (``--config FILE``); precedence is flag > env > file > default. Each
command lists the settings it uses (``agent.cli_options``) and resolves the
whole configuration.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
from typing import Any, Iterator

import click

from agent import __version__
from agent import cli_options as listed
from agent.cli_options import GroupedCommand, settings_options
from agent.config import Config, describe, resolve
from agent.config.options import unknown_variables
from agent.errors import EXIT_OK, EXIT_OUTPUT, EXIT_REJECTED, EXIT_RUNTIME, ConfigError, ModelscribeError
from agent.selflog import configure, get_logger

log = get_logger("cli")
# Allocations (net of frees) that start a young collection while the agent runs (``run``).
_YOUNG_COLLECTION = 10_000


def _resolve(params: dict[str, Any], require_paths: bool, credentials: bool = True) -> Config:
    config_file = params.pop("config_file", None)
    config = resolve(params, os.environ, config_file, require_paths=require_paths, config_origin=_config_origin(),
                     credentials=credentials)
    configure(config.log_level)
    for message in unknown_variables(os.environ):
        log.warning(message)
    return config


def _config_origin() -> str:
    """How messages name the config file: --config, or MODELSCRIBE_CONFIG when it came from there."""
    context = click.get_current_context(silent=True)
    source = context.get_parameter_source("config_file") if context is not None else None
    return "MODELSCRIBE_CONFIG" if source is click.core.ParameterSource.ENVIRONMENT else "--config"


def _fail(error: ModelscribeError) -> None:
    click.echo(f"modelscribe: error: {error}", err=True)
    sys.exit(error.exit_code)


def entry() -> None:
    """The console script: click's handling, plus one line (and the traceback
    in the log) instead of a bare traceback when something unexpected breaks."""
    try:
        main(standalone_mode=True)
    except SystemExit:
        raise
    except Exception as error:  # a bug: say so plainly, keep the details
        log.error("unexpected error", exc_info=True, error=repr(error))
        click.echo(f"modelscribe: internal error: {error!r} (please report it with the log above)", err=True)
        sys.exit(EXIT_RUNTIME)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="modelscribe", message="%(prog)s %(version)s")
def main() -> None:
    """Ship machine-learning model logs into Elasticsearch, every line exactly once."""
    configure("info")


@main.command(cls=GroupedCommand)
@settings_options()
def run(**params: Any) -> None:
    """Tail the files and ship them until SIGTERM (or, with --once, to their end)."""
    from agent.early_signals import EarlySignals

    # Before the slow imports and the start-up: a SIGHUP must not kill the
    # daemon (exit 129) nor SIGINT abort it (exit 1); the pipeline takes over
    # what comes meanwhile (agent.supervise). Installed over the launcher's
    # (agent.launch), it adopts what that one recorded and the handlers it
    # replaced, so restore() and release() give back the defaults.
    early = EarlySignals()
    early.install()
    from agent.pipeline import Pipeline

    # SIGHUP resolves again from the same flags, the environment and the file as they are then.
    flags = {name: value for name, value in params.items() if name != "config_file"}
    config_file = params.get("config_file")
    origin = _config_origin()
    try:
        # A SIGHUP so far asks for no reload: the configuration read next is
        # the newest there is, so the daemon drops it rather than read it all
        # again once ready. One from here on is kept: it may come after the
        # file was read. --once does not reload: a SIGHUP keeps its default
        # action there (release, below).
        hangup, early.reload = early.reload, False
        config = _resolve(params, require_paths=True)
        if config.once:
            if hangup:
                early.reload = True  # only ever set here: a SIGHUP meanwhile is not lost
            early.release()  # --once keeps the default handling: SIGTERM and SIGINT end it
        else:
            # Once the pipeline has returned, the exit code is decided: not
            # even a signal while the interpreter exits may change it.
            atexit.register(early.ignore)
        unmatched = _warn_unmatched(config)
        pipeline = Pipeline(config, reload=lambda: resolve(flags, os.environ, config_file, require_paths=True,
                                                           config_origin=origin))
        # What exists now (modules, configuration, the pipeline) lives as long
        # as the process: the cyclic collector need not walk it again.
        gc.freeze()
        # The objects in flight (a group of up to 2,048 events, their records
        # and lines) outnumber the default 700 allocations that start a young
        # collection, which then walks them again and again: 4 % of the CPU of
        # --parse-at elasticsearch, 3 % of --parse-at agent (gc.callbacks,
        # 300,000 JSON lines). Few of them form cycles; they are freed by
        # their reference counts as each group is acknowledged.
        gc.set_threshold(_YOUNG_COLLECTION, 10, 10)
        code = pipeline.run()
    except ModelscribeError as error:
        early.restore()  # nothing runs any more: the default handling while the error is reported
        _fail(error)
        return
    for where, pattern in unmatched:  # --once: the summary says what was not read
        log.warning(f"nothing was read from {where} {pattern}: no file matched it")
    sys.exit(code)


def _unmatched(config: Config) -> list[tuple[str, str]]:
    """(where, glob) of each glob that matches no file now, named as it was
    given: ``--path``, ``MODELSCRIBE_PATH``, ``FILE: paths``, ``FILE: inputs[2]``."""
    from agent.sources.discovery import Discovery

    origin = config.origins.get("paths", "")
    where = ("--path" if origin.startswith("flag") else "MODELSCRIBE_PATH" if origin.startswith("env")
             else f"{config.config_file}: paths")
    named = [(where, pattern) for pattern in config.paths]
    named += [(f"{config.config_file}: inputs[{number}]", pattern)
              for number, spec in enumerate(config.inputs, 1) for pattern in spec.paths]
    return [named[number] for number in Discovery(config.all_paths, config.excludes).unmatched()]


def _warn_unmatched(config: Config) -> list[tuple[str, str]]:
    """Warn about each glob that matches no file now. The daemon keeps
    watching for them; ``--once`` returns them for its summary."""
    from agent.sources.discovery import why_unmatched

    unmatched = _unmatched(config)
    for where, pattern in unmatched:
        why = why_unmatched(pattern)
        because = {"reason": why} if why else {}
        if config.once:
            log.warning(f"no file matches {where} {pattern}; --once reads nothing from it", **because)
        else:
            log.warning(f"no file matches {where} {pattern} (yet); the agent keeps watching for it", **because)
    return unmatched if config.once else []


@main.group()
def check() -> None:
    """Validate the configuration or the output without shipping anything."""


@check.command("config", cls=GroupedCommand)
@click.option("--no-credentials", is_flag=True,
              help="Do not require a password the settings need: for systemd's ExecReload=, which cannot see "
                   "the credentials (the unit's reload check).")
@settings_options()
def check_config(no_credentials: bool, **params: Any) -> None:
    """Print the resolved settings, where each came from, secrets masked.
    Fails (exit 2) wherever `run` would, with the same message."""
    try:
        config = _resolve(params, require_paths=True, credentials=not no_credentials)
        _check_listen_host(config)
    except ModelscribeError as error:
        _fail(error)
        return
    rows = describe(config)
    width = max(len(name) for name, _, _ in rows)
    value_width = min(60, max(len(value) for _, value, _ in rows))
    for name, value, origin in rows:
        click.echo(f"{name:<{width}}  {value:<{value_width}}  ({origin})")
    from agent.sources.discovery import why_unmatched

    for where, pattern in _unmatched(config):
        why = why_unmatched(pattern)
        click.echo(f"note: no file matches {where} {pattern} (yet)" + (f": {why}" if why else ""), err=True)
    from agent.health.wiring import describe as describe_health
    formats = [("--format", config.format)] + [(", ".join(spec.paths), spec.format) for spec in config.inputs
                                                      if spec.format is not None]
    for line in describe_health(config.health, formats):
        click.echo(line)
    click.echo("config ok")
    sys.exit(EXIT_OK)


def _check_listen_host(config: Config) -> None:
    """``run`` binds --metrics-addr; its host must be one this machine can
    listen on (a name that resolves, an address of its own). The port is not
    tried: the running agent holds it while the unit's reload check runs."""
    if not config.metrics_addr:
        return
    import socket

    host = config.metrics_addr.rsplit(":", 1)[0].strip("[]")
    try:
        infos = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except OSError as error:
        from agent.metrics import origin_label

        named = origin_label(config.origins.get("metrics_addr"))
        raise ConfigError(f"{named} {config.metrics_addr}: cannot listen there: "
                          f"{getattr(error, 'strerror', None) or error}") from error


@check.command("output", cls=GroupedCommand)
@settings_options(listed.CHECK_OUTPUT)
def check_output(**params: Any) -> None:
    """Connect to the output and report version, authentication and privileges."""
    from agent.outputs import build_output

    try:
        config = _resolve(params, require_paths=False)
        output = build_output(config)
    except ModelscribeError as error:
        _fail(error)
        return
    try:
        report = output.check()
        if config.dead_letter_index and report.ok:
            report = _check_letters_index(config, output, report)
    finally:
        output.close()
    for key, value in report.lines:
        click.echo(f"{key}: {value}")
    click.echo("output ok" if report.ok else "output NOT ok")
    sys.exit(EXIT_OK if report.ok else EXIT_OUTPUT)


def _check_letters_index(config: Config, output: Any, report: Any) -> Any:
    """``report`` with the --dead-letter-index line (Elasticsearch and OpenSearch outputs only)."""
    from agent.outputs.base import CheckReport
    from agent.outputs.dead_letter_index import IndexLetters
    from agent.outputs.elasticsearch import ElasticsearchOutput

    if not isinstance(output, ElasticsearchOutput):
        return report
    line = IndexLetters(output, config.dead_letter_index or "").check()
    return CheckReport(report.ok and not line[1].startswith("FAILED"), report.lines + (line,))


@main.command(cls=GroupedCommand)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@settings_options(listed.STATUS)
def status(as_json: bool, **params: Any) -> None:
    """Per file offset, size and lag; spool use; dead letters; last error.

    A --state-dir that does not exist or cannot be read is an error (exit code 1);
    so is a damaged registry.json or status.json in it, after what could be read."""
    import orjson

    from agent.status import render, report

    try:
        config = _resolve(params, require_paths=False)
        data = report(config.state_dir, config.dead_letter_path, origin=config.origins.get("state_dir", "default"),
                      dead_letter_index=config.dead_letter_index)
    except ModelscribeError as error:
        _fail(error)
        return
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json else render(data))
    for problem in data["problems"]:
        click.echo(f"modelscribe: error: {problem['file']}: {problem['error']}", err=True)
    if data["problems"]:
        sys.exit(EXIT_RUNTIME)


@main.group()
def dlq() -> None:
    """Inspect and replay the dead letters (documents Elasticsearch rejected): the file, and
    the --dead-letter-index when one is set."""


@dlq.command("list", cls=GroupedCommand)
@settings_options(listed.DLQ)
def dlq_list(**params: Any) -> None:
    """Count dead letters by target and error type: the file's and, with
    --dead-letter-index, the index's too (letters fall back to the file when
    the index cannot take them). The file comes first: it is local, so it is
    shown even when the node cannot be reached."""
    from agent.outputs.dead_letter import read_letters

    try:
        config = _resolve(params, require_paths=False)
        _check_letters_file(config)
        letters, broken = read_letters(config.dead_letter_path)
    except ModelscribeError as error:
        _fail(error)
        return
    _echo_letters(letters, config.dead_letter_path)
    if broken:
        click.echo(f"warning: lines {', '.join(map(str, broken[:10]))} are not dead letters", err=True)
    if not config.dead_letter_index:
        return
    try:
        with _letters_index(config) as index:
            letters = index.letters()
    except ModelscribeError as error:
        _fail(error)
        return
    _echo_letters(letters, f"index {config.dead_letter_index}")


def _check_letters_file(config: Config) -> None:
    """What ``dlq list`` and ``dlq replay`` read is there to read, before
    anything is read or sent: a dead-letter file in a state directory that
    does not exist is a StateError (exit 1) as for ``status`` (a misspelt
    --state-dir would otherwise read as "0 dead letters"); a dead-letter file
    that is not a regular file is a ConfigError (exit 2) naming where it was
    given (a FIFO would block the read for ever)."""
    from agent.config.stages import regular_file_problem
    from agent.errors import StateError
    from agent.metrics import origin_label

    path = config.dead_letter_path
    state_dir = os.path.abspath(config.state_dir)
    inside = os.path.abspath(path).startswith(state_dir.rstrip(os.sep) + os.sep)
    if inside and not os.path.exists(state_dir):
        origin = config.origins.get("state_dir", "default")
        given = "" if origin.startswith("flag") else " (the default)" if origin == "default" else f" (from {origin})"
        raise StateError(f"--state-dir {config.state_dir}{given}: does not exist; no agent has run with this state "
                         "directory (give the one `modelscribe run` uses)")
    problem = regular_file_problem(path)
    if problem is not None:
        origin = config.origins.get("dead_letter_file", "default")
        named = (f"{origin_label(origin, 'dead_letter_file')} {path}" if origin != "default"
                 else f"{path} (the default dead-letter file, in --state-dir)")
        raise ConfigError(f"{named}: {problem}; the dead letters are an NDJSON file")


def _echo_letters(letters: list[Any], where: str) -> None:
    from agent.outputs.dead_letter import summarize

    click.echo(f"{len(letters)} dead letters in {where}")
    for target, kind, count in summarize(letters):
        click.echo(f"{count:>8}  {kind}  (target {target})")
    examples = {letter.error_type: letter.reason for letter in letters}
    for kind, reason in examples.items():
        click.echo(f"  e.g. {kind}: {reason}")


@dlq.command("replay", cls=GroupedCommand)
@click.option("--to-index", default=None, metavar="NAME",
              help="Send to this index instead of each letter's original target.")
@settings_options(listed.DLQ)
def dlq_replay(to_index: str | None, **params: Any) -> None:
    """Re-send the dead letters (after fixing the mapping); those that fail again stay.
    With --dead-letter-index, the file's letters first (a damaged file stops
    the command before anything is sent), then the index's; one line sums both.
    Exit code 4 if some were rejected again, 3 if some were kept only because
    the output could not take them (unreachable, overloaded), or could not be
    deleted from the --dead-letter-index after they were indexed (a write block)."""
    from agent.outputs.dead_letter import ReplayResult, replay
    from agent.outputs.elasticsearch import ElasticsearchOutput

    result = None
    try:
        config = _resolve(params, require_paths=False)
        _check_letters_file(config)  # before connecting anywhere
        if config.dead_letter_index:
            with _letters_index(config) as index:
                # No file (the index took every letter): nothing to replay, and
                # replay() would create it.
                result = (replay(config.dead_letter_path, index.output.send, to_index)
                          if os.path.exists(config.dead_letter_path) else ReplayResult(0, 0, 0, 0, ()))
                result = result + index.replay(index.output.send, to_index)
        else:
            output = ElasticsearchOutput.from_config(config)
            try:
                output.preflight()
                result = replay(config.dead_letter_path, output.send, to_index)
            finally:
                output.close()
    except ModelscribeError as error:
        if result is not None:  # the file was replayed (and rewritten) before the index failed
            _echo_replay(result)
        _fail(error)
        return
    _echo_replay(result)
    # Rejected again: the documents need fixing (4). Only kept because the
    # output could not take them now (down, 429, 5xx), or delivered but not
    # deleted from the letters index (a write block): the cluster's state (3).
    sys.exit(EXIT_REJECTED if result.still_rejected else
             EXIT_OUTPUT if result.failed or result.not_removed else EXIT_OK)


def _echo_replay(result: Any) -> None:
    click.echo(f"indexed={result.indexed} duplicates={result.duplicates} "
               f"still_rejected={result.still_rejected} kept_for_retry={result.failed}")
    for reason in result.reasons:
        click.echo(f"  {reason}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


@contextlib.contextmanager
def _letters_index(config: Config) -> Iterator[Any]:
    """The --dead-letter-index store, on a connected output (closed after)."""
    from agent.outputs.dead_letter_index import IndexLetters
    from agent.outputs.elasticsearch import ElasticsearchOutput

    output = ElasticsearchOutput.from_config(config)
    try:
        output.preflight()
        yield IndexLetters(output, config.dead_letter_index or "")
    finally:
        output.close()


@main.group()
def setup() -> None:
    """Install what makes the data useful in Elasticsearch or OpenSearch: index
    templates, ingest pipelines, retention (idempotent, version-stamped)."""


def _setup_command(name: str, steps: tuple[str, ...], doc: str, cleanup: bool, retention: bool) -> None:
    """Declare ``modelscribe setup <name>``; every one shares the flags and the report."""

    def command(dry_run: bool, force: bool, engine: str, cleanup: bool = False, retention: str | None = None,
                **params: Any) -> None:
        _run_setup(steps, dry_run, force, engine, cleanup, retention, params)

    command.__doc__ = doc
    command = settings_options(listed.SETUP_TEMPLATES)(command)
    if retention:
        command = click.option("--retention", default=None, metavar="DURATION",
                               help="Delete data older than this (e.g. 30d, 12h). Default: keep the installed "
                                    "retention, 30d on a first install.")(command)
    if cleanup:
        command = click.option("--cleanup", is_flag=True,
                               help="Also delete our pipelines of older versions that nothing references.")(command)
    command = click.option("--engine", type=click.Choice(["elasticsearch", "opensearch"]), default="elasticsearch",
                           show_default=True,
                           help="The engine a --dry-run plans for when no cluster answers.")(command)
    command = click.option("--force", is_flag=True,
                           help="Downgrade templates a newer modelscribe installed, and overwrite pipelines under "
                                "our names that another owner's _meta.managed_by claims. A template modelscribe "
                                "did not install is never overwritten.")(command)
    command = click.option("--dry-run", is_flag=True,
                           help="Print what would be installed; write nothing (works without a cluster).")(command)
    setup.command(name, cls=GroupedCommand)(command)


def _run_setup(steps: tuple[str, ...], dry_run: bool, force: bool, engine: str, cleanup: bool,
               retention: str | None, params: dict[str, Any]) -> None:
    from agent.config.values import whole_seconds
    from agent.errors import ConfigError, TransientOutputError
    from agent.outputs.elasticsearch import ElasticsearchOutput
    from agent.setup.install import SetupOptions, run_setup
    from agent.setup.report import SetupInterrupted, format_actions
    from agent.setup.templates import requester

    try:
        seconds = None
        if retention is not None:
            try:
                seconds = whole_seconds(retention)  # (the cluster keeps whole seconds)
            except ValueError as error:
                raise ConfigError(f"--retention {retention}: {error}") from None
        options = SetupOptions(steps, dry_run, force, cleanup, seconds, engine)
        config = _resolve(params, require_paths=False)
        output = ElasticsearchOutput.from_config(config)
        try:
            try:
                result = run_setup(requester(output), options)
            except TransientOutputError as error:
                if not dry_run:
                    raise
                click.echo(f"note: no cluster answered ({error}); planning for a fresh {engine} cluster")
                result = run_setup(None, options)
        finally:
            output.close()
    except SetupInterrupted as error:
        # What the run did before the error: nothing half-installed goes unsaid.
        if error.cluster is not None:
            click.echo(f"cluster: {error.cluster.describe()}")
        for line in format_actions(error.done, dry_run, stopped=error.cause):
            click.echo(line)
        _fail(error)
        return
    except ModelscribeError as error:
        _fail(error)
        return
    click.echo(f"cluster: {result.cluster.describe()}")
    for line in format_actions(result.actions, dry_run):
        click.echo(line)


_setup_command("templates", ("templates",), """Install the component and index templates of the
    logs-modelscribe-* and metrics-modelscribe-* data streams, wired to the ingest pipelines when
    they are installed.""", cleanup=False, retention=False)
_setup_command("pipelines", ("pipelines",), """Install the ingest pipelines (pipelines/*.yml), named
    with this version; skipped when the cluster lacks a processor they use.""", cleanup=True, retention=False)
_setup_command("lifecycle", ("lifecycle",), """Set the retention of the data streams: data stream
    lifecycle or ILM on Elasticsearch, ISM on OpenSearch.""", cleanup=False, retention=True)
_setup_command("all", ("pipelines", "lifecycle", "templates"), """Pipelines, lifecycle, then
    templates (each step as its own command does it).""", cleanup=True, retention=True)


from agent.cli_health import health  # noqa: E402 - registers `modelscribe health` on main

from agent.cli_kibana import dashboards  # noqa: E402

setup.add_command(dashboards)

from agent.cli_alerting import register as register_alerting  # noqa: E402

register_alerting(setup)
