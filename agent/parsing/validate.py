"""Whether parse settings are usable: ``validate_settings``, the one place
that decides it.

It raises ``ValueError`` with a reason a person can act on, and the config
layer wraps that in a ``ConfigError`` naming the flag or file key. Once
validated, settings cannot make the parser raise.

It lives apart from ``settings`` (the bare ``ParseSettings`` dataclass)
because it needs the format registry, the logging-format compiler and the
JSON key rules, which all import ``settings``: kept here, the dependency
goes one way.
"""

from __future__ import annotations

import math
import re

from agent.parsing.formats import FORMATS
from agent.parsing.json_keys import compile_map_fields
from agent.parsing.python_logging import compile_layout
from agent.parsing.settings import ParseSettings


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def validate_settings(settings: ParseSettings) -> None:
    """Raise ``ValueError`` naming the setting and the reason if unusable."""
    if not isinstance(settings.format, str) or settings.format not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(f"format {settings.format!r} is not known (one of: {known})")
    pattern = settings.multiline_start
    if pattern is not None:
        if not isinstance(pattern, str):
            raise ValueError(f"multiline_start must be a regular expression, got {pattern!r}")
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"multiline_start {pattern!r} is not a valid regular expression: {error}") from error
    _positive_int("multiline_max_lines", settings.multiline_max_lines)
    _positive_int("multiline_max_bytes", settings.multiline_max_bytes)
    timeout = settings.multiline_timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError(f"multiline_timeout must be a number of seconds, got {timeout!r}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"multiline_timeout must be a positive number of seconds, got {timeout}")
    if not isinstance(settings.keep_original, bool):
        raise ValueError(f"keep_original must be true or false, got {settings.keep_original!r}")
    if settings.log_format is not None:
        if not isinstance(settings.log_format, str):
            raise ValueError(f"log_format must be a logging format string, got {settings.log_format!r}")
        try:
            compile_layout(settings.log_format)
        except ValueError as error:
            raise ValueError(f"log_format {settings.log_format!r} is not usable: {error}") from None
    try:
        compile_map_fields(settings.map_fields)
    except TypeError:  # an unhashable value where the pairs belong
        raise ValueError(f"map_field: expected (SOURCE, TARGET) pairs, got {settings.map_fields!r}") from None
    except ValueError as error:
        raise ValueError(f"map_field {error}") from None
