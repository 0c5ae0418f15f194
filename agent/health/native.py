"""Which implementation of health's hot path runs: C when it was built, else Python.

``agent/health/_native.c``, ``_native_counts.c`` and ``_native_intake.c``
(built by setup.py when a C compiler is there) do per event what
``extract._extract_default``, ``FeatureCounts.add``, ``LatencyHistogram.add``
and the intake of a batch (``agent.health.intake``: select, cover, the
journal's bytes) do, and defer to them for every value they do not handle
themselves: the Python functions are the specification. The tests of each
(tests/health/test_extract.py, test_bulk.py, test_histogram.py,
test_intake.py, test_engine.py) run under both implementations.

``MODELSCRIBE_HEALTH_NATIVE=0`` (or ``false``, ``off``, ``no``) in the
environment turns the C functions off: the benchmark compares the two this
way, and a suspected bug in them can be ruled out the same way. ``NATIVE``
is the module, or None; its callers read it here at each call
(``native.NATIVE``), so one assignment switches every one of them
(tests/native_switch.py does).
"""

from __future__ import annotations

import os
from types import ModuleType

NATIVE: ModuleType | None
try:
    from agent.health import _native as NATIVE  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the Python functions run
    NATIVE = None

if os.environ.get("MODELSCRIBE_HEALTH_NATIVE", "").strip().lower() in ("0", "false", "off", "no"):
    NATIVE = None
