"""The health engine's state on disk: checkpoint, journal, replay (the ``Persisted`` half of
``HealthEngine``; why it is exact: ``agent.health.engine``).

Files in ``<state_dir>/health/``:

- ``state.json``, written atomically (temp file, fsync, rename) by
  ``checkpoint``: ``{"version": 1, "journal": N, "windows": Windows.to_state
  (window states by WindowState.to_state), "collectors", "previous",
  "labels", "corrections", "correction_numbers", "watermarks", "frontier",
  "max_time", "alerts", "covered": {file key: [offsets]}, "outbox": [[id,
  document]], "counters"}``. Another version, a file that does not parse, or
  one of another shape is logged (naming the file and the first bad value)
  and health starts empty: never a refusal to start, and never a failure
  later. A file this user may not read (PermissionError: root-owned after a
  ``sudo modelscribe ...``) or a directory of that name is no damage: a
  ConfigError (exit 2) naming it and what to do (give it back; move the
  directory away), and it is left as it is (audit 11: it was moved aside and
  health started empty; audit 12: still so for a directory). ``check_state`` checks the whole file before anything is restored:
  every value the engine uses later (a count it adds to, a time it compares,
  a key it makes a model key of, bins it counts in) has the type and range
  the writer gives it, and the count vectors fit their bins.
- ``journal-N.log``: one line per event fed after the checkpoint that
  names N: ``FILE_KEY<TAB>OFFSET<TAB>DOCUMENT`` (the document as shipped, one
  JSON line: replaying extracts from it again, so feeding pays no second
  serialisation), appended with one ``write`` per batch (so a killed process
  loses nothing it wrote; a torn last line, from a power loss, is skipped). Journals before the one the
  checkpoint names are deleted after it is written. Another file named
  ``journal-*.log`` is logged and left alone; a journal that cannot be read
  (an I/O error) is logged and its events are not counted; one this user may
  not read, or a directory of that name, is a ConfigError at the start, as
  for state.json (audit 12: a directory was skipped with a warning).
- A full disk (ENOSPC, EDQUOT) under a journal line or a checkpoint is told
  to ``on_disk_full`` (the spool's ``reclaim``, wired by the pipeline); if
  that freed space, the write is tried once more before anything is left out
  or raised.
- ``reference.json`` (``agent.health.reference``) and ``reference.reset``
  (the marker ``modelscribe health reset-reference`` leaves).
"""

from __future__ import annotations

import errno
import glob
import math
import os
import re
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

import orjson

from agent.atomic import write_atomic
from agent.errors import ConfigError, StateError
from agent.health import histogram, intake, reference
from agent.health.reference import (SHAPE_LIMIT, expect_int, expect_ints, expect_list, expect_number, expect_object,
                                    expect_str, expect_strs, shape_error)
from agent.health.alerts import AlertBook
from agent.health.drift import QUALITY_KINDS
from agent.health.labels import LabelJoin
from agent.health.state import LabelState, WindowState
from agent.health.windows import LATEST_DOCUMENT_TIME, Windows
from agent.registry import unusable_state_file
from agent.selflog import get_logger

if TYPE_CHECKING:
    from agent.events import Event

log = get_logger("health")

FORMAT_VERSION = 1
STATE_FILE = "state.json"
PRUNE_DELAY = 3  # checkpoints (seconds, in the daemon): see agent.health.engine
# 18 digits at most: a generation past 2**63 could not be written into state.json again.
_JOURNAL_NAME = re.compile(r"journal-(\d{1,18})\.log")
_FAILURE_LOG_INTERVAL = 60.0  # seconds between the errors of a journal that stays unwritable
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_OWNER_HINT = ("run the agent as the user that owns the state directory, e.g. with runuser -u modelscribe, "
               "or give it back to that user (chown -R)")


def _not_readable(path: str, error: OSError) -> ConfigError:
    """A state file this user may not read (root-owned after a ``sudo modelscribe
    ...``) is not damage: moving it aside would throw the state away, and a
    restart cannot fix it (exit 2)."""
    return ConfigError(f"cannot read {path}: {error.strerror} ({_OWNER_HINT}); the health state in it is kept")


def _a_directory(path: str, what: str, instead: str, error: OSError | None = None) -> ConfigError:
    """A directory in place of a health state file: nothing health wrote, so
    not damage to move aside or skip, and a restart cannot fix it (exit 2,
    naming it; the directory is left as it is)."""
    if error is None:
        error = IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    return unusable_state_file(path, error, what, instead)


