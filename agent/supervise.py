"""What keeps the daemon honest: stage threads that cannot die unseen,
signals handled without locks, and the main loop's wake-up.

Guarantees:

- A stage (the reader, the batcher, an output worker) that raises stops the
  agent: the error is kept in ``deaths``, and the main loop wakes at once; the
  run then ends with exit code 1 (``EXIT_RUNTIME``), never 0. It is logged
  once, with its traceback; the same failure again (same stage, type and
  message: the next batch of an output that is gone, while the agent stops)
  is kept in ``deaths`` too but only logged at debug level.
- ``stopping`` is what a stage can poll to stop early: given to
  ``Tailer.run_once(stop=...)``, ``--once`` stops reading at the first death
  instead of reading its whole input for nothing.
- Signal handling is async-signal-safe. The Python handler only stores the
  signal number (a plain assignment: no lock). ``signal.set_wakeup_fd`` makes
  the interpreter's C-level handler write a byte to a socket pair that the
  main loop waits on with ``select``, so the loop wakes at once. Setting a
  ``threading.Event`` in the handler, as before, takes a lock that the
  interrupted main thread may itself hold inside ``Event.wait``: a deadlock.
- ``request_stop`` (another thread, tests) and a stage's death poke the same
  socket, so one ``wait`` serves every reason to stop.
- SIGHUP is not a stop: its handler only sets ``reload_requested`` (the same
  plain assignment), the same wake-up byte ends the main loop's ``wait``, and
  the loop, seeing no reason to stop, takes the request (``take_reload``)
  and re-reads the configuration (``agent.reload``).
- No moment of ``modelscribe run`` (daemon) that runs our code is left to
  the default handlers, which kill the process on SIGHUP (exit 129) and
  turn SIGINT into click's "Aborted!" (exit 1). ``EarlySignals``
  (``agent.early_signals``) records the three signals while the agent
  starts: the console script and ``python -m agent`` enter through
  ``agent.launch``, which installs one before importing the command line
  (click and most of the package); the ``run`` command installs its own
  over it, which adopts what that one recorded, and covers the rest of the
  start-up (imports, configuration, opening the spool). ``install_signals``
  takes over what was recorded, so a stop asked during start-up stops the
  agent as soon as it can (exit 0) and a SIGHUP that came after the
  configuration was read is applied once the agent is ready (one that came
  before is dropped by ``run``: the configuration it read is the newest).
  The supervisor's handlers stay until the very end (``close``, after the
  metrics server stopped and everything was saved) and give back to
  ``EarlySignals``, which records what comes after and ignores it: the exit
  code is already decided. As the interpreter exits it puts back the
  default actions, so ``run`` ignores the signals outright then
  (``ignore``, from ``atexit``). One window cannot be closed: the
  interpreter's own start-up (about 20 ms, more with slow ``.pth`` files)
  before ``agent.launch`` runs its first line, where a SIGHUP still ends
  the process (exit 129).
- ``call`` runs start-up work that may block (the output's check, up to
  10 s) so that a stop still ends the start-up at once.
- A save the main loop retries every second (the registry, health's
  checkpoint) and that keeps failing is logged by a ``FailureStreak``: an
  error at once, then one every ``interval`` seconds while it lasts, and a
  line when it works again; never one a second.
"""

from __future__ import annotations

import select
import signal
import socket
import threading
from typing import Any, Callable

# Re-exported: EarlySignals lives in its own tiny module so that agent.launch
# can install it before importing anything heavy; its users import it here.
from agent.early_signals import HANDLED, RELOAD_SIGNAL, STOP_SIGNALS, EarlySignals
from agent.clock import Clock
from agent.errors import ModelscribeError
from agent.selflog import Logger, get_logger

log = get_logger("supervise")
_CALL_WAIT = 1.0  # seconds; only bounds each select in ``call``: its end and a stop wake it at once

__all__ = ["HANDLED", "RELOAD_SIGNAL", "STOP_SIGNALS", "EarlySignals", "FailureStreak", "Supervisor"]


class FailureStreak:
    """The log of one save retried every second (see the module docstring)."""

    def __init__(self, logger: Logger, clock: Clock, failing: str, working: str, interval: float,
                 level: str = "error") -> None:
        self._log, self._clock = logger, clock
        self._failing, self._working, self._interval = failing, working, interval
        self._emit = getattr(logger, level)
        self.since: float | None = None  # (monotonic) since when it fails
        self._logged = 0.0

    def failed(self, **fields: Any) -> None:
        now = self._clock.monotonic()
        if self.since is None:
            self.since = self._logged = now
            self._emit(self._failing, **fields)
        elif now - self._logged >= self._interval:
            self._logged = now
            self._emit("still " + self._failing, failing_for=round(now - self.since), **fields)

    def succeeded(self, **fields: Any) -> None:
        if self.since is not None:
            self._log.info(self._working, failed_for=round(self._clock.monotonic() - self.since), **fields)
            self.since = None


