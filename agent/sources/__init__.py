"""Tailing: find files (discovery), know which file is which (identity), cut
their bytes into lines (reader), open them under the right path
(harvesters) and follow them through rotation, truncation and deletion
(tailer). Offsets on disk live in ``agent.registry``."""

from agent.sources.tailer import LineSink, TailSettings, Tailer

__all__ = ["LineSink", "TailSettings", "Tailer"]
