"""The health engine: events in, window/drift/correction/alert documents out, exact across crashes.

Where it sits in the delivery path (one deterministic point): the batcher
registers each event for acknowledgement as it dispatches it, in the order
the queue holds them, which is each file's read order. ``ObservedAcks``
hands every event to ``HealthEngine.observe`` at that moment, BEFORE the
event can be sent, acknowledged, committed, or freed from the spool.

Exactness (issue 10, must 7). ``observe`` appends what it extracted to a
journal (one ``write`` per batch, ``<state_dir>/health/journal-<gen>.log``)
before it updates the in-memory state. The main thread checkpoints every
second (``checkpoint``): the whole state, serialised under the lock, written
atomically to ``state.json``, which names the journal generation that
follows it; older journals are then deleted. After a SIGKILL the engine
loads ``state.json`` and replays the journals after it, so it holds exactly
what it had fed. Every event it fed is remembered by (file key, offset) —
``covered`` — so an event sent again after the restart (still in the spool,
or re-read from the committed offset) is not counted twice; an event never
journaled was never sent, so it is still in the spool or after the committed
offset, and is fed after the restart. ``covered`` is pruned below the
registry offsets read just before the registry was saved, ``PRUNE_DELAY``
checkpoints earlier (those lines are never read again, and by then the spool
has written its acks for them: it writes an ack block right after the
registry commit), and not at all after a start until the records the spool
recovered have been handed out again (``hold_pruning``): a SIGKILL between a
commit and its ack block makes the spool re-deliver committed records. An
event fed again (re-delivered by the spool, or re-read) is pinned: it stays
in ``covered``, whatever the offsets, until ``PRUNE_DELAY`` checkpoints after
the output acknowledged it (``ObservedAcks`` calls ``acknowledged``). The
registry committed past it before it came back, so the offsets say nothing of
this delivery: until the spool writes its ack block, a kill makes the spool
hand it out once more, however long the output took (an output slow to
acknowledge a re-delivered record, then a kill, counted it twice).
Window closing is by event-time watermark
(``agent.health.windows``), so the documents do not depend on timing; the
documents themselves are kept in the checkpoint (the outbox) until the
output acknowledged them, and carry deterministic ids, so a window sent
twice is a 409, never a double count.

Limits of exactness, stated: (1) the journal is not fsynced: a power loss
(not a process kill) may lose the last second of health state, and a line it
damaged is skipped at the restart, counted in ``journal_damaged`` and logged; (2) when
several files feed the same model, how their lines interleave depends on
timing, so which events are late (beyond ``lateness``) and how label
corrections are split may differ between runs (the sums do not);
(3) idle closes (a model silent for window + lateness of wall time) depend
on timing by nature; (4) events whose journal line cannot be written (a full
disk, a read-only state directory) are left out, counted in ``unrecorded``
and logged: applied without it, a kill and a re-delivery would count them
twice, and stopping the batcher for them would stop shipping. Without the spool (``--no-spool``) the same mechanism
holds: what was sent but not committed is read again and skipped by
``covered``; events dropped by ``--when-full drop-newest`` or sampled out
never reach health.

The engine's two other halves: its state on disk (``agent.health.checkpoint``)
and closing windows into documents and sending them (``agent.health.shipping``).

Bounded: models (``caps.models``, by ``Windows``), features per model,
categories per feature, waiting predictions (``caps.pending_labels``);
a cap reached is counted and logged once.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from typing import Any, Callable, Iterable, Sequence

import orjson

from agent.acks import AckTracker
from agent.atomic import remove_stale_temps
from agent.clock import SYSTEM_CLOCK, Clock
from agent.errors import StateError
from agent.events import Event
from agent.health import documents, intake, reference
from agent.health.alerts import AlertBook
from agent.health.checkpoint import PRUNE_DELAY, Persisted
from agent.health.config import FieldPaths, HealthSettings
from agent.health.extract import MISSING, Observation, extractor
from agent.health.labels import LabelJoin
from agent.health.shipping import Shipping
from agent.health.state import (LABELS_CAPPED, LABELS_CAPPED_MESSAGE, NOT_IN_REFERENCE, NOT_IN_REFERENCE_MESSAGE,
                                LabelState, WindowState, not_in_reference)
from agent.health.windows import ModelKey, Windows
from agent.selflog import get_logger
from agent.sources.discovery import Discovery

log = get_logger("health")
_QUALITY_MESSAGE = "health: a model input did not fit its reference (counted in model.quality.*)"
_RAISED_MESSAGES = {
    "bad_latency": "health: a latency that is not a finite number of at least 0 (NaN, infinite, negative, "
                   "text); counted in model.health.bad_latency, left out of the percentiles",
    "no_prediction": "health: a request without a prediction; counted in model.health.no_prediction",
    NOT_IN_REFERENCE: NOT_IN_REFERENCE_MESSAGE,
}
_floor = math.floor
_ROOM_WAIT = 0.5  # seconds between looks at the outbox while observe waits for room



class ObservedAcks(AckTracker):
    """The ack tracker that shows every registered event to health first, and
    every acknowledgement after (health keeps a re-delivered event's offset
    until the spool has written its ack: see ``HealthEngine.acknowledged``)."""

    def __init__(self, commit: Callable[[str, int], None], observe: Callable[[Sequence[Event]], None],
                 acknowledged: Callable[[Sequence[Event]], None] | None = None) -> None:
        super().__init__(commit)
        self._observe = observe
        self._acknowledged = acknowledged

    def register(self, events: Any) -> None:
        events = list(events)
        self._observe(events)
        super().register(events)

    def acknowledge(self, events: Any) -> None:
        events = list(events)
        super().acknowledge(events)
        if self._acknowledged is not None:
            self._acknowledged(events)


class HealthEngine(Persisted, Shipping):
    def __init__(self, settings: HealthSettings, state_dir: str, target: str | None, agent: dict[str, Any],
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.directory = os.path.join(state_dir, "health")
        self._target = target
        self._agent = agent
        self._clock = clock
        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)
        self._shipping = False
        self._output_up = True
        self._window = int(settings.window)
        self._w = self._window
        self._lateness = settings.lateness
        self._inputs = [(Discovery(globs), paths) for globs, paths in settings.per_input]
        self._paths_by_source: dict[str, FieldPaths] = {}
        self._extractors: dict[str, Callable[[Any], Observation | None]] = {}
        self._prefilter = self._prefilter_of(settings)
        self._logged: set[str] = set()
        self._file_reference = None
        if settings.reference not in (None, "previous"):
            self._file_reference = reference.from_file(settings.reference, settings.caps.features,
                                                       settings.caps.categories, settings.caps.reference_values)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as error:
            raise StateError(f"cannot create {self.directory}: {error.strerror}") from error
        # Left by a kill mid-checkpoint (not the reset marker's: the CLI writes that one).
        remove_stale_temps(self.directory, (".state.", ".reference."))
        self._fresh()
        self._load()
        self._commit_history: deque[dict[str, int]] = deque(maxlen=PRUNE_DELAY + 1)
        self._hold = 0  # events still to be registered before ``covered`` may be pruned
        # Events fed again (re-delivered by the spool, or re-read): file key ->
        # offset -> the number of checkpoints taken when the output acknowledged
        # them (None while in flight). Not pruned from ``covered`` before
        # PRUNE_DELAY checkpoints after that acknowledgement (see ``acknowledged``).
        self._pinned: dict[str, dict[int, int | None]] = {}
        self._checkpoints = 0
        self._journal_failing_since: float | None = None
        self._journal_failure_logged = 0.0
        self._left_out = 0  # events left out of health since the journal last failed

    def hold_pruning(self, recovered: int) -> None:
        """The spool recovered ``recovered`` records: they are handed out first,
        and some may be records the registry committed whose ack block the kill
        beat. Until that many events are registered, nothing is pruned."""
        with self._lock:
            self._hold = recovered

    # -- state ----------------------------------------------------------------------

    def _fresh(self) -> None:
        caps = self.settings.caps
        self.windows = Windows(self._window, self._lateness, new_state=self._new_window, max_models=caps.models,
                               clock=self._clock)
        self._references: dict[str, reference.ModelReference] = {}
        self._collectors: dict[str, reference.Collector] = {}
        self._previous: dict[tuple[tuple[str, ...], str], list[int]] = {}
        self._join = LabelJoin(self.settings.label_ttl, caps.pending_labels)
        self._corrections: dict[tuple[tuple[str, ...], float], LabelState] = {}
        self._correction_numbers: dict[tuple[tuple[str, ...], float], int] = {}
        self._watermarks: dict[tuple[str, ...], float] = {}
        self._frontier: dict[tuple[str, ...], int] = {}
        self._max_time = -math.inf
        self._alerts = AlertBook()
        self._covered: dict[str, set[int]] = {}
        self._interned: dict[tuple[str, ...], tuple[tuple[str, ...], ModelKey, str]] = {}
        self._outbox: dict[str, bytes] = {}
        # Requests _apply set aside for _count_batch, in groups of one window state and
        # one reference: (window state, reference, model name, observations), and each
        # window's current group. Empty outside observe/replay.
        self._groups: list[tuple[WindowState, Any, str, list[Observation]]] = []
        self._batch: dict[WindowState, tuple[WindowState, Any, str, list[Observation]]] = {}
        self.counters = {"observed": 0, "unmatched_labels": 0, "features_capped": 0, "windows": 0,
                         "documents": 0}
        self._held = 0  # values the collectors hold (caps.reference_values)
        self._journal_gen = 0
        self._journal_fd: int | None = None
        self._references_dirty = False
        self._dirty = True

    def _new_window(self) -> WindowState:
        return WindowState(self.settings.caps.categories)

    # -- feeding --------------------------------------------------------------------

    @staticmethod
    def _prefilter_of(settings: HealthSettings) -> tuple[bytes, ...]:
        heads = {settings.fields.model[0]}
        if settings.fields.label:
            heads.add(settings.fields.label[0])
        heads.add("extra")
        for _, paths in settings.per_input:
            heads.add(paths.model[0])
            if paths.label:
                heads.add(paths.label[0])
        # The model's head first: a model event then matches at the first search
        # (each miss scans the whole document).
        first = settings.fields.model[0]
        return tuple(orjson.dumps(h) for h in sorted(heads, key=lambda h: (h != first, h)))

    def _paths(self, source_key: str, doc: dict[str, Any]) -> FieldPaths:
        paths = self._paths_by_source.get(source_key)
        if paths is None:
            paths = self.settings.fields
            log_field = doc.get("log")
            file = log_field.get("file") if isinstance(log_field, dict) else None
            path = file.get("path") if isinstance(file, dict) else None
            if isinstance(path, str):
                paths = next((p for globs, p in self._inputs if globs.matches(path)), paths)
            if len(self._paths_by_source) > 10_000:
                self._paths_by_source.clear()
            self._paths_by_source[source_key] = paths
        return paths

    def _extractor(self, source_key: str, doc: dict[str, Any]) -> Callable[[Any], Observation | None]:
        """The extraction function of the source's field paths (cached per source)."""
        if len(self._extractors) > 10_000:
            self._extractors.clear()
        function = self._extractors[source_key] = extractor(self._paths(source_key, doc))
        return function

    def _cover(self, source_key: str, offset: int) -> bool:
        """Remember (file, offset); False when it was fed before."""
        offsets = self._covered.get(source_key)
        if offsets is None:
            offsets = self._covered[source_key] = set()
        elif offset in offsets:
            return False
        offsets.add(offset)
        return True

    def observe(self, events: Sequence[Event]) -> None:
        """Feed events about to be sent (the batcher's thread, in queue order)."""
        if self._hold > 0:
            with self._lock:
                self._hold -= len(events)
        found, found_obs = intake.select(events, self._prefilter, self._extractors, self._extractor)
        if not found:
            return
        with self._lock:
            fresh, fresh_obs = intake.cover(self._covered, self._pinned, found, found_obs)
            if not fresh:
                return
            if not self._journal(fresh):
                # Left out of health (counted, logged): applied without a journal
                # line, a kill would make a re-delivery count them twice. Not
                # covered either, so that one sent again is counted then.
                for event in fresh:
                    self._covered[event.source_key].discard(event.offset)
                return
            try:
                self._apply(fresh_obs)
            finally:  # what was applied is counted before the lock goes, whatever happens
                self._count_batch()
            self._dirty = True
            cap = self.settings.caps.outbox
            while len(self._outbox) > cap and self._shipping and self._output_up:
                self._room.wait(_ROOM_WAIT)  # (releases the lock: the shipper sends meanwhile)

    def acknowledged(self, events: Sequence[Event]) -> None:
        """The output acknowledged ``events`` (an output thread; the spool
        writes their ack block right after). A pinned (re-delivered) event may
        leave ``covered`` PRUNE_DELAY checkpoints from now, as an event
        committed by the registry now may: before that, a kill may beat its ack
        block and the spool hands it out once more."""
        if not self._pinned:
            return
        with self._lock:
            for event in events:
                pins = self._pinned.get(event.source_key)
                if pins is not None and event.offset in pins:
                    pins[event.offset] = self._checkpoints

    def _once(self, what: str, message: str, **fields: Any) -> None:
        if what not in self._logged:
            self._logged.add(what)
            log.warning(message, **fields)

    def _reference_for(self, mid: str) -> reference.ModelReference | None:
        if self._file_reference is not None:
            return self._file_reference
        return self._references.get(mid)

    def _apply(self, observations: Iterable[Observation]) -> None:
        """Apply each observation in turn: its window (or its label's), the label join,
        the reference it helps collect; the window's counting is set aside for
        ``_count_batch``. (One call per batch: what it reads of ``self`` is bound once.)"""
        counters = self.counters
        join = self._join
        interned = self._interned
        windows = self.windows
        observe = windows.observe
        file_reference = self._file_reference
        references = self._references
        batch = self._batch
        groups = self._groups
        w = self._w
        late, bad_time = windows.late, windows.bad_time
        early_labels = join.early
        for obs in observations:
            when, obs_key, request_id, _, _, prediction, _, label, _, _ = obs
            counters["observed"] += 1
            if when > self._max_time:
                self._max_time = when
                join.expire(when)
                if join.given_up:
                    self._give_up_labels()
            if label is not MISSING and prediction is MISSING and request_id is not None:
                self._label(obs)
                continue
            if not obs_key[0]:
                if prediction is not MISSING:  # a request no window can take: said, not silent (audit 9)
                    counters["no_model"] = counters.get("no_model", 0) + 1
                    self._once("no_model", "health: a prediction without a usable model name (no model field, or "
                               "one that is not a text or a number); counted in the health state's no_model, "
                               "in no window: name the model's field with health.fields.model")
                continue
            kt, key, mid = interned.get(obs_key) or self._intern(obs_key)
            ref = file_reference if file_reference is not None else references.get(mid)
            over_cap = windows.over_cap
            state = observe(key, when)
            if windows.over_cap != over_cap:
                self._once("models", "health: too many models; events of new models are not counted",
                           cap=self.settings.caps.models)
            self._advance(kt, when)
            if state is not None:
                # Counted by _count_batch, per window and reference, before the lock is released.
                group = batch.get(state)
                if group is None or group[1] is not ref:  # (a new group when the reference completed)
                    group = batch[state] = (state, ref, key.model, [])
                    groups.append(group)
                group[3].append(obs)
                if request_id is not None and prediction is not MISSING:
                    if label is not MISSING:
                        if state.labels.add(label, prediction) == LABELS_CAPPED:
                            self._labels_capped()
                    elif early_labels and (early := join.take_label(request_id)) is not None:
                        # (its label came first: another file read first)
                        if state.labels.add(early[1], prediction) == LABELS_CAPPED:
                            self._labels_capped()
                    elif not join.wait(request_id, kt, _floor(when / w) * w, prediction, when):
                        self._once("labels", "health: too many predictions wait for a label; the oldest "
                                   "are forgotten", cap=self.settings.caps.pending_labels)
            if ref is None and file_reference is None:
                self._collect(obs, key, mid)
        if windows.late != late:
            self._once("late", "health: an event came after its window was closed (more than health.lateness after "
                       "its model's latest event); counted in model.health.late of the current window",
                       lateness=self._lateness)
        if windows.bad_time != bad_time:
            self._once("bad_time", "health: an event time outside 1970 to 9999, or not a time; the event is counted "
                       "in the health state's bad_time, in no window")

    def _collect(self, obs: Observation, key: ModelKey, mid: str) -> None:
        """Add the observation to its model's reference while the reference is collected."""
        collector = self._collectors.get(mid)
        if collector is None:
            collector = self._collectors[mid] = reference.Collector(self.settings.reference_size)
        before = collector.held
        complete = collector.add(obs.features, obs.prediction, self.settings.caps.features)
        self._held += collector.held - before
        if not complete and self._held >= self.settings.caps.reference_values:
            complete = True
            self._once("reference_values", "health: the values held to build references reached "
                       "caps.reference_values; a reference is made from fewer events",
                       cap=self.settings.caps.reference_values, model=key.model, events=collector.seen)
        if complete:
            self._held -= collector.held
            self._references[mid] = reference.freeze(collector.features, collector.predictions,
                                                     self.settings.caps.categories)
            del self._collectors[mid]
            self._references_dirty = True
            log.info("health: reference complete", model=key.model, events=collector.seen,
                     features=len(self._references[mid].features))

    def _intern(self, kt: tuple[str, ...]) -> tuple[tuple[str, ...], ModelKey, str]:
        """One (key tuple, ModelKey, model id) per model key: the waiting predictions
        share the tuple instead of holding four strings each, and no event builds a
        ModelKey (bounded by caps.models, then cleared)."""
        if len(self._interned) >= 4 * self.settings.caps.models:
            self._interned.clear()
        known = self._interned[kt] = (kt, ModelKey(kt[0], kt[1] or None, kt[2] or None, kt[3] or None),
                                      reference.model_id(kt))
        return known

    def _count_batch(self) -> None:
        """Count what ``_apply`` set aside: each window's requests of the batch
        in one step (``WindowState.add_many``: the figures ``add`` of each in
        turn gives). Nothing reads a window's counts before this: closing and
        checkpoints take the lock ``observe`` holds."""
        groups, self._groups = self._groups, []
        self._batch.clear()
        max_features = self.settings.caps.features
        for state, ref, model, observations in groups:
            raised = state.add_many(observations, ref.features if ref else None, ref.prediction if ref else None,
                                    max_features)
            for raised_kind in raised:
                if raised_kind not in self._logged:
                    named: dict[str, str] = {}
                    if raised_kind == NOT_IN_REFERENCE:  # (raised only with a reference)
                        names = not_in_reference(observations, ref.features)
                        named = {"features": ",".join(names[:10]) + (",..." if len(names) > 10 else "")}
                    self._once(raised_kind, _RAISED_MESSAGES.get(raised_kind, _QUALITY_MESSAGE), kind=raised_kind,
                               model=model, **named)

    def _advance(self, kt: tuple[str, ...], when: float) -> None:
        """The model's watermark, as ``Windows`` keeps it; a window becoming due
        is the (deterministic) moment its pending corrections are written."""
        old = self._watermarks.get(kt)
        if math.isfinite(when) and (old is None or when > old):
            self._watermarks[kt] = when
            # _due_below(when) > _due_below(old), inlined: this runs for every event.
            if old is not None and math.floor((when - self._lateness) / self._w) > \
                    math.floor((old - self._lateness) / self._w):
                self._flush_corrections(kt)

    def _due_below(self, watermark: float) -> int:
        return math.floor((watermark - self._lateness) / self._w)

    def _accepting(self, kt: tuple[str, ...], start: float) -> bool:
        wm = self._watermarks.get(kt)
        if wm is None:
            return False
        index = math.floor(start / self._w)
        return index >= max(self._due_below(wm), self._frontier.get(kt, -1 << 62))

    def _label(self, obs: Observation) -> None:
        waiting = self._join.take(obs.request_id)  # type: ignore[arg-type]
        if waiting is None:
            # Its prediction may still come (read from another file later): the label waits.
            kt = None
            if obs.key[0]:  # a label record that names its model moves that model's windows, as any event
                kt, key, _ = self._interned.get(obs.key) or self._intern(obs.key)
                self.windows.observe(key, obs.time)
                self._advance(kt, obs.time)
            self._join.hold(obs.request_id, obs.label, kt, obs.time)  # type: ignore[arg-type]
            if self._join.given_up:  # (the cap pushed the oldest waiting label out)
                self._give_up_labels()
            return
        kt = waiting.key
        if self._accepting(kt, waiting.start):
            state = self.windows.observe((self._interned.get(kt) or self._intern(kt))[1], waiting.start)
            if state is not None:
                if state.labels.add(obs.label, waiting.prediction) == LABELS_CAPPED:
                    self._labels_capped()
                return
        correction = self._corrections.get((kt, waiting.start))
        if correction is None:
            correction = self._corrections[(kt, waiting.start)] = LabelState(self.settings.caps.categories)
        if correction.add(obs.label, waiting.prediction) == LABELS_CAPPED:
            self._labels_capped()

    def _labels_capped(self) -> None:
        self._once(LABELS_CAPPED, LABELS_CAPPED_MESSAGE, cap=self.settings.caps.categories)

    def _give_up_labels(self) -> None:
        """Labels that waited for their prediction past ``label_ttl`` (or the cap):
        counted as unmatched, in the current window of the model they name."""
        for request_id, _, kt, _ in self._join.drain_given_up():
            self.counters["unmatched_labels"] += 1
            if kt is not None:
                key = (self._interned.get(kt) or self._intern(kt))[1]
                watermark = self.windows.watermark(key)
                state = None if watermark is None else self.windows.open_state(key, watermark)
                if state is not None:
                    state.unmatched_labels += 1
            self._once("unmatched", "health: a label found no prediction with its request id within label_ttl "
                       "(never seen, expired or forgotten); counted as unmatched", request_id=request_id)

    def _flush_corrections(self, kt: tuple[str, ...] | None) -> None:
        for (key, start) in [k for k in self._corrections if kt is None or k[0] == kt]:
            labels = self._corrections.pop((key, start))
            number = self._correction_numbers.get((key, start), 0) + 1
            self._correction_numbers[(key, start)] = number
            mk = ModelKey(key[0], key[1] or None, key[2] or None, key[3] or None)
            self._put(*documents.correction_document(mk, start, self._window, labels, number, self._agent))
        # Correction numbers are needed while a label may still come for the window.
        horizon = self._max_time - self.settings.label_ttl - 2 * (self._w + self._lateness)
        for stale in [k for k in self._correction_numbers if k[1] < horizon]:
            del self._correction_numbers[stale]

    def _put(self, doc_id: str, doc: dict[str, Any]) -> None:
        self._outbox[doc_id] = documents.serialise(doc)
        self.counters["documents"] += 1
        self._dirty = True
        if len(self._outbox) > self.settings.caps.outbox and not (self._shipping and self._output_up):
            # The output is down (or nothing sends): the oldest documents go first. While
            # the shipper sends, observe waits for room instead (a backlog, not an outage).
            del self._outbox[next(iter(self._outbox))]
            self.counters["documents_dropped"] = self.counters.get("documents_dropped", 0) + 1
            self._once("outbox", "health: too many documents wait for the output; the oldest are dropped",
                       cap=self.settings.caps.outbox)