class Supervisor:
    def __init__(self) -> None:
        # Made on first use (``open``): a pipeline built and never run holds no sockets.
        self._receive: socket.socket | None = None
        self._send: socket.socket | None = None
        self.signal: int | None = None
        self.deaths: list[tuple[str, BaseException]] = []
        self._stop_requested = False
        self.reload_requested = False  # set by SIGHUP (or request_reload), cleared by take_reload
        self._previous: dict[int, Any] = {}
        self._previous_fd: int | None = None

    def open(self) -> None:
        if self._receive is None:
            self._receive, self._send = socket.socketpair()
            self._receive.setblocking(False)
            self._send.setblocking(False)

    # -- signals -------------------------------------------------------------

    def install_signals(self) -> None:
        """Route SIGTERM/SIGINT (stop) and SIGHUP (reload) to this supervisor
        (only possible in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self.open()
        assert self._send is not None
        self._previous_fd = signal.set_wakeup_fd(self._send.fileno(), warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        self._previous[RELOAD_SIGNAL] = signal.signal(RELOAD_SIGNAL, self._on_reload)
        # Read only now that these handlers take every new signal: none is lost in between.
        early = {getattr(handler, "__self__", None) for handler in self._previous.values()}
        for recorder in early:
            if not isinstance(recorder, EarlySignals):
                continue
            if recorder.stop is not None and self.signal is None:
                self.signal = recorder.stop
                log.info("stop requested during start-up; stopping", signal=signal.Signals(recorder.stop).name)
            self.reload_requested = self.reload_requested or recorder.reload
            if self.signal is not None or self.reload_requested:
                self._poke()

    def restore_signals(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._previous_fd = None

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Only an assignment: the byte that wakes the main loop was already
        # written by the interpreter's own handler (set_wakeup_fd).
        self.signal = signum

    def _on_reload(self, _signum: int, _frame: object) -> None:
        self.reload_requested = True  # only an assignment, as above

    def request_reload(self) -> None:
        """What SIGHUP does, from any thread (tests)."""
        self.reload_requested = True
        self._poke()

    def take_reload(self) -> bool:
        """True once per request (main loop). A SIGHUP arriving while this
        runs may be merged into the request being taken: the configuration is
        read after the flag is cleared, so it still sees what that SIGHUP
        announced."""
        if not self.reload_requested:
            return False
        self.reload_requested = False
        return True

    # -- stopping ------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop_requested = True
        self._poke()

    def stopping(self) -> bool:
        return self.signal is not None or self._stop_requested or bool(self.deaths)

    def wait(self, timeout: float, reload: bool = True) -> bool:
        """Sleep up to ``timeout``, or until a reason to stop or (``reload``)
        a reload request; True if there is a reason to stop. With ``reload``
        False a pending request does not end the sleep: it waits for the
        main loop, and the wait does not spin meanwhile."""
        self.open()
        if not self.stopping() and not (reload and self.reload_requested):
            readable, _, _ = select.select([self._receive], [], [], timeout)
            if readable:
                self._drain()
        return self.stopping()

    def call(self, name: str, target: Callable[[], Any]) -> Any:
        """``target()`` in a daemon thread, waited for until it returns (its
        result; what it raised is raised here) or a reason to stop comes:
        then None at once, and the thread is left to end on its own, its
        result dropped. For start-up work that may block (the output's
        check): a stop must not wait for it. From the main loop's thread."""
        if self.stopping():
            return None
        self.open()  # before the thread starts: its poke must find the socket
        done: list[tuple[bool, Any]] = []

        def body() -> None:
            try:
                done.append((True, target()))
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                done.append((False, error))
            finally:
                self._poke()

        threading.Thread(target=body, name=name, daemon=True).start()
        while not done:
            if self.wait(_CALL_WAIT, reload=False):
                return None
        ok, value = done[0]
        if not ok:
            raise value
        return value

    def _poke(self) -> None:
        try:
            if self._send is not None:  # no socket: nobody waits on it yet, and wait checks first
                self._send.send(b"\0")
        except OSError:
            pass  # the buffer is full: the loop has wake-ups pending anyway

    def _drain(self) -> None:
        try:
            while self._receive is not None and self._receive.recv(512):
                pass
        except OSError:
            pass  # nothing more to read (BlockingIOError) or closed

    # -- stages --------------------------------------------------------------

    def thread(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        """A daemon thread whose exception is reported by ``died``."""
        def body() -> None:
            try:
                target(*args)
            except BaseException as error:  # noqa: BLE001 - reported, and the agent stops
                self.died(name, error)

        return threading.Thread(target=body, name=name, daemon=True)

    def died(self, stage: str, error: BaseException) -> None:
        seen = any(_same_death(stage, error, *death) for death in self.deaths)
        self.deaths.append((stage, error))  # every death is kept: /metrics counts them
        if seen:
            # The same failure again (the next batch of a dead output, while
            # the agent stops): one message per cause, not one per batch.
            log.debug("the same stage failure again while stopping", stage=stage, error=repr(error))
        else:
            # An error the agent raised on purpose (a ModelscribeError: stdout
            # closed, a spool that cannot be written) says all in its message;
            # anything else is a bug, whose type and traceback are the clue.
            on_purpose = isinstance(error, ModelscribeError)
            log.error("a stage died; stopping the agent", stage=stage,
                      error=str(error) if on_purpose else repr(error), exc_info=None if on_purpose else error)
        self._poke()

    def close(self) -> None:
        """Give the signals back (last: see the module docstring) and close the sockets."""
        self.restore_signals()
        for sock in (self._receive, self._send):
            if sock is not None:
                sock.close()
        self._receive = self._send = None


def _same_death(stage: str, error: BaseException, seen_stage: str, seen: BaseException) -> bool:
    return stage == seen_stage and type(error) is type(seen) and str(error) == str(seen)
