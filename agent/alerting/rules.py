"""The anomaly rules, defined once; Watcher, Kibana and ElastAlert2 forms derive from here.

Each ``Rule`` says *what* is abnormal in engine-neutral terms: which data
(an index pattern and an ``event.dataset``), which documents count (a
``Match``), how they are grouped (``group_by``), which figure is computed
over a look-back window and how it is compared. The generators
(agent/alerting/watcher.py, kibana_rules.py, elastalert.py) translate that
into each engine's vocabulary; scripts/gen_alerting.py writes the results to
kibana/watchers/, kibana/rules/ and kibana/elastalert/.

Guarantees:

- Every field a rule names is read through ``field()``, which checks it
  against agent.schema (fields.yml). ``check_fields()`` lists the fields a
  rule uses that the schema lacks; the generators call it first, so a
  renamed or removed field stops generation (and its test) instead of
  shipping a rule that silently never fires.
- Rule ids are stable (``modelscribe-<slug>``): they are the Watcher watch
  ids and the Kibana rule ids, so installing again updates in place.
- Rules are frozen dataclasses; the catalogue ``RULES`` is a tuple in a fixed
  order, so generated files are byte-for-byte reproducible.
- Look-backs follow the health window (``for_windows``). A health document's
  ``@timestamp`` is its window's START, and a window is written once event
  time passes start + window + lateness, so the newest document of a model
  that serves without pause is between window + lateness and 2 x window +
  lateness old. A rule over health windows names how many windows
  (``windows``) its look-back must hold at every moment; its look-back is
  the larger of ``lookback_minutes`` (the value for 60-second windows) and
  (windows + 1) x window + lateness + ``SLACK_SECONDS`` (shipping). For the
  default 60 s windows and 30 s lateness every look-back is the constant
  written below, so ``RULES`` (and the checked-in files) are unchanged.
- A figure over label documents is the pooled one where the engine can
  weight (``weight``): sum(accuracy x n) / sum(n) = correct / labelled, the
  late-label corrections included with their own weight. An engine that
  cannot weight leaves out the documents marked ``partial`` (the
  corrections) and averages whole windows (``match_for``): a per-window
  mean of the labels joined in time. docs/alerting.md says which engine
  computes which.

Kinds (what each engine evaluates; docs/alerting.md states where an engine
can only approximate one):

    THRESHOLD  per group, ``metric(field)`` over the look-back compared with
               ``threshold`` (``above`` or ``below``)
    SPIKE      per group, avg(field) over the recent window above
               ``factor`` x its avg over the preceding baseline window, and
               at least ``threshold`` (a floor, so 0 -> 0.001 is no spike)
    COUNT      per group, the number of matching documents (or distinct
               windows, ``distinct``) over the look-back >= ``threshold``
    ABSENT     per group, seen during the baseline window but no document
               in the last ``lookback_minutes``

``title`` and ``description`` may name ``{lookback}``, ``{baseline}`` and
``{window}``: ``for_windows`` writes the spans in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field, replace
from typing import Any

from agent import schema

THRESHOLD, SPIKE, COUNT, ABSENT = "threshold", "spike", "count", "absent"
ABOVE, BELOW = "above", "below"

# Health windows, drift and the agent's own documents share the data streams
# metrics-modelscribe-<namespace> (the metrics-modelscribe index template's
# pattern); every rule tells them apart by event.dataset.
METRICS_INDEX = "metrics-modelscribe-*"
# Where every engine writes what fired (Kibana's index connector, the
# Watcher index action); a plain index, not a data stream, so any licence
# and any engine can write it.
ALERTS_INDEX = "modelscribe-alerts"

TIME_FIELD = "@timestamp"

# The health block's defaults (agent.health.config): the windows the
# constants in RULES were written for.
DEFAULT_WINDOW_SECONDS = 60
DEFAULT_LATENESS_SECONDS = 30.0
# What a look-back allows, beyond window and lateness, for a window to be
# shipped and searchable. 30 s keeps drift-persistent's 5 minutes for 60 s
# windows (4 x 60 + 30 + 30), which the audit found right in practice.
SLACK_SECONDS = 30.0

_USED: list[str] = []


def field(name: str) -> str:
    """`name`, recorded as used by a rule; check_fields() verifies it is in the schema."""
    if name not in _USED:
        _USED.append(name)
    return name


def check_fields() -> list[str]:
    """The fields the rules use that fields.yml does not define (empty when all are there)."""
    return [name for name in _USED if name not in schema.FIELDS]


class RuleFieldError(schema.SchemaError):
    """A rule names a field that fields.yml does not define."""


def require_fields() -> None:
    """Raise RuleFieldError naming every missing field (the generators call this first)."""
    missing = check_fields()
    if missing:
        raise RuleFieldError(
            "agent/alerting/rules.py uses fields that agent/schema/fields.yml does not define: "
            + ", ".join(missing) + " (renamed? update the rule, then run scripts/gen_alerting.py)")


@dataclass(frozen=True)
class Match:
    """Which documents a rule looks at: a conjunction of simple conditions.

    ``terms``: field -> required value; ``ranges``: (field, op, value) with op
    one of gt, gte, lt, lte. Kept this small on purpose: each engine has an
    exact translation of it (a bool filter, a Lucene query string).
    """

    terms: tuple[tuple[str, Any], ...] = ()
    ranges: tuple[tuple[str, str, float], ...] = ()
    absent: tuple[str, ...] = ()  # fields the documents must not have

    def es_query(self) -> dict[str, Any]:
        """The Elasticsearch query (a bool filter, and must_not for ``absent``) for these conditions."""
        filters: list[dict[str, Any]] = [{"term": {name: value}} for name, value in self.terms]
        filters += [{"range": {name: {op: value}}} for name, op, value in self.ranges]
        query: dict[str, Any] = {"bool": {"filter": filters}}
        if self.absent:
            query["bool"]["must_not"] = [{"exists": {"field": name}} for name in self.absent]
        return query


@dataclass(frozen=True)
class Rule:
    """One anomaly rule (see the module docstring for the kinds)."""

    slug: str
    title: str
    description: str
    kind: str
    index: str
    match: Match
    group_by: tuple[str, ...]
    lookback_minutes: int
    threshold: float
    field: str | None = None
    metric: str = "max"  # THRESHOLD: max | min | avg | sum
    direction: str = ABOVE
    factor: float = 1.0  # SPIKE
    baseline_minutes: int = 0  # SPIKE, ABSENT: the window before the look-back
    distinct: str | None = None  # COUNT: count distinct values of this field
    severity: str = "warning"
    every_minutes: int = 1
    tags: tuple[str, ...] = dc_field(default=())
    # THRESHOLD avg: weight each document by this field (a pooled figure).
    weight: str | None = None
    # Documents carrying this field hold the rest of a window counted before
    # (label corrections): left out by engines that cannot weight.
    partial: str | None = None
    # Health windows the look-back must hold at every moment (None: the rule
    # does not read health windows; its look-back is fixed).
    windows: int | None = None

    @property
    def id(self) -> str:
        return "modelscribe-" + self.slug

    def match_for(self, weighted: bool) -> Match:
        """The documents an engine reads: ``match``, less the ``partial`` ones
        when the engine cannot weight by ``weight`` (see the module docstring)."""
        if weighted or self.weight is None or self.partial is None:
            return self.match
        return replace(self.match, absent=(*self.match.absent, self.partial))

    def summary(self) -> dict[str, Any]:
        """Plain data about the rule, written into every generated form (metadata)."""
        return {"rule": self.id, "title": self.title, "kind": self.kind, "severity": self.severity,
                "threshold": self.threshold, "lookback_minutes": self.lookback_minutes}


def _metrics(dataset: str, *more: tuple[str, Any]) -> tuple[tuple[str, Any], ...]:
    # event.kind too: the health stream also carries the agent's own
    # event.kind: alert documents (issue 10, item 9), which are no window.
    return ((field("event.kind"), "metric"), (field("event.dataset"), dataset), *more)


MODEL = field("model.name")

_CATALOGUE: tuple[Rule, ...] = (
    Rule(
        slug="error-rate-spike",
        title="Model error rate spike",
        description="A model's error rate over the last {lookback} is at least 3 times its own "
                    "average over the {baseline} before, and at least 5 %.",
        kind=SPIKE, index=METRICS_INDEX,
        match=Match(terms=_metrics("modelscribe.health")),
        group_by=(MODEL,), field=field("model.health.error_rate"),
        lookback_minutes=10, baseline_minutes=60, factor=3.0, threshold=0.05, windows=1,
        severity="critical", tags=("model", "errors")),
    Rule(
        slug="latency-p95-high",
        title="Model p95 latency over 500 ms",
        description="A health window of the last {lookback} has a p95 latency above 500 ms.",
        kind=THRESHOLD, index=METRICS_INDEX,
        match=Match(terms=_metrics("modelscribe.health")),
        group_by=(MODEL,), field=field("model.health.latency.p95"), metric="max",
        lookback_minutes=10, threshold=500.0, direction=ABOVE, windows=1,
        tags=("model", "latency")),
    Rule(
        slug="drift-persistent",
        title="Feature drift in 3 windows",
        description="A feature of a model crossed its drift threshold (model.drift.alert) in "
                    "at least 3 distinct windows of the last {lookback} (3 windows of {window} "
                    "plus the time a window takes to close and ship).",
        kind=COUNT, index=METRICS_INDEX,
        match=Match(terms=_metrics("modelscribe.drift", (field("model.drift.alert"), True))),
        group_by=(MODEL, field("model.feature.name")), distinct=TIME_FIELD,
        lookback_minutes=5, threshold=3, windows=3,
        tags=("model", "drift")),
    Rule(
        slug="accuracy-drop",
        title="Model accuracy below 0.8",
        description="A model's accuracy over its labelled requests of the last {lookback} is "
                    "below 0.8.",
        kind=THRESHOLD, index=METRICS_INDEX,
        # Windows without labels have no accuracy: only those with one count.
        match=Match(terms=_metrics("modelscribe.health"),
                    ranges=((field("model.accuracy.accuracy"), "gte", 0),)),
        # Pooled: each document weighs its labels (a window of 1,000 labels
        # is not outvoted by a correction carrying one late label).
        group_by=(MODEL,), field="model.accuracy.accuracy", metric="avg",
        weight=field("model.accuracy.n"), partial=field("model.health.correction"),
        lookback_minutes=30, threshold=0.8, direction=BELOW, windows=2,
        tags=("model", "accuracy")),
    Rule(
        slug="model-no-data",
        title="No health data from a model for {lookback}",
        description="A model that sent health windows during the previous {baseline} has sent "
                    "none in the last {lookback}.",
        kind=ABSENT, index=METRICS_INDEX,
        match=Match(terms=_metrics("modelscribe.health")),
        # Two windows: one window late (a slow shipment) is no alert.
        group_by=(MODEL,), lookback_minutes=10, baseline_minutes=24 * 60, threshold=1, windows=2,
        severity="critical", every_minutes=5, tags=("model", "availability")),
    Rule(
        slug="agent-stalled",
        title="Agent stalled",
        description="An agent reports unread data (file lag above 0) and has had no "
                    "acknowledgement for 10 minutes.",
        kind=COUNT, index=METRICS_INDEX,
        match=Match(terms=_metrics("modelscribe.agent"),
                    ranges=((field("modelscribe.agent.file_lag_bytes"), "gt", 0),
                            (field("modelscribe.agent.last_ack_age_seconds"), "gte", 600))),
        group_by=(field("agent.id"),), lookback_minutes=3, threshold=1,
        severity="critical", tags=("agent",)),
    Rule(
        slug="dead-letters-growing",
        title="Agent writes dead letters",
        description="An agent wrote events to its dead letters during the last 10 minutes.",
        kind=THRESHOLD, index=METRICS_INDEX,
        match=Match(terms=_metrics("modelscribe.agent")),
        group_by=(field("agent.id"),), field=field("modelscribe.agent.dead_letters"), metric="sum",
        lookback_minutes=10, threshold=0, direction=ABOVE,
        tags=("agent",)),
)

field("host.name")  # shown in the agent rules' alerts


def span(minutes: int) -> str:
    """``minutes`` in words: "10 minutes", "hour", "24 hours"."""
    if minutes % 60 == 0:
        hours = minutes // 60
        return "hour" if hours == 1 else f"{hours} hours"
    return "minute" if minutes == 1 else f"{minutes} minutes"


def _seconds_text(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def lookback_for(rule: Rule, window_seconds: float, lateness_seconds: float) -> int:
    """The rule's look-back in whole minutes for these health windows (module docstring)."""
    if rule.windows is None:
        return rule.lookback_minutes
    needed = (rule.windows + 1) * window_seconds + lateness_seconds + SLACK_SECONDS
    return max(rule.lookback_minutes, math.ceil(needed / 60))


