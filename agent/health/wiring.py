"""How the daemon runs model health: the few calls ``agent.pipeline`` makes.

- ``Health.from_config`` (None when the config file has no enabled
  ``health:`` block: health costs nothing then);
- ``acks(commit)``: the ack tracker that feeds the engine at registration
  (``engine.ObservedAcks``: the one point where health sees events) and
  tells it what the output acknowledged (when a re-delivered event may be
  forgotten);
- ``start(thread, deliver, stop)``: the health thread (closes due windows,
  sends their documents through the same sender as every other event);
- ``save(registry)``: on the main thread after the registry's save — the
  engine's checkpoint, pruned below the offsets read before that save;
- ``finish_once(deliver)`` (``--once``: every window is closed, its documents
  sent) and ``stop(deliver, timeout)`` (daemon shutdown: windows stay open
  in the checkpoint, what the outbox holds is sent while there is time).

Where documents go: ``metrics-modelscribe-<namespace>`` when the agent
writes to a ``logs-modelscribe-*`` data stream (what ``pipeline.metrics_target``
gives), else the agent's own target (``--index``).
"""

from __future__ import annotations

import decimal
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

from agent import AGENT_NAME, __version__
from agent.acks import AckTracker
from agent.clock import SYSTEM_CLOCK, Clock, FakeClock
from agent.events import Event
from agent.alerting.rules import DEFAULT_LATENESS_SECONDS as DEFAULT_LATENESS
from agent.alerting.rules import DEFAULT_WINDOW_SECONDS as DEFAULT_WINDOW
from agent.health import native
from agent.health.engine import HealthEngine, ObservedAcks
from agent.selflog import get_logger

if TYPE_CHECKING:
    from agent.config import Config
    from agent.registry import Registry

log = get_logger("health")
Deliver = Callable[[list[Event]], None]


class Health:
    def __init__(self, engine: HealthEngine) -> None:
        self.engine = engine
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: "Config", target: str | None, agent_id: str,
                    clock: Clock = SYSTEM_CLOCK) -> "Health | None":
        settings = getattr(config, "health", None)
        if settings is None or not settings.enabled:
            return None
        agent = {"name": AGENT_NAME, "type": AGENT_NAME, "version": __version__, "id": agent_id}
        # Windows' idle timer runs on wall time; a FakeClock (tests) is passed through.
        engine = HealthEngine(settings, config.state_dir, target, agent,
                              clock if isinstance(clock, FakeClock) else SYSTEM_CLOCK)
        log.info("model health on", window=settings.window, lateness=settings.lateness,
                 reference=settings.reference or f"first {settings.reference_size} events",
                 target=target or "-")
        if (settings.window, settings.lateness) != (DEFAULT_WINDOW, DEFAULT_LATENESS):
            log.info(rules_note(settings))
        return cls(engine)

    def acks(self, commit: Callable[[str, int], None]) -> AckTracker:
        return ObservedAcks(commit, self.engine.observe, self.engine.acknowledged)

    def start(self, thread: Callable[..., threading.Thread], deliver: Deliver,
              wall_clock: bool = True) -> threading.Thread:
        """``wall_clock=False`` (``--once``): windows close by the watermark only."""
        self._thread = thread("health", self.engine.run_shipper, deliver, self._stop, wall_clock)
        self._thread.start()
        return self._thread

    def recovered(self, records: int) -> None:
        """The spool recovered ``records`` records (re-delivered first)."""
        self.engine.hold_pruning(records)

    def save(self, registry: "Registry", committed: dict[str, int]) -> None:
        del registry  # the offsets were read before its save: see the module doc
        self.engine.checkpoint(committed)

    def finish_once(self, deliver: Deliver) -> None:
        """After every event was fed: stop the health thread (its last send
        done), close every window and send what the outbox holds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.engine.finish(deliver)

    def stop(self, deliver: Deliver, timeout: float) -> None:
        """The health thread's last send, bounded by ``timeout``: never on
        this thread, whose shutdown must not wait on an output that is down
        (what is not sent stays in the checkpoint for the next start)."""
        del deliver  # the thread has its own
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        self.engine.close()

    def describe(self) -> list[str]:
        return describe(self.engine.settings)


def seconds_text(seconds: float) -> str:
    """``seconds`` as a duration the flags take back exactly (``2000000s``,
    ``0.25s``): never an exponent, which ``{:g}`` writes from 1e6 on and no
    duration parser reads."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return format(decimal.Decimal(repr(float(seconds))), "f").rstrip("0").rstrip(".") + "s"


def rules_note(settings: Any) -> str:
    """What the anomaly rules need when the windows are not the defaults they are checked in for."""
    return (f"the anomaly rules' look-backs must cover these windows: install them with --health-window "
            f"{seconds_text(settings.window)} --health-lateness {seconds_text(settings.lateness)} "
            f"(setup watchers, setup rules, setup elastalert); the files under kibana/ are for "
            f"{DEFAULT_WINDOW}s windows")


def committed_offsets(registry: "Registry") -> dict[str, int]:
    return {entry.key: entry.offset for entry in registry.entries()}


# What the model-server formats give health without configuration, where it is less
# than requests, errors and latency per model (docs/health.md; audit 9: check config
# said nothing of inputs that yield no window at all).
FORMAT_LIMITS = {
    "triton": "requests only from the verbose request lines (--log-verbose 1), no latency; model failures "
              "are errors of no request",
    "vllm": "requests only where a line names its model (LoRA adapters): the base model's are not counted (its "
            "access lines name no model and carry no time of their own)",
    "kserve": "requests and errors per model, no latency (the trace lines that carry it name no model)",
    "gunicorn": "no model in its lines: name it with --field model.name=NAME or health.fields.model",
    "mlflow": "no model in its lines: name it with --field model.name=NAME or health.fields.model",
}


def describe(settings: Any, formats: Sequence[tuple[str, str]] = ()) -> list[str]:
    """What health computes, for ``check config``; ``formats``: (where, format)
    of the global setting and of each input that sets one."""
    if settings is None or not settings.enabled:
        return ["health: off (add a health: block to the config file to turn it on)"]
    ref = settings.reference or f"the first {settings.reference_size} events of each model"
    lines = [f"health: windows of {seconds_text(settings.window)}, lateness {seconds_text(settings.lateness)}, "
             f"reference {ref}, label_ttl {seconds_text(settings.label_ttl)}",
             f"health: thresholds psi {settings.thresholds.psi:g} js {settings.thresholds.js:g} "
             f"drift_p {settings.thresholds.drift_p:g} "
             f"error_rate {settings.thresholds.error_rate} p95_ms {settings.thresholds.p95_ms} "
             f"accuracy_drop {settings.thresholds.accuracy_drop}",
             f"health: fields (every other input) {settings.fields.describe()}"]
    if (settings.window, settings.lateness) != (DEFAULT_WINDOW, DEFAULT_LATENESS):
        lines.append("health: " + rules_note(settings))
    for globs, paths in settings.per_input:
        lines.append(f"health: fields for {', '.join(globs)}: {paths.describe()}")
    for where, name in formats:
        if name in FORMAT_LIMITS:
            lines.append(f"health: {where} (format {name}): {FORMAT_LIMITS[name]}")
    lines.append("health: hot path in C (agent/health/_native.c)" if native.NATIVE is not None else
                 "health: hot path in Python (the C module was not built, or MODELSCRIBE_HEALTH_NATIVE turns it "
                 "off): the same figures, at a higher CPU cost")
    return lines
