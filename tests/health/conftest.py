"""pytest runs with ``--import-mode=importlib``: this directory is put on
``sys.path`` so a health test can use another's corpus
(``test_checkpoint_corrupt``: a name no other test directory uses)."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
