"""One agent per state directory (and per spool directory).

Two agents on one ``--state-dir`` overwrite each other's registry (each
re-ships the other's files: 3,000 duplicates in audit 4), and one that opens
the other's spool ships that agent's lines to its own output (2,000 lines
misrouted). So ``modelscribe run`` holds an exclusive ``flock`` on
``<dir>/lock`` for as long as it runs, taken before it reads any state, and a
second agent is refused at once (exit 2, naming the directory and the pid
that holds it) instead of corrupting both.

Guarantees:

- The lock is the kernel's: it goes with the process, so a SIGKILLed or
  crashed agent never leaves a stale lock behind (the file stays, unlocked).
- The file holds the holder's pid and a newline, written after the lock is
  taken; it is only read to name the holder in the message.
- Read-only commands (``status``, ``check``, ``dlq list``) take no lock.
"""

from __future__ import annotations

import errno
import fcntl
import os

from agent.errors import ConfigError

LOCK_NAME = "lock"


class DirectoryLock:
    """The exclusive lock of one directory; ``release`` (or the process's end) frees it."""

    def __init__(self, directory: str, flag: str) -> None:
        self.path = os.path.join(directory, LOCK_NAME)
        self._flag = flag
        self._fd: int | None = None

    def acquire(self) -> None:
        """ConfigError when another process holds it (or it cannot be taken)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise ConfigError(f"{self._flag}: cannot open {self.path}: {error.strerror}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _holder(fd)
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK):  # held by another process
                raise ConfigError(
                    f"{self._flag}: another modelscribe{holder} is using {os.path.dirname(self.path)}; each agent "
                    "needs its own directory (two would overwrite each other's offsets and ship each other's "
                    "spooled lines)") from None
            raise ConfigError(f"{self._flag}: cannot lock {self.path}: {error.strerror}") from error
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, b"%d\n" % os.getpid(), 0)
        except OSError:
            pass  # (only names the holder to the next one: a full disk must not stop the agent here)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # (closing the descriptor frees the flock)
            self._fd = None

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: BLE001 - at interpreter exit os may be gone; the kernel frees the lock anyway
            pass


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
