"""Running under systemd: readiness, watchdog and status notifications, and credentials.

The notification protocol (sd_notify(3)) is one datagram of ``KEY=VALUE``
lines sent to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or an
abstract socket written ``@name``). It is implemented here in a few lines
rather than through a dependency. Without ``$NOTIFY_SOCKET`` (not started by
systemd, or ``Type=`` is not ``notify``) every call is a no-op.

Guarantees:

- ``READY=1`` is sent once the daemon's reader and batcher threads run,
  ``STOPPING=1`` when the stop protocol begins, ``STATUS=`` lines while it
  runs (``shipping: 3 files, spool 12.5 MB, 1200 acked``).
- ``WATCHDOG=1`` is sent only by ``Notifier.tick``, which only the daemon's
  main loop calls, at most every half of ``$WATCHDOG_USEC``. There is no
  thread of its own: a main loop that is wedged (a save that hangs, a
  deadlock) stops the pings, so systemd's ``WatchdogSec=`` kills and restarts
  the agent, which is the point of a watchdog.
- A notification that cannot be sent (socket gone, buffer full) is logged once
  at debug level and never stops the agent: systemd's own timeouts judge it.

Credentials (``LoadCredential=`` in the unit): systemd puts each credential in
a file of the read-only directory ``$CREDENTIALS_DIRECTORY``. The agent reads
the API key from ``es-api-key`` and the basic-auth password from
``es-password`` there (``CREDENTIALS``), when the settings name no key or
password file and no ``MODELSCRIBE_API_KEY``/``MODELSCRIBE_PASSWORD``. An
empty or absent credential file counts as not given (the unit's
``SetCredential=`` fallback makes a missing key file an empty credential
instead of a failed start); a ``$CREDENTIALS_DIRECTORY`` that names no
directory is a configuration error naming the variable.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Callable, Mapping

from agent.selflog import get_logger

log = get_logger("service")

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
# Secret name (Config field) -> credential name (the ID in LoadCredential=ID:PATH).
CREDENTIALS = {"api_key": "es-api-key", "password": "es-password"}
# How often STATUS= is refreshed from the main loop when nothing else asks.
STATUS_INTERVAL = 5.0


def notify_address(value: str) -> str | bytes | None:
    """The socket address of a ``$NOTIFY_SOCKET`` value: a path, or an
    abstract name (``@name`` -> ``\\0name``); None when unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock addresses (vsock:CID:PORT) are for VMs, not for this agent


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``, as
    sd_watchdog_enabled(3) advises), or None when the watchdog is off or meant
    for another process (``$WATCHDOG_PID``)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "").strip()
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return usec / 2_000_000


class Notifier:
    """sd_notify for the daemon; every method is a no-op without ``$NOTIFY_SOCKET``."""

    def __init__(self, env: Mapping[str, str] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        self._address = notify_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog = watchdog_interval(env) if self._address is not None else None
        self._monotonic = monotonic
        self._socket: socket.socket | None = None
        self._next_ping = float("-inf")
        self._next_status = float("-inf")
        self._last_status = ""
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def wait_bound(self, interval: float) -> float:
        """The main loop's wait: ``interval``, or shorter when the watchdog needs it."""
        return interval if self.watchdog is None else min(interval, self.watchdog)

    def send(self, *lines: str) -> bool:
        """One datagram of ``KEY=VALUE`` lines; True if it was sent."""
        if self._address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)  # never let systemd stall the main loop
            self._socket.sendto("\n".join(lines).encode("utf-8", "replace"), self._address)
            return True
        except OSError as error:
            if not self._warned:
                self._warned = True
                log.debug("cannot notify systemd", socket=self._address, error=error.strerror or str(error))
            return False

    def ready(self, status: str) -> None:
        self._last_status = status
        self._next_status = self._monotonic() + STATUS_INTERVAL
        self.send("READY=1", f"STATUS={status}")
        self._next_ping = self._monotonic() + (self.watchdog or 0.0)

    def tick(self, status: Callable[[], str]) -> None:
        """From the main loop only: a watchdog ping when due, and a STATUS=
        line when it changed and the last one is older than STATUS_INTERVAL."""
        if self._address is None:
            return
        now = self._monotonic()
        if self.watchdog is not None and now >= self._next_ping:
            self.send("WATCHDOG=1")
            self._next_ping = now + self.watchdog
        if now >= self._next_status:
            self._next_status = now + STATUS_INTERVAL
            text = status()
            if text != self._last_status:
                self._last_status = text
                self.send(f"STATUS={text}")

    def reloading(self) -> None:
        """A SIGHUP reload begins; ``ready`` ends it (sd_notify(3): RELOADING=1
        carries the monotonic time for Type=notify-reload units)."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def status_line(open_files: int, spool_bytes: int | None, acked: int) -> str:
    """``shipping: 3 files, spool 12.5 MB, 1200 acked`` (no spool part with --no-spool)."""
    parts = [f"shipping: {open_files} file{'s' if open_files != 1 else ''}"]
    if spool_bytes is not None:
        parts.append(f"spool {spool_bytes / 1_000_000:.1f} MB")
    parts.append(f"{acked} acked")
    return ", ".join(parts)


class CredentialsError(Exception):
    """``$CREDENTIALS_DIRECTORY`` is set but unusable (the config step makes it a ConfigError)."""


def read_credentials(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Secret name -> (credential file, its text stripped) for each non-empty
    credential in ``$CREDENTIALS_DIRECTORY``; empty when the variable is unset."""
    directory = env.get(CREDENTIALS_ENV, "")
    if not directory:
        return {}
    if not os.path.isdir(directory):
        raise CredentialsError(f"${CREDENTIALS_ENV} {directory}: not a directory (systemd sets it for "
                               "LoadCredential=; unset the variable or point it at the credentials)")
    found = {}
    for name, credential in CREDENTIALS.items():
        path = os.path.join(directory, credential)
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().strip()
        except FileNotFoundError:
            continue  # this credential is not given
        except OSError as error:
            raise CredentialsError(f"${CREDENTIALS_ENV}/{credential} {path}: cannot read the file: "
                                   f"{error.strerror}") from error
        except UnicodeDecodeError as error:
            raise CredentialsError(f"${CREDENTIALS_ENV}/{credential} {path}: the file is not UTF-8 text") \
                from error
        if value:
            found[name] = (path, value)
    return found
