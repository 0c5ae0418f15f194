"""The one exception tree of modelscribe.

    ModelscribeError                 base: anything the agent raises on purpose
    ├── ConfigError                  bad flag / env var / file key  (exit code 2)
    ├── StateError                   registry or state dir unusable at run time (exit code 1)
    └── OutputError                  the output could not take data
        ├── TransientOutputError     worth retrying: 429, 502-504, timeouts, refused connections
        └── PermanentOutputError     retrying will not help: 400, 404, bad TLS setup
            └── AuthError            401 / 403: credentials or privileges (retried by the
                                     daemon in case a key is rotated, fatal for ``--once``)

Library exceptions (elastic_transport, urllib3, OSError, ssl) are translated to
this tree in exactly one place per boundary, always with ``raise ... from error``
so the original cause stays visible in logs.

Exit codes of the ``modelscribe`` command:

    0  success (``--once``: everything read was acknowledged)
    1  unexpected runtime failure, or a state file that cannot be used
    2  configuration error (names the flag, variable or file key; a
       ``--state-dir`` that cannot be used is one, checked at start-up)
    3  the output is unreachable or refused the credentials, or
       (``--parse-at elasticsearch``) would store raw documents unparsed; ``--once``
       dropped events (``--when-full drop-newest``); ``dlq replay`` kept
       letters only because the output could not take them
    4  ``--once`` finished but some documents were rejected by the output
       (they are in the dead-letter file; offsets advanced past them)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2
EXIT_OUTPUT = 3
EXIT_REJECTED = 4


class ModelscribeError(Exception):
    """Base of every error the agent raises on purpose."""

    exit_code = EXIT_RUNTIME


class ConfigError(ModelscribeError):
    """A configuration value is missing or invalid.

    The message must name where the value came from (``--flag``,
    ``MODELSCRIBE_VAR`` or ``file.yaml: key``) and why it was rejected.
    """

    exit_code = EXIT_CONFIG


class StateError(ModelscribeError):
    """The state directory or one of its files cannot be used."""


class OutputError(ModelscribeError):
    """The output could not take data. ``status``: the HTTP status of the
    answer that said so, 0 when there was none (no answer, a local output)."""

    exit_code = EXIT_OUTPUT

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class TransientOutputError(OutputError):
    """A failure that may go away by itself: retry with backoff."""


class PermanentOutputError(OutputError):
    """A failure that retrying the same request will not fix."""


class AuthError(PermanentOutputError):
    """Credentials were rejected (401) or lack a privilege (403)."""
