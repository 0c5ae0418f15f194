"""The agent's own log: one logfmt line per message on stderr.

    2026-11-27T17:40:00.123Z level=warn logger=tail msg="file truncated" path=/var/log/a.log offset=1234

journald keeps one entry per line and the fields stay greppable. Values are
quoted when they hold spaces, quotes or '='. A value wrapped in ``Secret`` is
printed as ``***`` wherever it appears, so a credential cannot leak through a
log call.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "warning": logging.WARNING, "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
          logging.ERROR: "error", logging.CRITICAL: "error"}
_ROOT = "modelscribe"


class Secret:
    """A credential. Its text is reachable only through ``reveal()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _quote(value: Any) -> str:
    if isinstance(value, Secret):
        return "***"
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        name = record.name[len(_ROOT) + 1:] if record.name.startswith(_ROOT + ".") else record.name
        parts = [f"{stamp}.{int(record.msecs):03d}Z", f"level={_NAMES.get(record.levelno, 'info')}",
                 f"logger={name}", f"msg={_quote(record.getMessage())}"]
        for key, value in getattr(record, "kv", {}).items():
            parts.append(f"{key}={_quote(value)}")
        if record.exc_info and record.levelno >= logging.ERROR:
            parts.append(f"exception={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class Logger:
    """``log.info("file rotated", path=p, inode=i)``: a sentence plus fields."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(f"{_ROOT}.{name}")

    def _log(self, level: int, msg: str, fields: dict[str, Any],
             exc_info: bool | BaseException = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, msg, extra={"kv": fields}, exc_info=exc_info)

    def debug(self, msg: str, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, exc_info: bool | BaseException = False, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields, exc_info)

    def is_debug(self) -> bool:
        return self._logger.isEnabledFor(logging.DEBUG)


def get_logger(name: str) -> Logger:
    return Logger(name)


def configure(level: str = "info", stream: Any = None) -> None:
    """Send the agent's log to ``stream`` (stderr) at ``level``. Idempotent."""
    root = logging.getLogger(_ROOT)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    root.propagate = False


def set_level(level: str) -> None:
    """Change the level only (a reload): handlers, and whatever a test added, stay."""
    logging.getLogger(_ROOT).setLevel(LEVELS[level])
