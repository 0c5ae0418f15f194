"""The health engine's state on disk: checkpoint, journal, replay (the ``Persisted`` half of
``HealthEngine``; why it is exact: ``agent.health.engine``).

Files in ``<state_dir>/health/``:

- ``state.json``, written atomically (temp file, fsync, rename) by
  ``checkpoint``: ``{"version": 1, "journal": N, "windows": Windows.to_state
  (window states by WindowState.to_state), "collectors", "previous",
  "labels", "corrections", "correction_numbers", "watermarks", "frontier",
  "max_time", "alerts", "covered": {file key: [offsets]}, "outbox": [[id,
  document]], "counters"}``. Another version, or a file that does not parse,
  is logged and health starts empty (never a refusal to start).
- ``journal-N.log``: one line per event fed after the checkpoint that
  names N: ``FILE_KEY<TAB>OFFSET<TAB>DOCUMENT`` (the document as shipped, one
  JSON line: replaying extracts from it again, so feeding pays no second
  serialisation), appended with one ``write`` per batch (so a killed process
  loses nothing it wrote; a torn last line, from a power loss, is skipped). Journals before the one the
  checkpoint names are deleted after it is written.
- ``reference.json`` (``agent.health.reference``) and ``reference.reset``
  (the marker ``modelscribe health reset-reference`` leaves).
"""

from __future__ import annotations

import glob
import math
import os
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from agent.atomic import write_atomic
from agent.errors import StateError
from agent.health import intake, reference
from agent.health.alerts import AlertBook
from agent.health.labels import LabelJoin
from agent.health.state import LabelState, WindowState
from agent.health.windows import Windows
from agent.selflog import get_logger

if TYPE_CHECKING:
    from agent.events import Event

log = get_logger("health")

FORMAT_VERSION = 1
STATE_FILE = "state.json"
PRUNE_DELAY = 3  # checkpoints (seconds, in the daemon): see agent.health.engine


