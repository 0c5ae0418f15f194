"""The dashboards modelscribe ships: the one definition of ``kibana/``.

Five dashboards, linked to each other by a links panel at the top of each:

- *Model overview*: requests, errors and error rate per model and version;
  latency p50/p95/p99 from ``model.health.latency.histogram``, so the
  percentiles are fleet-wide (a percentiles aggregation over many agents'
  histograms), not an average of per-agent percentiles;
- *Errors and tracebacks*: a saved search (``error.type``, ``message``,
  ``error.stack_trace``), top error types, errors by model and by file;
- *Drift and data quality*: PSI and JS distance per feature over time with
  their default alert thresholds as reference lines, quality counts, and
  accuracy, precision and recall from delayed labels (the mean of the window
  documents: the late-label corrections are left out, see docs/alerting.md);
- *LLM serving*: tokens (per request lines and per health window), running
  and waiting requests, throughput, KV cache use and prefix cache hits from
  vLLM's engine statistics. No format the agent reads logs a time to first
  token (vLLM exports it to Prometheus only), so there is no panel for it;
- *Agent*: file lag, spool use, retries and dead letters from the agent's own
  metric documents (``agent.self_metrics``).

Every field goes through ``model.field`` (checked against the schema at
import). ``scripts/gen_kibana.py`` renders them to ``kibana/modelscribe.ndjson``;
a test fails when that file is stale.
"""

from __future__ import annotations

from agent.kibana.model import (LOGS, METRICS, Dashboard, DashboardError, Filter, Metric, Panel, SavedSearch,
                                field)
from agent.parsing.servers.vllm import _PREFIX_CACHE_SIDES, STATS

# Every model.stats key the vllm format writes (a closed list: agent.parsing.servers.vllm).
VLLM_KEYS = frozenset(STATS.values()) | frozenset(_PREFIX_CACHE_SIDES.values())

OVERVIEW = "modelscribe-model-overview"
ERRORS = "modelscribe-errors"
DRIFT = "modelscribe-drift"
LLM = "modelscribe-llm"
AGENT = "modelscribe-agent"
ERRORS_SEARCH = "modelscribe-errors-search"

# The defaults of the drift alert (agent.health): reference lines on the charts.
PSI_THRESHOLD = 0.2
JS_THRESHOLD = 0.1

HEALTH = (Filter(field("event.dataset"), "modelscribe.health"),)
DRIFT_DOCS = (Filter(field("event.dataset"), "modelscribe.drift"),)
SELF = (Filter(field("event.dataset"), "modelscribe.agent"),)
# vLLM's engine statistics are metric events: the agent writes them to the metrics data stream.
VLLM_STATS = (Filter(field("event.kind"), "metric"), Filter(field("gen_ai.system"), "vllm"))
MODEL = field("model.name")
LATENCY = field("model.health.latency.histogram", histogram=True)


def _sum(name: str, label: str) -> Metric:
    return Metric("sum", field(name), label)


def _latency(percentile: int) -> Metric:
    return Metric("percentile", LATENCY, f"p{percentile} latency (ms)", percentile)


def _overview() -> Dashboard:
    return Dashboard(OVERVIEW, "[modelscribe] Model overview",
                     "Requests, errors and latency per model, from the agents' health windows.", (
        Panel("Requests", "metric", METRICS, (_sum("model.health.requests", "Requests"),), over_time=False,
              filters=HEALTH, width=12, height=8),
        Panel("Errors", "metric", METRICS, (_sum("model.health.errors", "Errors"),), over_time=False,
              filters=HEALTH, width=12, height=8),
        Panel("Requests per model", "bar", METRICS, (_sum("model.health.requests", "Requests"),), split=MODEL,
              filters=HEALTH),
        Panel("Errors per model", "bar", METRICS, (_sum("model.health.errors", "Errors"),), split=MODEL,
              filters=HEALTH),
        Panel("Error rate per model (mean of windows)", "line", METRICS,
              (Metric("average", field("model.health.error_rate"), "Error rate"),), split=MODEL, filters=HEALTH),
        Panel("Latency p50 / p95 / p99, all models (fleet-wide)", "line", METRICS,
              (_latency(50), _latency(95), _latency(99)), filters=HEALTH),
        Panel("p95 latency per model", "line", METRICS, (_latency(95),), split=MODEL, filters=HEALTH),
        Panel("Requests per model version", "table", METRICS,
              (_sum("model.health.requests", "Requests"), _sum("model.health.errors", "Errors"), _latency(95)),
              split=field("model.version"), over_time=False, filters=HEALTH),
    ), links=(ERRORS, DRIFT, LLM, AGENT))


