"""The parsing stage: Lines of a source in, Records out.

    sources --Line--> SourceParser (one per Source) --Record--> enrich

The seam other stages use::

    validate_settings(settings)            # ValueError with the reason, at start-up
    parser = make_parser(settings, source)
    parser.feed(line)          -> list[Record]   # records completed by this line
    parser.flush_expired(now)  -> list[Record]   # a pending event idle > multiline_timeout
    parser.flush()             -> list[Record]   # everything pending (file closed, --once)
    parser.pending()           -> bool

    parser = make_raw_parser(settings, source)   # --parse-at elasticsearch: the same
                               # grouping (same offsets, ends, ids), raw records (see ``raw``)

Guarantees (see ``driver`` and ``multiline`` for the details): no method
raises on any input; every Line fed ends up in exactly one Record; a
record's ``offset`` is its first line's, its ``end`` the offset that may be
committed once it and every record emitted before it are acknowledged
(non-decreasing); line tags carry over.

Modules, one per step of the stage:

    settings     ParseSettings, the frozen settings of a source
    validate     validate_settings: are the settings usable (the one place)
    formats      the registry of formats by name (auto, json, plain, ...)
    base         the LineFormat contract a format implements
    parse_json   JSON lines -> ECS-shaped fields
    parse_text   plain text: leading timestamp, level, logger
    timestamps   ISO 8601 / epoch -> epoch seconds
    tracebacks   what Python tracebacks look like
    multiline    joiners: where events begin, per writer; the commit-point contract
    driver       SourceParser: open events, caps, timeout, records, never raising
    raw          make_raw_parser: the same grouping, records of the raw text (parse at the cluster)
"""

from __future__ import annotations

from agent.events import Source
from agent.parsing.base import LineFormat, TextInfo
from agent.parsing.formats import FORMATS, register_format
from agent.parsing.driver import SourceParser
from agent.parsing.settings import ParseSettings
from agent.parsing.validate import validate_settings

# Registers the model-server formats (torchserve, triton, ...) in FORMATS.
import agent.parsing.servers  # noqa: E402,F401  (after the registry exists)
from agent.parsing.raw import make_raw_parser  # noqa: E402

__all__ = [
    "FORMATS", "LineFormat", "ParseSettings", "SourceParser", "TextInfo",
    "make_parser", "make_raw_parser", "register_format", "validate_settings",
]


def make_parser(settings: ParseSettings, source: Source) -> SourceParser:
    """A parser for one source. Raises ValueError if ``settings`` are unusable."""
    validate_settings(settings)
    return SourceParser(settings, source, FORMATS[settings.format](settings))
