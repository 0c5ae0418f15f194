"""Reloading the configuration without a restart (SIGHUP, ``systemctl reload``).

The main thread, woken by SIGHUP (``supervise``), calls ``Reloader.reload``:
it resolves the settings again from the sources the agent started with (the
same flags, the environment as it is now, the config file as it is now: the
``resolve`` callable the CLI gives the pipeline), through the one resolution
step (``agent.config.resolve``), and compares the result with the running
``Config`` (``diff``):

- live settings take effect. The reader's stages are not thread-safe, so
  their new settings are handed to the tailer's slot (``Tailer.apply``) and
  taken by the reader thread at its next poll, between two files' reads:
  first the sink flushes the parser of every open file whose parse settings
  changed (its pending multi-line event is emitted) and parses the next lines
  by the new rules, with the new enrichment; then the tailer scans the new
  globs and reads the files they no longer match to their end and closes
  them. Credentials go to the output (``set_credentials``: used from its next
  request), the log level to the agent's log at once;
- settings that need a restart (``RESTART``: everything else: the output,
  its URLs and TLS, batching, the spool, the state directory, the metrics
  address...) keep their running value; the change is logged once as a
  warning naming each flag;
- a configuration that does not resolve is refused whole, with one error
  line giving the ConfigError's message; the running configuration stays.

Guarantees: delivery never pauses for a reload (the batcher, the output
workers and the spool carry on; only the reader switches, between two
lines); no line is lost or read twice (a file's parser is flushed before its
next line goes to the new one, the tailer's read positions do not move); a
file no longer matched keeps its registry entry, so a later reload that
matches it again resumes it at its committed offset, or after the lines it had
read, when some of those are not acknowledged yet (they are on their way).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from agent.config import Config
from agent.config.options import BY_NAME
from agent.errors import ModelscribeError
from agent.selflog import get_logger, set_level

if TYPE_CHECKING:
    from agent.config.resolve import InputSpec
    from agent.enrich import Enricher
    from agent.outputs.base import Output
    from agent.parsing import ParseSettings
    from agent.sources.tailer import TailSettings

log = get_logger("reload")

# Settings the reader's stages take at their next poll.
TAIL = frozenset({"paths", "excludes", "scan_interval", "partial_line_timeout", "close_inactive",
                  "close_removed_after", "read_from", "ignore_older"})
PARSE = frozenset({"inputs", "format", "log_format", "multiline_start", "multiline_max_lines",
                   "multiline_max_bytes", "multiline_timeout", "keep_original", "map_fields", "parse_at"})
ENRICH = frozenset({"host_name", "fields", "labels", "service_name", "model_from_path", "kubernetes_paths",
                    "host_metadata", "keep_payloads", "redact_fields", "redact_patterns", "redact_defaults",
                    "hash_fields", "hash_key_file", "hash_key", "sample", "max_field_bytes", "keep_original"})
CREDENTIALS = frozenset({"api_key", "api_key_file", "username", "password", "password_file"})
# Read where they are used, from the pipeline's Config.
PROCESS = frozenset({"log_level", "shutdown_timeout"})
LIVE = TAIL | PARSE | ENRICH | CREDENTIALS | PROCESS
# Not Config values: never compared.
_IGNORED = frozenset({"origins", "config_file"})
# Everything else needs a restart, new settings included until someone makes
# them live. Among them: max_line_bytes and fingerprint_bytes (every open
# file's reader and identity were made with them) and timezone (TZ is
# process-wide, the parsers of the reader thread read it).
RESTART = frozenset(f.name for f in dataclasses.fields(Config)) - LIVE - _IGNORED


def setting_name(name: str) -> str:
    """How a person wrote it: ``--es-url``; Config fields that are no flag
    (``inputs``, ``api_key``) by name."""
    option = BY_NAME.get(name)
    return option.flag if option is not None else name


@dataclass(frozen=True)
class Changes:
    """What a reload changes. ``config`` is what runs from now on: the new
    values of the live settings, the running values of the others."""

    config: Config
    live: tuple[str, ...]     # Config field names, changed and applied
    restart: tuple[str, ...]  # Config field names, changed but kept at the running value

    def touches(self, group: frozenset[str]) -> bool:
        return any(name in group for name in self.live)


def diff(running: Config, new: Config) -> Changes:
    """Sort the differences between ``running`` and ``new`` into live and
    needs-a-restart, and build the Config in effect after the reload."""
    live, restart = [], []
    for f in dataclasses.fields(Config):
        if f.name in _IGNORED or getattr(running, f.name) == getattr(new, f.name):
            continue
        (live if f.name in LIVE else restart).append(f.name)
    kept: dict[str, Any] = {name: getattr(running, name) for name in restart}
    origins = {**new.origins, **{name: running.origins[name] for name in restart if name in running.origins}}
    return Changes(dataclasses.replace(new, **kept, origins=origins), tuple(live), tuple(restart))


class Tailing(Protocol):
    def apply(self, settings: "TailSettings", before: Callable[[], None] | None = None) -> None: ...


class Parsing(Protocol):
    def reconfigure(self, settings: "ParseSettings", inputs: "tuple[InputSpec, ...]",
                    enricher: "Enricher | None") -> None: ...


class Reloader:
    """The main thread's side of a reload (see the module docstring)."""

    def __init__(self, config: Config, resolve: Callable[[], Config], tailer: Tailing, sink: Parsing,
                 output: "Output") -> None:
        self.config = config
        self._resolve = resolve
        self._tailer = tailer
        self._sink = sink
        self._output = output
        # Needs-a-restart values already warned about: logged once per change, not at every reload.
        self._warned: dict[str, Any] = {}

    def reload(self) -> Config:
        """Re-read, validate, apply; the Config in effect afterwards (the
        running one when the new one is refused). Main thread. Never raises:
        a reload must not stop an agent that ships."""
        try:
            return self._reload()
        except Exception as error:  # noqa: BLE001 - a bug: logged with its traceback, the agent ships on
            log.error("reload failed; the running configuration stays", exc_info=True, error=repr(error))
            return self.config

    def _reload(self) -> Config:
        try:
            new = self._resolve()
        except ModelscribeError as error:
            log.error("reload refused: the configuration is not valid; the running one stays", error=str(error))
            return self.config
        changes = diff(self.config, new)
        fresh = [name for name in changes.restart if self._warned.get(name, _NOTHING) != getattr(new, name)]
        self._warned = {name: getattr(new, name) for name in changes.restart}
        if fresh:
            log.warning("needs a restart; the running value stays",
                        settings=",".join(setting_name(name) for name in fresh))
        try:
            self._apply(changes)
        except ModelscribeError as error:  # a hash key or agent id that cannot be read or written...
            log.error("reload refused: the configuration is not valid; the running one stays", error=str(error))
            return self.config
        self.config = changes.config
        log.info("configuration reloaded", changed=",".join(setting_name(name) for name in changes.live) or "-",
                 needs_restart=",".join(setting_name(name) for name in changes.restart) or "-")
        return self.config

    def _apply(self, changes: Changes) -> None:
        # Imported here: the pipeline imports this module.
        from agent.outputs.connection import ships_raw
        from agent.pipeline import build_enricher, parse_settings, tail_settings

        config = changes.config
        reader = changes.touches(TAIL | PARSE | ENRICH)
        if changes.touches(PARSE) and ships_raw(config) and not ships_raw(self.config):
            # Raw documents from now on: would the target parse them? (NoEntryPipeline refuses the reload.)
            check = getattr(self._output, "check_raw_target", None)
            if check is not None:
                check()
        # The one step that can fail (the hash key, the agent id), before anything changes.
        enricher = build_enricher(config) if changes.touches(ENRICH) else None
        if "log_level" in changes.live:  # before the reader switches: what it logs then follows the new level
            set_level(config.log_level)
        if reader:
            tail, parse, inputs = tail_settings(config), parse_settings(config), config.inputs
            self._tailer.apply(tail, before=lambda: self._sink.reconfigure(parse, inputs, enricher))
        if changes.touches(CREDENTIALS):
            set_credentials = getattr(self._output, "set_credentials", None)
            if set_credentials is not None:  # only Elasticsearch authenticates
                from agent.outputs.connection import ConnectionSettings
                set_credentials(ConnectionSettings.from_config(config))

_NOTHING = object()
