"""The stop and reload signals of ``modelscribe run`` before its supervisor
handles them (start-up) and after it gave them back (the last moments of the
exit): recorded, never acted on here.

A tiny module on purpose: ``agent.launch`` installs ``EarlySignals`` before
it imports ``agent.cli`` (click and most of the package, a fifth of a second),
so this module imports only the standard library's ``signal`` and
``threading``, both cheap.

Guarantees:

- The handler only assigns (the first SIGTERM/SIGINT in ``stop``, a SIGHUP
  in ``reload``): no lock, nothing called, as in ``agent.supervise``.
- Installed over another ``EarlySignals`` (``run`` over the launcher's), an
  instance adopts it: it takes over what that one recorded (its first stop
  comes first) and its previous handlers as its own previous, and leaves it
  empty, so nothing is delivered twice and ``restore``/``release`` give back
  the handlers that were there before either (the defaults), never a
  recorder that nobody reads any more.
- ``Supervisor.install_signals`` finds an instance among the handlers it
  replaces and takes over what it recorded; its ``close`` gives the signals
  back to it (agent.supervise).
- What cannot be covered: the interpreter's own start-up, before the first
  line of ``agent.launch`` runs, is under the default actions, so a SIGHUP
  then still ends the process (exit 129). That is about 20 ms, more where
  ``site`` runs slow ``.pth`` files (an editable install's finder: 50 to
  100 ms in all on a development machine).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNAL = signal.SIGHUP
HANDLED = (*STOP_SIGNALS, RELOAD_SIGNAL)


class EarlySignals:
    """Stop and reload signals that come before a supervisor handles them
    (start-up) or after it gave them back (the last moments before exit):
    recorded, never acted on here."""

    def __init__(self) -> None:
        self.stop: int | None = None  # the first SIGTERM/SIGINT: why the agent stops
        self.reload = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Main thread only (a no-op elsewhere). Adopts an ``EarlySignals``
        found among the handlers it replaces (see the module docstring)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        # Read only now that these handlers take every new signal: the one
        # replaced records nothing more, so nothing is lost in between.
        outers = {getattr(handler, "__self__", None) for handler in self._previous.values()}
        for outer in outers:
            if isinstance(outer, EarlySignals) and outer is not self:
                self._adopt(outer)

    def _adopt(self, outer: EarlySignals) -> None:
        for sig, handler in list(self._previous.items()):
            if getattr(handler, "__self__", None) is outer and sig in outer._previous:
                self._previous[sig] = outer._previous[sig]
        if outer.stop is not None:
            self.stop = outer.stop  # it came before any this one recorded
        self.reload = self.reload or outer.reload
        # Emptied: a restore or release of the outer one must neither put its
        # recorder back nor deliver again what this one now holds.
        outer.stop, outer.reload = None, False
        outer._previous.clear()

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Plain assignments, as in Supervisor: no lock, nothing called.
        if signum == RELOAD_SIGNAL:
            self.reload = True
        elif self.stop is None:
            self.stop = signum

    def ignore(self) -> None:
        """Ignore the signals outright from now to the exit. As it shuts
        down, the interpreter puts back the default action of every signal
        that has a Python handler (a SIGHUP then exits 129, a SIGINT 130);
        an ignored signal stays ignored."""
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                signal.signal(sig, signal.SIG_IGN)

    def restore(self) -> None:
        """Give the signals back to their previous handlers; what was recorded is dropped."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def release(self) -> None:
        """``restore``, then deliver what was recorded to those handlers, as
        if this had never been installed (``--once``, which keeps the default
        behaviour)."""
        self.restore()
        if self.reload:
            signal.raise_signal(RELOAD_SIGNAL)
        if self.stop is not None:
            signal.raise_signal(self.stop)