def _errors() -> Dashboard:
    errors = (Filter(field("error.type")),)
    search = SavedSearch(ERRORS_SEARCH, "[modelscribe] Errors and tracebacks", LOGS,
                         (field("error.type"), "message", "error.stack_trace", MODEL, field("log.file.path")),
                         errors)
    return Dashboard(ERRORS, "[modelscribe] Errors and tracebacks",
                     "Every logged exception, with its traceback, by type, model and file.", (
        Panel("Errors over time by type", "bar", LOGS, (Metric("count", label="Errors"),),
              split=field("error.type"), filters=errors),
        Panel("Top error types", "table", LOGS, (Metric("count", label="Errors"),), split=field("error.type"),
              over_time=False, filters=errors),
        Panel("Errors by model", "bar", LOGS, (Metric("count", label="Errors"),), split=MODEL, filters=errors),
        Panel("Errors by file", "table", LOGS, (Metric("count", label="Errors"),), split=field("log.file.path"),
              over_time=False, filters=errors),
        Panel("Log lines by level", "bar", LOGS, (Metric("count", label="Lines"),), split=field("log.level")),
    ), searches=(search,), links=(OVERVIEW, DRIFT, LLM, AGENT))


def _drift() -> Dashboard:
    feature = field("model.feature.name")
    return Dashboard(DRIFT, "[modelscribe] Drift and data quality",
                     "Input and prediction drift against the reference, data quality, and accuracy once the "
                     "true labels arrive.", (
        Panel("PSI per feature", "line", METRICS, (Metric("max", field("model.drift.psi"), "PSI"),), split=feature,
              filters=DRIFT_DOCS, thresholds=(("PSI alert", PSI_THRESHOLD),)),
        Panel("Jensen-Shannon distance per feature", "line", METRICS,
              (Metric("max", field("model.drift.js"), "JS distance"),), split=feature, filters=DRIFT_DOCS,
              thresholds=(("JS alert", JS_THRESHOLD),)),
        Panel("Windows in drift alert per feature", "bar", METRICS, (Metric("count", label="Windows"),),
              split=feature, filters=DRIFT_DOCS + (Filter(field("model.drift.alert"), True),)),
        Panel("Data quality per feature", "table", METRICS, (
            _sum("model.quality.missing", "Missing"), _sum("model.quality.type_mismatch", "Wrong type"),
            _sum("model.quality.out_of_range", "Out of range"),
            _sum("model.quality.unseen_category", "Unseen category")),
            split=feature, over_time=False, filters=DRIFT_DOCS, width=48),
        # Window documents only: a correction's ratios are over its few late
        # labels, and Lens has no weighted average to give them their weight.
        Panel("Accuracy, precision and recall (mean of windows, labels joined in time)", "line", METRICS, (
            Metric("average", field("model.accuracy.accuracy"), "Accuracy"),
            Metric("average", field("model.accuracy.precision_macro"), "Precision (macro)"),
            Metric("average", field("model.accuracy.recall_macro"), "Recall (macro)")),
            filters=HEALTH + (Filter(field("model.accuracy.accuracy")),
                              Filter(field("model.health.correction"), missing=True))),
        Panel("Regression error per model (MAE)", "line", METRICS,
              (Metric("average", field("model.regression.mae"), "MAE"),), split=MODEL,
              filters=HEALTH + (Filter(field("model.regression.mae")),)),
        Panel("Labelled share of requests", "line", METRICS,
              (Metric("average", field("model.health.labelled_share"), "Labelled share"),), split=MODEL,
              filters=HEALTH),
    ), links=(OVERVIEW, ERRORS, LLM, AGENT))


