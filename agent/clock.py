"""The clock seam: code that waits or stamps times takes a Clock, so tests can
drive time without sleeping."""

from __future__ import annotations

import threading
import time


class Clock:
    """Wall and monotonic time, and an interruptible wait."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` or until ``event`` is set; True if it was set."""
        return event.wait(seconds)


class FakeClock(Clock):
    """A clock for tests: time moves only when ``advance`` is called."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 1000.0

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.advance(seconds)
        return event.is_set()


SYSTEM_CLOCK = Clock()
