"""The one thing pyproject.toml cannot declare: health's optional C extension.

``agent/health/_native.c``, ``_native_counts.c`` and ``_native_intake.c``
are health's hot path in C (extraction, feature counting, the latency
histogram and the intake of a batch: issue 10's cost). It is optional: where no C compiler or Python
headers are found, the build goes on without it and the agent runs the
Python functions it mirrors (``agent/health/native.py``), with the same
results, only slower.
"""

from setuptools import Extension, setup

_SOURCES = ["agent/health/_native.c", "agent/health/_native_counts.c", "agent/health/_native_intake.c"]

setup(ext_modules=[Extension("agent.health._native", _SOURCES,
                           depends=["agent/health/_native.h"], libraries=["m"], optional=True)])