_STATE_INSTEAD = "health then starts empty"
_JOURNAL_INSTEAD = "health then carries on without it"


class Persisted:
    """Checkpoint, journal and replay, on the engine's attributes (set by ``HealthEngine._fresh``)."""

    _commit_history: deque[dict[str, int]]
    _pinned: dict[str, dict[int, int | None]]
    _checkpoints: int
    _extractors: dict[str, Any]
    _once: Callable[..., None]
    _journal_failing_since: float | None  # (monotonic) since when the journal cannot be written
    _journal_failure_logged: float
    # Told when the disk refuses a journal line or a checkpoint for want of space
    # (ENOSPC, EDQUOT): the agent wires the spool's ``reclaim``, which frees the
    # delivered records it holds on that disk; True if it freed bytes, and the
    # write is then tried once more. Called from the thread that writes.
    on_disk_full: Callable[[], bool] | None = None

    def _freed_space(self, error: BaseException | None) -> bool:
        """``error`` is a full disk and ``on_disk_full`` freed space on it."""
        hook = self.on_disk_full
        if hook is None or not isinstance(error, OSError) or error.errno not in _DISK_FULL:
            return False
        try:
            return bool(hook())
        except Exception as hook_error:  # (freeing space is a favour: never the writer's failure)
            log.debug("health: freeing space after a full disk failed", error=str(hook_error))
            return False

    def _journal_path(self, gen: int) -> str:
        return os.path.join(self.directory, f"journal-{gen:010d}.log")

    def _journals(self) -> list[tuple[int, str]]:
        """The journals in the directory, oldest first (another ``journal-*.log`` is logged once, left alone)."""
        found = []
        for path in glob.glob(os.path.join(self.directory, "journal-*.log")):
            match = _JOURNAL_NAME.fullmatch(os.path.basename(path))
            if match is None:
                self._once(f"journal-name {path}", "health: a file named like a journal is not one; left alone",
                           path=path)
            else:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def _remove_journal(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as error:  # (a directory of that name: nothing health wrote)
            self._once(f"journal-unlink {path}", "health: an old journal cannot be deleted; left alone",
                       path=path, error=error.strerror)

    def _set_aside(self, path: str, error: str) -> None:
        """An unusable state.json is kept as ``state.json.unusable-<unix-ms>``
        (the next checkpoint would overwrite it: after a downgrade, the newer
        agent's state would be gone for good)."""
        aside = f"{path}.unusable-{int(self._clock.time() * 1000)}"
        try:
            os.replace(path, aside)
        except OSError:
            aside = "-"  # (it cannot be renamed: the checkpoint fails on it and says so)
        log.warning("the health state is not usable; moved aside, health starts empty", path=path,
                    moved_to=aside, error=error)

    def _load(self) -> None:
        path = os.path.join(self.directory, STATE_FILE)
        state = None
        try:
            with open(path, "rb") as handle:
                state = orjson.loads(handle.read())
            if not isinstance(state, dict) or state.get("version") != FORMAT_VERSION:
                found = state.get("version") if isinstance(state, dict) else None
                raise ValueError(f"unknown version {found!r} (this agent reads {FORMAT_VERSION})")
            check_state(state)
        except FileNotFoundError:
            state = None
        except PermissionError as error:
            raise _not_readable(path, error) from error
        except IsADirectoryError as error:  # (not damage: nothing health wrote; left as it is)
            raise _a_directory(path, "the health state", _STATE_INSTEAD, error) from error
        except (OSError, ValueError) as error:  # (JSONDecodeError is a ValueError)
            self._set_aside(path, str(error))
            state = None
        if state is not None:
            try:
                self._restore(state)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as error:
                # (check_state let it through: a second net, so a gap in it never stops the agent)
                self._set_aside(path, str(error))
                self._fresh()
        if self.settings.reference is None or self.settings.reference == "previous":
            stored = reference.load_store(self.directory)
            # A model still collecting in the checkpoint collects again (a replay
            # must count the same events without bins as the first run did).
            self._references = {mid: ref for mid, ref in stored.items() if mid not in self._collectors}
            self._drop_unfitting_previous()
        self._take_reset()
        # Replay the journals the checkpoint does not cover, in order.
        replayed = 0
        journals = self._journals()
        for _, journal in journals:
            if os.path.isdir(journal):  # (old or not: nothing health wrote, and never deleted)
                raise _a_directory(journal, "a health journal", _JOURNAL_INSTEAD)
        for gen, journal in journals:
            if gen < self._journal_gen:
                self._remove_journal(journal)
                continue
            replayed += self._replay(journal)
            self._journal_gen = max(self._journal_gen, gen + 1)
        if replayed:
            log.info("health state restored from its journal", events=replayed)

    def _drop_unfitting_previous(self) -> None:
        """``previous`` counts are compared bin by bin with the next window's; counts
        that do not fit the model's reference (a reference.json moved aside and
        collected again, a corrupt file) would make that comparison fail."""
        for (kt, part), counts in list(self._previous.items()):
            ref = self._references.get(reference.model_id(kt))
            role, _, name = part.partition(":")
            bins = None if ref is None else ref.prediction if role == "prediction" else ref.features.get(name)
            if bins is None or bins.size != len(counts):
                del self._previous[(kt, part)]

    def _replay(self, path: str) -> int:
        count = 0
        damaged = damaged_bytes = good = good_bytes = 0
        try:
            with open(path, "rb") as handle:
                for line in handle:
                    try:
                        key, offset, data = line.rstrip(b"\n").split(b"\t", 2)
                        source_key = key.decode()
                        doc = orjson.loads(data)
                        obs = (self._extractors.get(source_key) or self._extractor(source_key, doc))(doc)
                        position = int(offset)
                    except (orjson.JSONDecodeError, ValueError):
                        # A torn last line (a kill inside the write, a power loss; no newline)
                        # held events never sent: they come again. A line damaged anywhere
                        # else held events that may have been delivered since: said, counted.
                        if line.endswith(b"\n"):
                            damaged += 1
                            damaged_bytes += len(line)
                        continue
                    good += 1
                    good_bytes += len(line)
                    if obs is None or not 0 <= position < SHAPE_LIMIT or not self._cover(source_key, position):
                        continue  # (an offset no file has would not fit in state.json)
                    self._apply((obs,))
                    count += 1
                    if count % 1000 == 0:
                        self._count_batch()
        except PermissionError as error:  # (not damage: see ``_not_readable``)
            raise _not_readable(path, error) from error
        except IsADirectoryError as error:  # (made since ``_load`` looked)
            raise _a_directory(path, "a health journal", _JOURNAL_INSTEAD, error) from error
        except OSError as error:  # (an I/O error)
            log.warning("health: a journal cannot be read; the events it holds are not counted", path=path,
                        error=error.strerror)
        if damaged:
            # A damaged stretch (a power loss's hole of NULs) may have swallowed the newlines
            # of several lines: their events are estimated from the journal's line length.
            events = max(damaged, round(damaged_bytes * good / good_bytes)) if good_bytes else damaged
            self.counters["journal_damaged"] = self.counters.get("journal_damaged", 0) + events
            log.warning("health: damaged lines in a journal were skipped; the events they held are not counted "
                        "(about that many, counted in the health state's journal_damaged)", path=path,
                        lines=damaged, bytes=damaged_bytes, events=events)
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
        self._collectors = {mid: reference.Collector.from_state(c, f"collectors[{mid!r}]")
                            for mid, c in state["collectors"].items()}
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
        for attempt in (1, 2):
            try:
                if references is not None:
                    reference.save_store(self.directory, references)
                write_atomic(os.path.join(self.directory, STATE_FILE), body, prefix=".state.")
            except (OSError, StateError) as error:  # (save_store raises StateError, naming its file)
                if attempt == 1 and self._freed_space(error if isinstance(error, OSError) else error.__cause__):
                    continue  # the spool freed its delivered records: once more
                # Nothing is lost: the journals since the last state.json stay, and
                # the next checkpoint tries again.
                with self._lock:
                    self._dirty = True
                    if references is not None:
                        self._references_dirty = True
                if isinstance(error, StateError):
                    raise
                raise StateError(f"cannot write {self.directory}/{STATE_FILE}: {error.strerror}") from error
            break
        # Every journal before the one the snapshot names is in the snapshot
        # (also those replayed at start-up).
        for gen, journal in self._journals():
            if gen <= old_gen:
                self._remove_journal(journal)

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

    def _journal(self, fresh: list[Event]) -> bool:
        """Append ``fresh`` to the journal; False when it cannot be written (a
        full disk, a read-only state directory): whatever part was written is
        cut back, so that the next line does not join a torn one (replay would
        skip both), and the caller leaves the events out of health."""
        body = intake.journal_body(fresh)
        for attempt in (1, 2):
            base = None
            try:
                if self._journal_fd is None:
                    self._journal_fd = os.open(self._journal_path(self._journal_gen),
                                               os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                base = os.lseek(self._journal_fd, 0, os.SEEK_END)
                view = memoryview(body)
                while view:
                    written = os.write(self._journal_fd, view)
                    view = view[written:]
            except OSError as error:
                if base is not None:
                    try:
                        os.ftruncate(self._journal_fd, base)
                    except OSError as cut_error:
                        raise StateError(f"cannot cut back the health journal in {self.directory} after a "
                                         f"failed write: {cut_error.strerror}") from cut_error
                if attempt == 1 and self._freed_space(error):
                    continue  # the spool freed its delivered records: once more, nothing left out
                self._journal_failed(len(fresh), error)
                return False
            break
        if self._journal_failing_since is not None:
            log.info("health: the journal is written again; events are counted again",
                     directory=self.directory, left_out=self._left_out, left_out_total=self.counters["unrecorded"])
            self._journal_failing_since = None
        return True

    def _journal_failed(self, events: int, error: OSError) -> None:
        self.counters["unrecorded"] = self.counters.get("unrecorded", 0) + events
        now = self._clock.monotonic()
        if self._journal_failing_since is None:
            self._left_out = 0
        self._left_out += events
        if self._journal_failing_since is None or now - self._journal_failure_logged >= _FAILURE_LOG_INTERVAL:
            if self._journal_failing_since is None:
                self._journal_failing_since = now
            self._journal_failure_logged = now
            log.error("health: cannot write the journal; events are left out of model health until it can be "
                      "written (shipping goes on)", directory=self.directory, error=error.strerror,
                      left_out=self._left_out, left_out_total=self.counters["unrecorded"])

    def close(self) -> None:
        with self._lock:
            if self._journal_failing_since is not None:  # (the last figure logged may be a minute old)
                log.error("health: the journal could still not be written when the agent stopped",
                          directory=self.directory, left_out=self._left_out,
                          left_out_total=self.counters["unrecorded"])
            if self._journal_fd is not None:
                os.close(self._journal_fd)
                self._journal_fd = None


# -- the shape of state.json ------------------------------------------------------------
# Checked whole before anything is restored, so that a corrupt file is refused here,
# naming its first bad value, and never fails later at an event or a window's close.
# The parts other modules write (windows, window states, labels, alerts) are checked
# against their ``to_state``; tests/health/test_checkpoint_corrupt.py holds a real
# engine's state to these checks, so a change of format that forgets them fails there.

_LOWEST_BUCKET = histogram.bucket_index(histogram.MIN_VALUE)
_HIGHEST_BUCKET = histogram.bucket_index(math.inf)


def _time(value: Any, where: str) -> float:  # (what extraction accepts: 1970 to the year 9999)
    return expect_number(value, where, 0.0, LATEST_DOCUMENT_TIME)


def _kt(value: Any, where: str) -> None:
    """The engine's model key: model (not empty), version, service, host, as strings."""
    if value.__class__ is not list or len(value) != 4 or not set(map(type, value)) <= {str} or not value[0]:
        shape_error(where, "a model key (4 strings, the model not empty)", value)


def _rows(value: Any, where: str, size: int) -> list[tuple[str, list[Any]]]:
    rows = expect_list(value, where)
    return [(f"{where}[{i}]", expect_list(row, f"{where}[{i}]", size)) for i, row in enumerate(rows)]


def _check_labels(value: Any, where: str) -> None:
    """A LabelState: confusion counts, regression sums, unusable pairs."""
    labels = expect_object(value, where, ("c", "r", "u"))
    expect_int(labels["u"], f"{where}.u")
    if labels["c"] is not None:
        c = expect_object(labels["c"], f"{where}.c",
                          ("true", "predicted", "counts", "labels", "max_classes", "dropped"))
        names, true, predicted = (expect_strs(c[part], f"{where}.c.{part}") for part in ("labels", "true", "predicted"))
        counts = expect_ints(c["counts"], f"{where}.c.counts")
        if not len(true) == len(predicted) == len(counts) or not set(true) | set(predicted) <= set(names):
            shape_error(where + ".c", "pairs of classes named in labels, one count each", c)
        expect_int(c["max_classes"], f"{where}.c.max_classes", 1)
        expect_int(c["dropped"], f"{where}.c.dropped")
    if labels["r"] is not None:
        r = expect_object(labels["r"], f"{where}.r", ("n", "sum_abs", "sum_sq"))
        expect_int(r["n"], f"{where}.r.n")
        expect_number(r["sum_abs"], f"{where}.r.sum_abs", 0.0)
        expect_number(r["sum_sq"], f"{where}.r.sum_sq", 0.0)


def _check_counted(pair: Any, where: str) -> None:
    """[bins, counts] of a feature in a window: the counts fit the bins."""
    bins, counts = expect_list(pair, where, 2)
    reference.check_bins(bins, f"{where}[0]")
    counts = expect_object(counts, f"{where}[1]", ("counts", *QUALITY_KINDS))
    if len(expect_ints(counts["counts"], f"{where}[1].counts")) != len(bins["reference_counts"]):
        shape_error(f"{where}[1].counts", f"{len(bins['reference_counts'])} counts (one per bin)", counts["counts"])
    for kind in QUALITY_KINDS:
        expect_int(counts[kind], f"{where}[1].{kind}")


def _check_histogram(value: Any, where: str) -> None:
    h = expect_object(value, where, ("v", "index", "counts", "zero", "count", "total", "min", "max"))
    index = expect_ints(h["index"], f"{where}.index", _LOWEST_BUCKET)
    counts = expect_ints(h["counts"], f"{where}.counts", 1)
    if len(index) != len(counts) or any(a >= b for a, b in zip(index, index[1:])) or \
            (index and index[-1] > _HIGHEST_BUCKET) or h["v"] != 1:
        shape_error(where, "a latency histogram (version 1, increasing bucket indexes, one count each)", h)
    if expect_int(h["count"], f"{where}.count") != expect_int(h["zero"], f"{where}.zero") + sum(counts):
        shape_error(f"{where}.count", "the sum of the counts", h["count"])
    expect_number(h["total"], f"{where}.total", 0.0)
    if h["count"] == 0:
        if h["min"] is not None or h["max"] is not None:
            shape_error(where, "no min and max in an empty histogram", (h["min"], h["max"]))
    elif expect_number(h["min"], f"{where}.min", 0.0) > expect_number(h["max"], f"{where}.max", 0.0):
        shape_error(where, "min <= max", (h["min"], h["max"]))


def _check_window(value: Any, where: str) -> None:
    """A WindowState."""
    window = expect_object(value, where, ("n", "lat", "f", "p", "l"))
    for i, n in enumerate(expect_list(window["n"], f"{where}.n", 8)):
        expect_int(n, f"{where}.n[{i}]")
    _check_histogram(window["lat"], f"{where}.lat")
    for name, pair in expect_object(window["f"], f"{where}.f").items():
        _check_counted(pair, f"{where}.f[{name!r}]")
    if window["p"] is not None:
        _check_counted(window["p"], f"{where}.p")
    _check_labels(window["l"], f"{where}.l")


def _check_windows(value: Any, where: str) -> None:
    windows = expect_object(value, where, ("v", "window_seconds", "lateness_seconds", "keys", "counters"))
    if windows["v"] != 1:
        shape_error(f"{where}.v", "1", windows["v"])
    seconds = expect_int(windows["window_seconds"], f"{where}.window_seconds", 1)
    expect_number(windows["lateness_seconds"], f"{where}.lateness_seconds", 0.0)
    for i, key in enumerate(expect_list(windows["keys"], f"{where}.keys")):
        at = f"{where}.keys[{i}]"
        key = expect_object(key, at, ("key", "watermark", "frontier", "open"))
        model = key["key"]
        if model.__class__ is not list or len(model) != 4 or model[0].__class__ is not str or not model[0] or \
                not set(map(type, model[1:])) <= {str, type(None)}:
            shape_error(f"{at}.key", "a model key (model, version, service, host)", model)
        if key["frontier"] is not None:
            expect_int(key["frontier"], f"{at}.frontier", -SHAPE_LIMIT)
        opened = _rows(key["open"], f"{at}.open", 3)
        if key["watermark"] is not None:
            _time(key["watermark"], f"{at}.watermark")
        elif opened:  # (an open window has had an event: its key has a watermark)
            shape_error(f"{at}.watermark", "a time (the key has open windows)", None)
        for row_at, (index, state, late) in opened:
            expect_int(index, f"{row_at}[0]", 0, int(LATEST_DOCUMENT_TIME // seconds))
            _check_window(state, f"{row_at}[1]")
            expect_int(late, f"{row_at}[2]")
    for name, n in expect_object(windows["counters"], f"{where}.counters").items():
        expect_int(n, f"{where}.counters.{name}")


def _check_join(value: Any, where: str) -> None:
    """The LabelJoin: predictions waiting for their label, labels waiting for their prediction."""
    join = expect_object(value, where, ("waiting", "expired", "evicted"))
    expect_int(join["expired"], f"{where}.expired")
    expect_int(join["evicted"], f"{where}.evicted")
    for at, (rid, kt, start, _, when) in _rows(join["waiting"], f"{where}.waiting", 5):
        expect_str(rid, f"{at}[0]")
        _kt(kt, f"{at}[1]")
        _time(start, f"{at}[2]")
        _time(when, f"{at}[4]")
    for at, (rid, _, kt, when) in _rows(join.get("early", []), f"{where}.early", 4):
        expect_str(rid, f"{at}[0]")
        if kt is not None:
            _kt(kt, f"{at}[2]")
        _time(when, f"{at}[3]")


def _frontier(value: Any, where: str) -> None:
    expect_int(value, where, -SHAPE_LIMIT)


# The lists of rows [model key, ...] and how each further column is checked.
_KEYED: dict[str, tuple[Callable[[Any, str], Any], ...]] = {
    "corrections": (_time, _check_labels), "correction_numbers": (_time, expect_int), "watermarks": (_time,),
    "frontier": (_frontier,), "alerts.firing": (expect_str,),
    "alerts.baseline": (lambda v, w: expect_number(v, w, 0.0, 1.0),)}


def check_state(state: dict[str, Any]) -> None:
    """Raise ValueError naming the first value of ``state`` (a parsed state.json of
    this version) that is not what ``_snapshot`` writes. Collectors are checked as
    they are restored (``reference.Collector.from_state``)."""
    expect_object(state, "state", ("journal", "windows", "collectors", "previous", "labels", "corrections",
                          "correction_numbers", "watermarks", "frontier", "max_time", "alerts", "covered",
                          "outbox", "counters"))
    expect_int(state["journal"], "journal", 0, 10 ** 18 - 1)  # (journal names have at most 18 digits)
    _check_windows(state["windows"], "windows")
    expect_object(state["collectors"], "collectors")
    for at, (kt, part, counts) in _rows(state["previous"], "previous", 3):
        _kt(kt, f"{at}[0]")
        if not expect_str(part, f"{at}[1]").startswith(("feature:", "prediction:")):
            shape_error(f"{at}[1]", "feature:NAME or prediction:prediction", part)
        expect_ints(counts, f"{at}[2]")
    _check_join(state["labels"], "labels")
    alerts = expect_object(state["alerts"], "alerts", ("firing", "baseline"))
    for name, checks in _KEYED.items():
        rows = alerts[name[7:]] if name.startswith("alerts.") else state[name]
        for at, (kt, *columns) in _rows(rows, name, 1 + len(checks)):
            _kt(kt, f"{at}[0]")
            for number, (check, value) in enumerate(zip(checks, columns), 1):
                check(value, f"{at}[{number}]")
    if state["max_time"] is not None:
        _time(state["max_time"], "max_time")
    for key, offsets in expect_object(state["covered"], "covered").items():
        expect_ints(offsets, f"covered[{key!r}]")
    for at, (doc_id, data) in _rows(state["outbox"], "outbox", 2):
        expect_str(doc_id, f"{at}[0]")
        try:
            document = orjson.loads(expect_str(data, f"{at}[1]"))
        except orjson.JSONDecodeError:
            document = None
        if document.__class__ is not dict:
            shape_error(f"{at}[1]", "a JSON document", data)
    for name, n in expect_object(state["counters"], "counters").items():
        expect_int(n, f"counters.{name}")