def _llm() -> Dashboard:
    def stat(key: str) -> str:
        if key not in VLLM_KEYS:  # a key vLLM's parser no longer writes
            raise DashboardError(f"model.stats.{key} is not a statistic the vllm format writes")
        return field(f"model.stats.{key}")

    return Dashboard(LLM, "[modelscribe] LLM serving",
                     "Tokens, queues, throughput and caches of vLLM and other LLM servers.", (
        Panel("Tokens", "bar", LOGS, (_sum("gen_ai.usage.input_tokens", "Input tokens"),
                                      _sum("gen_ai.usage.output_tokens", "Output tokens")),
              filters=(Filter(field("gen_ai.usage.output_tokens")),)),
        Panel("Tokens per model (health windows)", "bar", METRICS, (
            _sum("model.health.tokens.input", "Input tokens"), _sum("model.health.tokens.output", "Output tokens")),
              split=MODEL, filters=HEALTH + (Filter(field("model.health.tokens.output")),)),
        Panel("Running and waiting requests", "line", METRICS, (
            Metric("max", stat("running_reqs"), "Running"), Metric("max", stat("waiting_reqs"), "Waiting")),
              filters=VLLM_STATS),
        Panel("Generation throughput (tokens/s)", "line", METRICS, (
            Metric("average", stat("avg_prompt_throughput_toks_per_s"), "Prompt"),
            Metric("average", stat("avg_generation_throughput_toks_per_s"), "Generation")), filters=VLLM_STATS),
        Panel("GPU KV cache use (%)", "line", METRICS, (Metric("max", stat("gpu_kv_cache_usage_perc"), "KV cache"),),
              filters=VLLM_STATS),
        Panel("Prefix cache hit rate (%)", "line", METRICS,
              (Metric("average", stat("prefix_cache_hit_rate_perc"), "Hit rate (v1)"),
               Metric("average", stat("gpu_prefix_cache_hit_rate_perc"), "GPU hit rate (v0)")), filters=VLLM_STATS),
    ), links=(OVERVIEW, ERRORS, DRIFT, AGENT))


def _agent() -> Dashboard:
    host = field("host.name")
    return Dashboard(AGENT, "[modelscribe] Agent",
                     "The agents' own figures: what they read and shipped, what waits, what failed.", (
        Panel("File lag (bytes) per host", "line", METRICS,
              (Metric("max", field("modelscribe.agent.file_lag_bytes"), "Lag"),), split=host, filters=SELF),
        Panel("Spool use (bytes) per host", "line", METRICS,
              (Metric("max", field("modelscribe.agent.spool_bytes"), "Spool"),), split=host, filters=SELF),
        Panel("Lines read and events acknowledged", "bar", METRICS, (
            _sum("modelscribe.agent.lines_read", "Lines read"),
            _sum("modelscribe.agent.events_acknowledged", "Acknowledged")), filters=SELF),
        Panel("Retries and dead letters", "bar", METRICS, (
            _sum("modelscribe.agent.events_retried", "Retried"),
            _sum("modelscribe.agent.dead_letters", "Dead letters")), filters=SELF),
        Panel("Seconds since the last acknowledgement", "line", METRICS,
              (Metric("max", field("modelscribe.agent.last_ack_age_seconds"), "Age (s)"),), split=host,
              filters=SELF),
    ), links=(OVERVIEW, ERRORS, DRIFT, LLM))


def dashboards() -> tuple[Dashboard, ...]:
    return (_overview(), _errors(), _drift(), _llm(), _agent())