class Persisted:
    """Checkpoint, journal and replay, on the engine's attributes (set by ``HealthEngine._fresh``)."""

    _commit_history: deque[dict[str, int]]
    _pinned: dict[str, dict[int, int | None]]
    _checkpoints: int
    _extractors: dict[str, Any]

    def _journal_path(self, gen: int) -> str:
        return os.path.join(self.directory, f"journal-{gen:010d}.log")

    def _load(self) -> None:
        path = os.path.join(self.directory, STATE_FILE)
        state = None
        try:
            with open(path, "rb") as handle:
                state = orjson.loads(handle.read())
            if not isinstance(state, dict) or state.get("version") != FORMAT_VERSION:
                raise ValueError("unknown version")
        except FileNotFoundError:
            state = None
        except (OSError, ValueError, orjson.JSONDecodeError) as error:
            log.warning("the health state is not usable; health starts empty", path=path, error=str(error))
            state = None
        if state is not None:
            try:
                self._restore(state)
            except (KeyError, TypeError, ValueError) as error:
                log.warning("the health state is not usable; health starts empty", path=path, error=str(error))
                self._fresh()
        if self.settings.reference is None or self.settings.reference == "previous":
            stored = reference.load_store(self.directory)
            # A model still collecting in the checkpoint collects again (a replay
            # must count the same events without bins as the first run did).
            self._references = {mid: ref for mid, ref in stored.items() if mid not in self._collectors}
        self._take_reset()
        # Replay the journals the checkpoint does not cover, in order.
        replayed = 0
        journals = sorted(glob.glob(os.path.join(self.directory, "journal-*.log")))
        for journal in journals:
            gen = int(os.path.basename(journal)[8:-4])
            if gen < self._journal_gen:
                os.unlink(journal)
                continue
            replayed += self._replay(journal)
            self._journal_gen = max(self._journal_gen, gen + 1)
        if replayed:
            log.info("health state restored from its journal", events=replayed)

    def _replay(self, path: str) -> int:
        count = 0
        with open(path, "rb") as handle:
            for line in handle:
                try:
                    key, offset, data = line.rstrip(b"\n").split(b"\t", 2)
                    source_key = key.decode()
                    doc = orjson.loads(data)
                    obs = (self._extractors.get(source_key) or self._extractor(source_key, doc))(doc)
                    position = int(offset)
                except (orjson.JSONDecodeError, ValueError):
                    continue  # a torn last line (power loss): what it held was never acknowledged
                if obs is None or not self._cover(source_key, position):
                    continue
                self._apply((obs,))
                count += 1
                if count % 1000 == 0:
                    self._count_batch()
        self._count_batch()  # (an exception above leaves HealthEngine.__init__: nothing to count)
        return count

    def _restore(self, state: dict[str, Any]) -> None:
        caps = self.settings.caps
        saved = state["windows"]
        if saved["window_seconds"] == self._window and saved["lateness_seconds"] == self._lateness:
            self.windows = Windows.from_state(saved, new_state=self._new_window,
                                              state_from=lambda s: WindowState.from_state(s, caps.categories),
                                              max_models=caps.models, clock=self._clock)
        else:
            log.warning("health.window or health.lateness changed: the open windows of the last run are dropped")
        self._collectors = {mid: reference.Collector.from_state(c) for mid, c in state["collectors"].items()}
        self._held = sum(c.held for c in self._collectors.values())
        self._previous = {(tuple(k), name): counts for k, name, counts in state["previous"]}
        self._join = LabelJoin.from_state(state["labels"], self.settings.label_ttl, caps.pending_labels)
        self._corrections = {(tuple(k), start): LabelState.from_state(s, caps.categories)
                             for k, start, s in state["corrections"]}
        self._correction_numbers = {(tuple(k), start): n for k, start, n in state["correction_numbers"]}
        self._watermarks = {tuple(k): t for k, t in state["watermarks"]}
        self._frontier = {tuple(k): i for k, i in state["frontier"]}
        self._max_time = state["max_time"] if state["max_time"] is not None else -math.inf
        self._alerts = AlertBook.from_state(state["alerts"])
        self._covered = {key: set(offsets) for key, offsets in state["covered"].items()}
        self._outbox = {doc_id: data.encode() for doc_id, data in state["outbox"]}
        self.counters.update(state["counters"])
        self._journal_gen = int(state["journal"])

    def _snapshot(self) -> bytes:
        return orjson.dumps({
            "version": FORMAT_VERSION, "journal": self._journal_gen,
            "windows": self.windows.to_state(lambda s: s.to_state()),
            "collectors": {mid: c.to_state() for mid, c in self._collectors.items()},
            "previous": [[list(k), name, counts] for (k, name), counts in self._previous.items()],
            "labels": self._join.to_state(),
            "corrections": [[list(k), start, s.to_state()] for (k, start), s in self._corrections.items()],
            "correction_numbers": [[list(k), start, n] for (k, start), n in self._correction_numbers.items()],
            "watermarks": [[list(k), t] for k, t in self._watermarks.items()],
            "frontier": [[list(k), i] for k, i in self._frontier.items()],
            "max_time": self._max_time if math.isfinite(self._max_time) else None,
            "alerts": self._alerts.to_state(),
            "covered": {key: sorted(offsets) for key, offsets in self._covered.items()},
            "outbox": [[doc_id, data.decode()] for doc_id, data in self._outbox.items()],
            "counters": self.counters}, option=orjson.OPT_SERIALIZE_NUMPY)

    def checkpoint(self, committed: dict[str, int] | None = None) -> None:
        """Save the state atomically and start a new journal (main thread).
        ``committed``: the registry's offsets, read before it was saved; the
        lines below them are never read again, so ``covered`` forgets them."""
        with self._lock:
            self._take_reset()
            if committed is not None:
                # Pruned with the offsets of PRUNE_DELAY checkpoints ago: the
                # registry commits when the output acknowledges, and the spool
                # writes its ack block a moment later; a SIGKILL in between
                # makes the spool hand those records out again.
                self._checkpoints += 1
                self._commit_history.append(committed)
                committed = self._commit_history[0] if len(self._commit_history) > PRUNE_DELAY else None
                self._release_pins()
            if committed is not None and self._hold > 0:
                committed = None  # the spool still re-delivers what it recovered: see hold_pruning
            if committed is not None:
                for key in list(self._covered):
                    below = committed.get(key)
                    if below is not None:
                        offsets = self._covered[key]
                        # A re-delivered event below the offsets stays while the
                        # spool may hand it out again: the registry committed past
                        # it before it came back, so its offset says nothing of
                        # this delivery's ack (see HealthEngine.acknowledged).
                        pins = self._pinned.get(key, {})
                        kept = {o for o in offsets if o >= below or o in pins}
                        if len(kept) != len(offsets):
                            self._covered[key] = kept
                            self._dirty = True
                        if not kept:
                            del self._covered[key]
            if not self._dirty and not self._references_dirty:
                return
            references = dict(self._references) if self._references_dirty else None
            self._references_dirty = False
            old_gen = self._journal_gen
            self._journal_gen += 1
            if self._journal_fd is not None:
                os.close(self._journal_fd)
                self._journal_fd = None
            body = self._snapshot()
            self._dirty = False
        try:
            if references is not None:
                reference.save_store(self.directory, references)
            write_atomic(os.path.join(self.directory, STATE_FILE), body, prefix=".state.")
        except OSError as error:
            raise StateError(f"cannot write {self.directory}/{STATE_FILE}: {error.strerror}") from error
        # Every journal before the one the snapshot names is in the snapshot
        # (also those replayed at start-up).
        for journal in glob.glob(os.path.join(self.directory, "journal-*.log")):
            if int(os.path.basename(journal)[8:-4]) <= old_gen:
                try:
                    os.unlink(journal)
                except FileNotFoundError:
                    pass

    def _release_pins(self) -> None:
        """Forget the pins acknowledged PRUNE_DELAY checkpoints or more ago
        (the same delay a registry commit gets before it prunes)."""
        for key in list(self._pinned):
            pins = self._pinned[key]
            limit = self._checkpoints - PRUNE_DELAY
            for offset in [o for o, at in pins.items() if at is not None and at < limit]:
                del pins[offset]
            if not pins:
                del self._pinned[key]

    def _take_reset(self) -> None:
        marker = os.path.join(self.directory, reference.RESET_MARKER)
        if os.path.exists(marker):
            log.info("reference reset: references are collected again from the next events")
            self._references.clear()
            self._collectors.clear()
            self._held = 0
            self._previous.clear()
            self._references_dirty = True
            self._dirty = True
            try:
                os.unlink(marker)
            except OSError:
                pass

    def _journal(self, fresh: list[Event]) -> None:
        body = intake.journal_body(fresh)
        try:
            if self._journal_fd is None:
                self._journal_fd = os.open(self._journal_path(self._journal_gen),
                                           os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            view = memoryview(body)
            while view:
                written = os.write(self._journal_fd, view)
                view = view[written:]
        except OSError as error:
            raise StateError(f"cannot write the health journal in {self.directory}: {error.strerror}") from error

    def close(self) -> None:
        with self._lock:
            if self._journal_fd is not None:
                os.close(self._journal_fd)
                self._journal_fd = None
