"""Health's hot path in C or in Python, chosen per test (``agent.health.native``).

The Python functions are the specification of the C ones: the tests that hold
bulk counting and extraction to their references run under both, and the
engine's documents must be the same under both. In CI the C module must have
been built (a missing compiler would otherwise turn its tests into skips).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import pytest

from agent.health import native

IMPLEMENTATIONS = ("c", "python")


@contextmanager
def health_implementation(name: str) -> Iterator[None]:
    if name == "c":
        if native.NATIVE is None:
            message = "agent/health/_native.c was not built (no C compiler?), or MODELSCRIBE_HEALTH_NATIVE=0"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        yield
        return
    saved = native.NATIVE
    native.NATIVE = None  # (every caller reads it there, at each call)
    try:
        yield
    finally:
        native.NATIVE = saved
