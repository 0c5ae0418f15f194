"""The entry point of the ``modelscribe`` console script and of ``python -m
agent``: catches the daemon's signals before the command line is imported.

Importing ``agent.cli`` (click, the configuration, most of the package)
takes about a fifth of a second. Under the default actions a SIGHUP then
kills the process (exit 129): a ``systemctl reload`` or logrotate's
``postrotate kill -HUP`` racing a restart would kill the daemon it meant to
reload. So ``main`` first installs ``EarlySignals`` (agent.early_signals),
then imports the command line and runs it; the ``run`` command's own
``EarlySignals`` adopts what this one recorded, and the daemon acts on it
once it can (agent.supervise).

Guarantees:

- Only for ``run``: every other command keeps the default behaviour of
  SIGTERM, SIGINT and SIGHUP.
- Nothing but the standard library's ``sys`` (and, through
  agent.early_signals, ``signal`` and ``threading``) is imported before the
  handlers are in place; ``agent/__init__.py``, imported first by Python,
  imports nothing either. What comes before this module's first line, the
  interpreter's own start-up (about 20 ms; see agent.early_signals), cannot
  be covered.
- When ``run`` never starts (a usage error, ``--help``), what was recorded
  is dropped: the process is exiting anyway, with click's exit code.
"""

from __future__ import annotations

import sys

from agent.early_signals import EarlySignals

DAEMON_COMMAND = "run"


def command_name(args: list[str]) -> str | None:
    """The command click will run for these arguments (``sys.argv[1:]``):
    the first one that is not an option, or the one after ``--``. This holds
    because none of the group's own options (``--version``, ``-h/--help``)
    takes a value that could be mistaken for the command;
    tests/test_launch.py checks that it stays so."""
    for number, arg in enumerate(args):
        if arg == "--":
            return args[number + 1] if number + 1 < len(args) else None
        if not arg.startswith("-"):
            return arg
    return None


def raise_open_files_limit() -> None:
    """The soft limit of open files up to the hard one (as Go's runtime does):
    the tailer holds one descriptor per file being written, and a shell's
    default soft limit (1024) is below what a busy host's globs match. The
    service's unit sets both (LimitNOFILE)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20  # (an unlimited hard limit: the kernel caps the soft one at nr_open anyway)
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    except (ImportError, ValueError, OSError):  # not on this platform, or refused: the limit stays
        pass


def main() -> None:
    if command_name(sys.argv[1:]) == DAEMON_COMMAND:
        EarlySignals().install()  # kept alive by its handlers, found there by the one ``run`` installs
        raise_open_files_limit()

    from agent.cli import entry

    entry()
