"""How a source's lines are parsed: the frozen settings.

Whether they are usable is decided in one place, ``validate.validate_settings``;
this module imports nothing of the parsing package, so every module of it
can import this one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParseSettings:
    """Parser settings shared by every source they apply to.

    ``format`` names an entry of ``agent.parsing.formats.FORMATS`` ("auto",
    "json", "plain", and whatever later formats register).
    ``multiline_start``: a regex; when set, a line it matches (``re.search``,
    so anchor it with ``^``) starts a new event and every other line continues
    the current one (Filebeat's ``negate: true, match: after``). When unset,
    Python tracebacks are joined to the log line before them.
    ``map_fields``: ``(SOURCE, TARGET)`` pairs of ``--map-field``, a JSON key
    (or dotted path into nested objects) to a schema field (see
    ``agent.parsing.json_keys``).
    ``parse_at``: "agent" (``make_parser``: the agent parses) or
    "elasticsearch" (``make_raw_parser``: the agent groups lines into events
    the same way and ships their raw text; the cluster's ingest pipelines
    parse it). The parsers themselves do not read it: the pipeline picks
    which one to make (``agent.pipeline``).
    ``container_format``: the container runtime's wrapping of each line
    (CRI, Docker json-file; "auto" decides per file), taken off before the
    parser sees the line (``agent.parsing.container``, applied by
    ``agent.sink``); the parsers do not read it either.
    """

    format: str = "auto"
    multiline_start: str | None = None
    multiline_max_lines: int = 500
    multiline_max_bytes: int = 1048576
    multiline_timeout: float = 2.0
    keep_original: bool = False
    # A Python logging format string (--log-format): text lines that fit it
    # are read by the parser compiled from it (agent.parsing.python_logging).
    log_format: str | None = None
    map_fields: tuple[tuple[str, str], ...] = ()
    parse_at: str = "agent"
    container_format: str = "auto"
