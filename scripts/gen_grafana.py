"""Write packaging/grafana/modelscribe.json, the Grafana dashboard, from one definition.

    python3 scripts/gen_grafana.py            # (re)write the dashboard
    python3 scripts/gen_grafana.py --check    # exit 1 if the checked-in file is out of date

Every metric name in an expression goes through ``metric()``, which looks it
up in ``agent.metrics.METRICS`` (or the few process metrics that
prometheus-client's ProcessCollector adds): a renamed or removed metric
fails this script, and the test that runs it, not a user's dashboard. The
output depends on this file and the catalogue only, so the same definition
always renders the same bytes. Every expression is run against a real
Prometheus scraping the agent in tests/e2e/test_prometheus.py.

The dashboard takes the Prometheus data source as a variable (``datasource``)
and the agents to show as another (``instance``, from ``modelscribe_build_info``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from agent.metrics import METRICS  # noqa: E402

DASHBOARD = ROOT / "packaging" / "grafana" / "modelscribe.json"
COMMAND = "python3 scripts/gen_grafana.py"
# Added to /metrics by prometheus-client's ProcessCollector (agent.metrics.MetricsServer).
PROCESS_METRICS = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds")
_SUFFIXES = ("_bucket", "_sum", "_count")

SEL = '{instance=~"$instance"}'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def metric(name: str) -> str:
    """``name`` if /metrics exports it (a histogram's ``_bucket``/``_sum``/``_count`` too), else KeyError."""
    base = next((name[:-len(s)] for s in _SUFFIXES if name.endswith(s) and name[:-len(s)] in METRICS), name)
    if base not in METRICS and base not in PROCESS_METRICS:
        raise KeyError(f"{name}: not a metric of agent/metrics.py (renamed? update {__file__})")
    return name


def rate(name: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric(name)}{SEL}[$__rate_interval]))"


def gauge(name: str, by: str = "", how: str = "sum") -> str:
    grouping = f" by ({by})" if by else ""
    return f"{how}{grouping} ({metric(name)}{SEL})"


def quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({metric(histogram + '_bucket')}{SEL}[$__rate_interval])))"


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # or stat
    width: int = 12
    height: int = 8
    extra: dict = field(default_factory=dict)  # fieldConfig.defaults additions (stat thresholds, mappings)