def _derive(rule: Rule, window_seconds: float, lateness_seconds: float) -> Rule:
    lookback = lookback_for(rule, window_seconds, lateness_seconds)
    baseline = rule.baseline_minutes
    if rule.kind == SPIKE:
        # The baseline keeps its ratio to the recent span (an hour to 10 minutes).
        baseline = math.ceil(rule.baseline_minutes * lookback / rule.lookback_minutes)
    elif rule.kind == ABSENT:
        # "Seen lately" must reach back further than the silence looked for.
        baseline = max(rule.baseline_minutes, 2 * lookback)
    words = {"lookback": span(lookback), "baseline": span(baseline), "window": _seconds_text(window_seconds)}
    return replace(rule, lookback_minutes=lookback, baseline_minutes=baseline,
                   title=rule.title.format(**words), description=rule.description.format(**words))


def for_windows(window_seconds: float = DEFAULT_WINDOW_SECONDS,
                lateness_seconds: float = DEFAULT_LATENESS_SECONDS) -> tuple[Rule, ...]:
    """The catalogue with its look-backs derived from the agents' ``health.window`` and ``lateness``."""
    if window_seconds < 1 or lateness_seconds < 0:
        raise ValueError(f"health window {window_seconds!r} s, lateness {lateness_seconds!r} s: "
                         "the window is at least 1 s and the lateness at least 0")
    return tuple(_derive(rule, window_seconds, lateness_seconds) for rule in _CATALOGUE)


# The rules for the default health block (60 s windows, 30 s lateness): the
# checked-in files of kibana/ and what the commands install without flags.
RULES: tuple[Rule, ...] = for_windows()


def by_slug(slug: str, rules: tuple[Rule, ...] = RULES) -> Rule:
    """The rule named `slug` in `rules` (KeyError otherwise)."""
    for rule in rules:
        if rule.slug == slug:
            return rule
    raise KeyError(slug)
