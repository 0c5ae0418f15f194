"""Every setting of the agent, declared once.

The CLI flags, the ``MODELSCRIBE_*`` environment variables, the YAML keys
and ``check config`` are all generated from ``OPTIONS``: a setting cannot
exist in one place and be missing in another. ``Config`` (in ``resolve``)
has one field per option with the same name; a test checks they agree.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from agent.config import values as v

ENV_PREFIX = "MODELSCRIBE_"

# The groups of ``Option.group``, as ``--help`` and the README's settings table name them.
GROUP_TITLES = {"input": "Input", "parsing": "Parsing", "output": "Output", "enrich": "Enrichment",
                "spool": "Spool", "process": "Process"}


@dataclass(frozen=True)
class Option:
    name: str                       # Config field and YAML key (dashes accepted too)
    convert: Callable[[Any], Any]   # raw value -> typed value; raises ValueError
    default: Any
    help: str
    multiple: bool = False          # a list: repeated flag, YAML list, comma-separated env
    switch: bool = False            # boolean --x/--no-x flag
    path: bool = False              # a file path: relative to the config file when given there
    group: str = "general"
    singular: str | None = None     # flag stem when it differs from the name (--path for paths)
    env_split: bool = True          # multiple: split the env value on commas (not for regexes)

    @property
    def flag(self) -> str:
        return "--" + (self.singular or self.name).replace("_", "-")

    @property
    def env(self) -> str:
        """MODELSCRIBE_<FLAG>: MODELSCRIBE_ES_URL, MODELSCRIBE_PATH, ..."""
        return ENV_PREFIX + (self.singular or self.name).upper()

    @property
    def keys(self) -> tuple[str, ...]:
        """YAML keys accepted for this option (name and flag spelling, _ or -)."""
        stems = {self.name, self.singular or self.name}
        return tuple(sorted({s for stem in stems for s in (stem, stem.replace("_", "-"))}))


OPTIONS: tuple[Option, ...] = (
    # inputs
    Option("paths", v.text, (), "Glob of files to tail (repeatable); `**` matches directories.",
           multiple=True, path=True, group="input", singular="path"),
    Option("excludes", v.text, (), "Glob of paths to leave out (repeatable).", multiple=True, path=True, group="input",
           singular="exclude"),
    Option("scan_interval", v.positive_duration, 10.0, "Full rescan of the globs, the fallback when file-system "
           "events are not delivered (NFS).", group="input"),
    Option("partial_line_timeout", v.duration, 5.0, "Emit a last line without newline after it has "
           "been unchanged this long.", group="input"),
    Option("max_line_bytes", v.size, 1024 * 1024, "Longer lines are truncated and tagged `truncated`.",
           group="input"),
    Option("fingerprint_bytes", v.integer(16, 65536), 1024, "Bytes at the start of a file that "
           "(with device and inode) identify it across renames and restarts.", group="input"),
    Option("close_inactive", v.positive_duration, 300.0, "Close a file idle this long: at its path once all "
           "it had is acknowledged (opened again when it changes), renamed away once drained.",
           group="input"),
    Option("read_from", v.choice("beginning", "end"), "beginning", "Where to start reading the files found at "
           "start-up that the registry does not know: beginning, or end (only the lines written from then on). "
           "Files that appear later are read from their beginning.", group="input"),
    Option("ignore_older", v.optional_duration, None, "Files the registry does not know, last modified longer "
           "ago than this when found, are not read: their end is recorded, and lines written to them later "
           "are shipped (default off).", group="input"),
    Option("state_dir", v.text, "/var/lib/modelscribe", "Directory of the offset registry and agent id.",
           path=True, group="input"),
    Option("state_ttl", v.duration, 7 * 86400.0, "Forget registry entries of files gone longer than this.",
           group="input"),
    # parsing
    Option("format", v.log_format, "auto", "Log format of every --path (auto detects per line).",
           group="parsing"),
    Option("log_format", v.text, None, "Python logging format string of the text lines, e.g. "
           "'%(asctime)s %(levelname)s %(name)s: %(message)s': fills log.logger, log.level, "
           "@timestamp, process.*, log.origin.* and strips the prefix from the message.", group="parsing"),
    Option("multiline_start", v.regex, None, "Regex of the first line of an event; other lines are "
           "joined to the event before them (default: Python tracebacks are joined).", group="parsing"),
    Option("multiline_max_lines", v.integer(1), 500, "Split a multi-line event after this many lines.",
           group="parsing"),
    Option("multiline_max_bytes", v.size, 1024 * 1024, "Split a multi-line event past this size.",
           group="parsing"),
    Option("multiline_timeout", v.positive_duration, 2.0, "Emit a pending multi-line event after this long "
           "without a new line.", group="parsing"),
    Option("keep_original", v.boolean, False, "Keep the raw text in `event.original`.", switch=True,
           group="parsing"),
    Option("map_fields", v.map_field, (), "JSON key (or dotted path) to a schema field, SOURCE=TARGET "
           "(repeatable), e.g. meta.took=event.duration:ms or tenant=labels.tenant.", multiple=True,
           singular="map_field", group="parsing"),
    Option("parse_at", v.choice("agent", "elasticsearch"), "agent", "Where lines are parsed: agent (here) or "
           "elasticsearch (multi-line events are still joined here and enrichment, redaction included, "
           "still runs here; the raw text is parsed by the cluster's ingest pipelines: `modelscribe setup "
           "pipelines`).", group="parsing"),
    Option("container_format", v.choice("auto", "cri", "docker", "off"), "auto", "Container runtime wrapping "
           "taken off each line before parsing: cri (Kubernetes: containerd, CRI-O), docker (json-file), off, or "
           "auto (decided per file from its first line); partial lines the runtime split are joined.",
           group="parsing"),
    Option("timezone", v.timezone, None, "Time zone of timestamps written without an offset "
           "(default: the host's).", group="parsing"),
    Option("host_name", v.text, None, "Value of `host.name` (default: this machine's host name).",
           group="parsing"),
    # enrichment, privacy and volume
    Option("fields", v.assignment, (), "Static field on every document, NAME=VALUE (repeatable), e.g. "
           "service.environment=prod.", multiple=True, singular="field", group="enrich"),
    Option("labels", v.assignment, (), "Label on every document, KEY=VALUE -> labels.KEY (repeatable).",
           multiple=True, singular="label", group="enrich"),
    Option("service_name", v.text, None, "Default service.name.", group="enrich"),
    Option("model_from_path", v.text, (), "Path template giving model identity, e.g. "
           "'/var/log/models/{model.name}/{model.version}/*.log' (repeatable).", multiple=True,
           path=True, group="enrich"),
    Option("kubernetes_paths", v.boolean, True, "Read kubernetes.* and container.* from kubelet log paths.",
           switch=True, group="enrich"),
    Option("host_metadata", v.boolean, True, "Add host.ip, host.os.* and host.architecture.", switch=True,
           group="enrich"),
    Option("keep_payloads", v.boolean, False, "Keep request/response bodies, prompts and completions "
           "(still redacted).", switch=True, group="enrich"),
    Option("redact_fields", v.text, (), "Field whose value is replaced by [REDACTED] (repeatable).",
           multiple=True, singular="redact_field", group="enrich"),
    Option("redact_patterns", v.text, (), "Built-in pattern (email, bearer, api_key, card, secret) or a "
           "regex whose matches are redacted (repeatable; the env var holds one pattern).", multiple=True,
           singular="redact_pattern", env_split=False, group="enrich"),
    Option("redact_defaults", v.boolean, True, "Redact bearer tokens and API keys everywhere.", switch=True,
           group="enrich"),
    Option("hash_fields", v.text, (), "Field replaced by a keyed hash, still joinable (repeatable).",
           multiple=True, singular="hash_field", group="enrich"),
    Option("hash_key_file", v.text, None, "Key of --hash-field (or MODELSCRIBE_HASH_KEY; default: a key "
           "created once in STATE_DIR/hash_key).", path=True, group="enrich"),
    Option("sample", v.fraction, 1.0, "Fraction of successful request events kept (errors, warnings and "
           "metrics always are); kept events record the rate.", group="enrich"),
    Option("max_field_bytes", v.size, 32000, "String fields longer than this are cut and tagged "
           "field_truncated.", group="enrich"),
    # output
    Option("output", v.output, "elasticsearch", "elasticsearch, opensearch, file:PATH (NDJSON), console or null.",
           group="output"),
    Option("es_urls", v.url, ("http://localhost:9200",), "Elasticsearch URL (repeatable).",
           multiple=True, group="output", singular="es_url"),
    Option("api_key_file", v.text, None, "File holding the base64 API key (or set MODELSCRIBE_API_KEY).",
           path=True, group="output"),
    Option("username", v.text, None, "User for basic authentication (password from --password-file "
           "or MODELSCRIBE_PASSWORD).", group="output"),
    Option("password_file", v.text, None, "File holding the basic-auth password.", path=True,
           group="output"),
    Option("ca_cert", v.text, None, "PEM CA bundle to verify Elasticsearch's certificate.", path=True,
           group="output"),
    Option("client_cert", v.text, None, "PEM client certificate (with --client-key).", path=True,
           group="output"),
    Option("client_key", v.text, None, "PEM client key.", path=True, group="output"),
    Option("tls_verify", v.boolean, True, "Verify the server certificate and host name.", switch=True,
           group="output"),
    Option("data_stream", v.index_name, "logs-modelscribe-default", "Data stream to write to.",
           group="output"),
    Option("index", v.index_name, None, "Write to this index instead of a data stream.", group="output"),
    Option("bulk_max_docs", v.integer(1, 100_000), 1000, "Flush a bulk request at this many documents.",
           group="output"),
    Option("bulk_max_bytes", v.size, 5 * 1024 * 1024, "Flush a bulk request at this body size.",
           group="output"),
    Option("flush_interval", v.positive_duration, 1.0, "Flush a partial bulk request after this long.",
           group="output"),
    Option("workers", v.integer(1, 64), 2, "Concurrent bulk requests.", group="output"),
    Option("gzip", v.boolean, False, "Compress bulk request bodies with gzip.", switch=True, group="output"),
    Option("request_timeout", v.positive_duration, 30.0, "Timeout of one request to Elasticsearch.", group="output"),
    Option("max_retries", v.retries, None, "Retries of a failed request before giving up "
           "(default: unlimited).", group="output"),
    Option("backoff_max", v.duration, 60.0, "Longest wait between retries.", group="output"),
    Option("dead_letter_file", v.text, None, "Where rejected documents go (default: "
           "STATE_DIR/dead-letter.ndjson).", path=True, group="output"),
    Option("dead_letter_index", v.index_name, None, "Keep rejected documents in this Elasticsearch index "
           "instead (the file remains the fallback).", group="output"),
    # spool
    Option("spool", v.boolean, True, "Buffer events on disk between reading and sending (--no-spool: "
           "memory only; an outage then pauses reading sooner).", switch=True, group="spool"),
    Option("spool_dir", v.text, None, "Spool directory (default: STATE_DIR/spool).", path=True, group="spool"),
    Option("spool_max_bytes", v.size, 1024 * 1024 * 1024, "Disk space the spool may use; when full, reading "
           "pauses (or drops, see --when-full).", group="spool"),
    Option("spool_fsync", v.choice("batch", "interval", "never"), "batch", "When spool writes are fsynced: "
           "after every batch (safe), every second, or never (the OS decides).", group="spool"),
    Option("when_full", v.choice("block", "drop-newest"), "block", "What to do when the spool is full: pause "
           "reading (nothing lost) or drop new events (counted and logged).", group="spool"),
    Option("close_removed_after", v.positive_duration, 300.0, "While the output is blocked, release a deleted "
           "file after this long (its unread lines are lost and reported).", group="spool"),
    # process
    Option("once", v.boolean, False, "Read every file to its end, ship, wait for acknowledgements, exit.",
           switch=True, group="process"),
    Option("shutdown_timeout", v.duration, 30.0, "On SIGTERM, how long to wait for in-flight data.",
           group="process"),
    Option("queue_events", v.integer(16, 1_000_000), 8192, "Events buffered in memory between reading "
           "and sending (backpressure beyond it).", group="process"),
    Option("log_level", v.choice("debug", "info", "warn", "error"), "info", "Level of the agent's own log.",
           group="process"),
    Option("metrics_addr", v.listen_address, "127.0.0.1:9464", "HOST:PORT of the Prometheus /metrics and "
           "/health endpoint, or off (the daemon only; --once never serves it).", group="process"),
    Option("health_blocked_after", v.positive_duration, 60.0, "/health answers 503 once events have waited "
           "this long and nothing was acknowledged for as long.", group="process"),
    Option("self_metrics_interval", v.optional_duration, 60.0, "How often the agent writes its own metric "
           "document (metrics-modelscribe-*, event.dataset modelscribe.agent; Elasticsearch output only), "
           "or off.", group="process"),
)

BY_NAME = {option.name: option for option in OPTIONS}
SECRET_ENV = {"api_key": ENV_PREFIX + "API_KEY", "password": ENV_PREFIX + "PASSWORD",
              "hash_key": ENV_PREFIX + "HASH_KEY"}

# MODELSCRIBE_* variables read outside OPTIONS: the config file, the secrets,
# the Kibana commands' URL and the switch of health's C module; then the
# development harness's (tests, benchmarks and scripts read them; the agent
# ignores them, so they must not be reported as mistakes).
OTHER_VARIABLES = frozenset({
    ENV_PREFIX + "CONFIG", *SECRET_ENV.values(), ENV_PREFIX + "KIBANA_URL", ENV_PREFIX + "HEALTH_NATIVE",
    ENV_PREFIX + "ES_CACHE", ENV_PREFIX + "ES_VERSION", ENV_PREFIX + "OS_CACHE", ENV_PREFIX + "OS_VERSION",
    ENV_PREFIX + "OS_PW", ENV_PREFIX + "PYTHON312", ENV_PREFIX + "ELASTALERT_CACHE", ENV_PREFIX + "AUDIT_STRICT",
    ENV_PREFIX + "TEST_DEBIAN_ROOT",
})


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """A warning for each ``MODELSCRIBE_*`` variable in ``env`` that nothing
    reads: a misspelt variable (``MODELSCRIBE_ES_URLS``) would otherwise be
    ignored without a word, as a misspelt file key is not (that is an error).
    Only a warning: a variable of a newer version, left in a unit file after a
    downgrade, must not stop the agent."""
    known = {option.env for option in OPTIONS} | OTHER_VARIABLES
    messages = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            # (Compared without the prefix, which every name shares.)
            close = difflib.get_close_matches(name[len(ENV_PREFIX):], [k[len(ENV_PREFIX):] for k in sorted(known)],
                                              n=1, cutoff=0.75)
            hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
            messages.append(f"environment variable {name} is set but no setting reads it; it is ignored{hint}")
    return messages