def _red_above(limit: float) -> dict:
    return {"thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                           {"color": "red", "value": limit}]}}


# The dashboard, top to bottom; each list is one row of panels (widths add up to 24).
ROWS: tuple[tuple[Panel, ...], ...] = (
    (
        Panel("Health", "1 while /health answers 200; 0 when the output is blocked longer than "
              "--health-blocked-after or a stage died.", ((gauge("modelscribe_healthy", how="min"), "healthy"),),
              kind="stat", width=4, height=4,
              extra={"mappings": [{"type": "value", "options": {"1": {"text": "OK", "color": "green"},
                                                                "0": {"text": "UNHEALTHY", "color": "red"}}}],
                     "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                                  {"color": "green", "value": 1}]}}),
        Panel("Stage deaths", "Stages that died (the agent stops and exits 1; systemd restarts it).",
              ((gauge("modelscribe_stage_deaths_total"), "deaths"),), kind="stat", width=4, height=4,
              extra=_red_above(1)),
        Panel("Since last acknowledgement", "Seconds since the output last settled events.",
              ((f"time() - {gauge('modelscribe_last_acknowledgement_timestamp_seconds', how='max')}", "age"),),
              unit="s", kind="stat", width=4, height=4, extra=_red_above(60)),
        Panel("Spool use", "Share of --spool-max-bytes in use (disk spool).",
              ((f"{gauge('modelscribe_spool_used_bytes')} / {gauge('modelscribe_spool_max_bytes')}", "used"),),
              unit="percentunit", kind="stat", width=4, height=4, extra=_red_above(0.8)),
        Panel("Open files", "Files the tailer holds open.", ((gauge("modelscribe_open_files"), "open"),),
              kind="stat", width=4, height=4),
        Panel("In flight", "Events sent or being sent, not yet acknowledged.",
              ((gauge("modelscribe_in_flight_events"), "events"),), kind="stat", width=4, height=4),
    ),
    (
        Panel("Throughput", "Lines read, events parsed and handed to the queue, events acknowledged.",
              ((rate("modelscribe_read_lines_total"), "lines read"),
               (rate("modelscribe_emitted_events_total"), "events emitted"),
               (rate("modelscribe_acknowledged_events_total"), "acknowledged")), unit="ops"),
        Panel("Bytes", "Document bytes handed to the queue and sent in bulk requests (re-sends included).",
              ((rate("modelscribe_emitted_bytes_total"), "emitted"),
               (rate("modelscribe_sent_bytes_total"), "sent")), unit="Bps"),
    ),
    (
        Panel("Acknowledgements", "Events sent (re-sends included), stored, and already stored (409).",
              ((rate("modelscribe_sent_events_total"), "sent"),
               (rate("modelscribe_acknowledged_events_total"), "stored"),
               (rate("modelscribe_duplicate_events_total"), "duplicates")), unit="ops"),
        Panel("Rejects and losses", "Dead letters (rejected or given up), given up after --max-retries, "
              "dropped (--when-full drop-newest), failed batches.",
              ((rate("modelscribe_rejected_events_total"), "dead-lettered"),
               (rate("modelscribe_given_up_events_total"), "given up"),
               (rate("modelscribe_dropped_events_total"), "dropped"),
               (rate("modelscribe_failed_batches_total"), "failed batches")), unit="ops"),
    ),
    (
        Panel("Retries by reason", "Bulk requests that left events to retry, by reason.",
              ((rate("modelscribe_retried_requests_total", by="reason"), "{{reason}}"),
               (rate("modelscribe_retried_events_total"), "events retried")), unit="ops"),
        Panel("Bulk request latency", "p50 and p99 of the bulk requests' duration, failed ones included.",
              ((quantile(0.5, "modelscribe_bulk_request_duration_seconds"), "p50"),
               (quantile(0.99, "modelscribe_bulk_request_duration_seconds"), "p99")), unit="s"),
    ),
    (
        Panel("Spool", "Bytes the spool holds and its limit.",
              ((gauge("modelscribe_spool_used_bytes"), "used"), (gauge("modelscribe_spool_max_bytes"), "max")),
              unit="bytes", width=8),
        Panel("Waiting events", "Events queued and not yet acknowledged, and the age of the oldest.",
              ((gauge("modelscribe_spool_records"), "events"),
               (gauge("modelscribe_spool_oldest_unacked_age_seconds", how="max"), "oldest (s)")), width=8),
        Panel("File lag", "Bytes not yet acknowledged per file: the 10 largest (the agent exports 50 "
              "and sums the rest as path=\"other\").",
              ((f"topk(10, {gauge('modelscribe_file_lag_bytes', by='path', how='max')})", "{{path}}"),),
              unit="bytes", width=8),
    ),
    (
        Panel("Stage deaths and caught errors", "Stage deaths by stage; errors a stage logged and survived.",
              ((gauge("modelscribe_stage_deaths_total", by="stage", how="max"), "died: {{stage}}"),
               (gauge("modelscribe_caught_errors_total", by="kind", how="max"), "caught: {{kind}}"),
               (f"{metric('modelscribe_lost_bytes_total')}{SEL}", "lost bytes {{instance}}")), width=8),
        Panel("Bulk requests", "Bulk requests per second (one latency observation each).",
              ((rate("modelscribe_bulk_request_duration_seconds_count"), "requests"),), unit="reqps", width=8),
        Panel("Agent process", "CPU seconds per second and resident memory of the agent.",
              ((f"rate({metric('process_cpu_seconds_total')}{SEL}[$__rate_interval])", "cpu {{instance}}"),
               (f"{metric('process_resident_memory_bytes')}{SEL} / 1e6", "rss MB {{instance}}")), width=8),
    ),
)


def _panel(panel: Panel, number: int, x: int, y: int) -> dict:
    body = {
        "id": number,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit, **panel.extra}, "overrides": []},
        "targets": [{"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
                    for i, (expr, legend) in enumerate(panel.targets)],
    }
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "colorMode": "background", "graphMode": "none", "textMode": "auto"}
    else:
        body["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                           "tooltip": {"mode": "multi", "sort": "none"}}
    return body


def build() -> dict:
    panels, y, number = [], 0, 1
    for row in ROWS:
        assert sum(panel.width for panel in row) == 24, [panel.title for panel in row]
        x = 0
        for panel in row:
            panels.append(_panel(panel, number, x, y))
            x, number = x + panel.width, number + 1
        y += max(panel.height for panel in row)
    instances = f"label_values({metric('modelscribe_build_info')}, instance)"
    return {
        "title": "modelscribe",
        "uid": "modelscribe",
        "description": f"The modelscribe log shipping agent (its /metrics). Generated by `{COMMAND}`: edit "
                       "that script, not this file.",
        "tags": ["modelscribe", "logs"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "options": []},
            {"name": "instance", "label": "Agent", "type": "query", "datasource": DATASOURCE,
             "definition": instances, "query": {"query": instances, "refId": "instances"},
             "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "hide": 0, "refresh": 2,
             "sort": 1, "options": []},
        ]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in dashboard is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = DASHBOARD.read_text(encoding="utf-8") if DASHBOARD.exists() else ""
        if current != text:
            print(f"{DASHBOARD.relative_to(ROOT)} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    DASHBOARD.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD.write_text(text, encoding="utf-8")
    print(f"wrote {DASHBOARD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
