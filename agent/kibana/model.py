"""What a dashboard panel is, once, for both its Kibana form and its search.

A ``Panel`` names a chart kind, the data view it reads, the metrics it shows,
an optional split (top values of a keyword field) and the documents it keeps
(``Filter``s). From that one definition:

- ``agent.kibana.render`` writes the Lens state Kibana imports;
- ``Panel.search()`` writes the Elasticsearch aggregation that Lens sends
  for it, which the tests run on the real node: a panel whose search returns
  no data on shipped fixtures and seeded windows is a broken panel.

Every field is checked against ``agent/schema/fields.yml`` when the panel is
built (``field()``): a renamed or removed field, or one that cannot be
aggregated (text, a flattened root), raises ``DashboardError`` at import,
so the build fails, not a user's dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from typing import Any

from agent import schema
from agent.errors import ModelscribeError

# field_caps families that Lens can aggregate.
AGGREGATABLE = frozenset({"keyword", "long", "double", "date", "ip", "boolean", "histogram"})
# Operations that read a number (or a histogram, for the percentile).
NUMERIC_OPS = frozenset({"sum", "average", "max", "min", "median", "percentile"})
_ES_OP = {"sum": "sum", "average": "avg", "max": "max", "min": "min"}

LOGS = "logs"
METRICS = "metrics"
DATA_VIEWS = {LOGS: ("modelscribe-logs", "logs-modelscribe-*", "modelscribe logs"),
              METRICS: ("modelscribe-metrics", "metrics-modelscribe-*", "modelscribe metrics")}


class DashboardError(ModelscribeError):
    """A dashboard definition names a field the schema does not have, or cannot aggregate."""


def field(name: str, *, histogram: bool = False) -> str:
    """``name`` if the schema defines it with an aggregatable type; raises otherwise.

    ``model.stats.<key>`` style names are accepted below an object field whose
    ``children`` type is aggregatable."""
    found = schema.FIELDS.get(name)
    if found is None:
        parent, _, _ = name.rpartition(".")
        holder = schema.FIELDS.get(parent)
        if holder is not None and holder.children in AGGREGATABLE:
            return name
        raise DashboardError(f"dashboard field {name!r} is not in agent/schema/fields.yml")
    kind = schema.family(schema.effective_type(found))
    if kind not in AGGREGATABLE or (kind == "keyword" and not found.doc_values):
        raise DashboardError(f"dashboard field {name!r} is {found.type}: Lens cannot aggregate it")
    if histogram != (kind == "histogram"):
        raise DashboardError(f"dashboard field {name!r} is {found.type}, expected "
                             f"{'a histogram' if histogram else 'a plain value'}")
    return name


@dataclass(frozen=True)
class Filter:
    """Documents where ``field`` equals ``value`` (``value`` None: where it exists;
    ``missing``: where it does not)."""

    field: str
    value: str | bool | None = None
    missing: bool = False

    def __post_init__(self) -> None:
        if self.missing and self.value is not None:
            raise DashboardError(f"filter on {self.field}: a missing field has no value")

    def kql(self) -> str:
        if self.missing:
            return f"not {self.field} : *"
        if self.value is None:
            return f"{self.field} : *"
        if isinstance(self.value, bool):
            return f"{self.field} : {str(self.value).lower()}"
        return f'{self.field} : "{self.value}"'

    def query(self) -> dict[str, Any]:
        if self.missing:
            return {"bool": {"must_not": [{"exists": {"field": self.field}}]}}
        if self.value is None:
            return {"exists": {"field": self.field}}
        return {"term": {self.field: self.value}}


@dataclass(frozen=True)
class Metric:
    """One value a panel shows: ``op`` of ``source`` (count needs no source)."""

    op: str
    source: str | None = None
    label: str = ""
    percentile: int | None = None

    def __post_init__(self) -> None:
        if self.op == "count":
            return
        if self.op not in NUMERIC_OPS or self.source is None:
            raise DashboardError(f"unsupported metric {self.op} of {self.source}")
        if self.op == "percentile" and self.percentile is None:
            raise DashboardError(f"a percentile of {self.source} needs its percentile")

    def title(self) -> str:
        if self.label:
            return self.label
        if self.op == "count":
            return "Count of records"
        if self.op == "percentile":
            return f"{self.percentile}th percentile of {self.source}"
        return f"{self.op.capitalize()} of {self.source}"

    def aggregation(self) -> dict[str, Any]:
        if self.op == "count":
            return {"value_count": {"field": "@timestamp"}}
        if self.op in ("percentile", "median"):
            return {"percentiles": {"field": self.source, "percents": [self.percentile or 50]}}
        return {_ES_OP[self.op]: {"field": self.source}}


@dataclass(frozen=True)
class Panel:
    """One Lens chart (``kind``: line, bar, area, metric or table)."""

    title: str
    kind: str
    view: str
    metrics: tuple[Metric, ...]
    split: str | None = None
    over_time: bool = True
    filters: tuple[Filter, ...] = ()
    thresholds: tuple[tuple[str, float], ...] = ()  # reference lines (label, value)
    width: int = 24
    height: int = 12
    top: int = 10

    def __post_init__(self) -> None:
        if self.kind not in ("line", "bar", "area", "metric", "table"):
            raise DashboardError(f"panel {self.title!r}: unknown kind {self.kind}")
        if self.view not in DATA_VIEWS:
            raise DashboardError(f"panel {self.title!r}: unknown data view {self.view}")
        if self.kind == "metric" and (self.split or self.over_time or len(self.metrics) != 1):
            raise DashboardError(f"panel {self.title!r}: a metric panel shows one value, unsplit")

    def kql(self) -> str:
        return " and ".join(f.kql() for f in self.filters)

    def fields(self) -> set[str]:
        names = {m.source for m in self.metrics if m.source} | {f.field for f in self.filters}
        if self.split:
            names.add(self.split)
        return names

    def search(self) -> dict[str, Any]:
        """The aggregation Lens runs for this panel (auto interval fixed to 1 minute)."""
        aggs: dict[str, Any] = {f"m{i}": m.aggregation() for i, m in enumerate(self.metrics)}
        if self.over_time:
            aggs = {"time": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m",
                                                "min_doc_count": 1}, "aggs": aggs}}
        if self.split:
            aggs = {"split": {"terms": {"field": self.split, "size": self.top}, "aggs": aggs}}
        return {"size": 0, "query": {"bool": {"filter": [f.query() for f in self.filters]}}, "aggs": aggs}


@dataclass(frozen=True)
class SavedSearch:
    """A Discover search: columns shown for documents that match the filters."""

    id: str
    title: str
    view: str
    columns: tuple[str, ...]
    filters: tuple[Filter, ...] = ()

    def kql(self) -> str:
        return " and ".join(f.kql() for f in self.filters)


@dataclass(frozen=True)
class Dashboard:
    id: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    searches: tuple[SavedSearch, ...] = ()
    links: tuple[str, ...] = dataclass_field(default=())  # ids of the dashboards it links to
