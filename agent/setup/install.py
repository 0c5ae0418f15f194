"""``modelscribe setup``: the steps in order, on what the cluster has.

``run_setup`` runs the chosen steps of templates | pipelines | lifecycle
(``all``: every one) in the order that keeps the cluster usable at each
moment:

1. where the engine has a security API, check every privilege the steps
   need, naming each missing one; then read what the cluster has
   (agent.setup.cluster), stopping on a version too old for our objects.
   Both before anything is written;
2. pipelines, before the templates that name them;
3. lifecycle (its component template is composed into ours as optional);
4. templates, wired to the entry and final pipelines only when both are on
   the cluster (or installed by this run): an index whose default pipeline
   is missing refuses every document, so templates never name one that is
   not there, and the report says why they are not wired;
5. ``--cleanup``: our pipelines of older versions that nothing references,
   after the templates have moved to the new ones.

Nothing half-installed without saying so: a refusal, a conflict or an
outage after detection stops the run with SetupInterrupted, which carries
the Actions of every object handled before it (in every step, the failing
one included), so the command prints them before the error.

``request`` None is an offline ``--dry-run``: the plan for a fresh cluster
of the assumed engine (agent.setup.cluster.assumed), with no connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.errors import ModelscribeError
from agent.setup import privileges
from agent.setup.cluster import ELASTICSEARCH, ILM, Cluster, assumed, detect
from agent.setup.lifecycle import install_lifecycle
from agent.setup.pipelines import WHAT as PIPELINE, PipelineSet, cleanup_pipelines, install_pipelines, present, \
    shipped
from agent.setup.report import SKIPPED, Action, Request, SetupInterrupted, recording
from agent.setup.templates import install_templates

STEPS = ("pipelines", "lifecycle", "templates")  # the order they run in
_INSTALLED = {"created", "updated", "unchanged", "would-create", "would-update"}


@dataclass(frozen=True)
class SetupOptions:
    steps: tuple[str, ...] = STEPS
    dry_run: bool = False
    force: bool = False
    cleanup: bool = False
    retention: float | None = None  # seconds; None: keep the installed one, else 30 days
    engine: str = ELASTICSEARCH  # the engine an offline dry run plans for


@dataclass(frozen=True)
class SetupResult:
    cluster: Cluster
    actions: list[Action] = field(default_factory=list)


def _load_pipelines() -> tuple[PipelineSet | None, str]:
    try:
        return shipped(), ""
    except ImportError as error:
        return None, f"this build has no pipeline definitions ({error})"


def _wiring(request: Request | None, pipelines: PipelineSet | None, why_none: str,
            done: list[Action]) -> tuple[tuple[str, str] | None, str]:
    """(entry, final) when templates may name them, else None and the reason."""
    if pipelines is None:
        return None, f"not wired to ingest pipelines: {why_none}"
    names = (pipelines.entry, pipelines.final)
    ours = {action.name: action for action in done if action.what == PIPELINE}
    if all(name in ours for name in names):
        if all(ours[name].outcome in _INSTALLED for name in names):
            return names, ""
        skipped = next(ours[name] for name in names if ours[name].outcome not in _INSTALLED)
        return None, f"not wired to ingest pipelines: {skipped.name} is not installed ({skipped.detail})"
    found = present(request, names) if request is not None else set()
    lacking = [name for name in names if name not in found]
    if not lacking:
        return names, ""
    return None, (f"not wired to ingest pipelines: {', '.join(lacking)} not installed (run "
                  f"`modelscribe setup pipelines`, then this again)")


def run_setup(request: Request | None, options: SetupOptions,
              pipelines: PipelineSet | None = None) -> SetupResult:
    """Run the steps. Before anything is written, raises the agent's errors
    (AuthError naming privileges, UnsupportedCluster, Transient/Permanent
    OutputError); once detection ran, any error leaves as SetupInterrupted
    carrying the cluster, the Actions of every object handled before it, and
    the error itself as ``cause`` (its exit code too)."""
    steps = [step for step in STEPS if step in options.steps]
    if request is None:
        assert options.dry_run, "only a dry run goes without a cluster"
        cluster = assumed(options.engine)
    else:
        needs = ["detect"] + steps + (["cleanup"] if options.cleanup else [])
        privileges.require(request, needs)
        cluster = detect(request)
        if "lifecycle" in steps and cluster.lifecycle == ILM:
            privileges.require(request, ["lifecycle-ilm"])
    why_none = ""
    if pipelines is None:
        pipelines, why_none = _load_pipelines()
    actions: list[Action] = []
    try:
        with recording(actions):
            _run_steps(request, options, steps, cluster, pipelines, why_none, actions)
    except SetupInterrupted as error:
        raise SetupInterrupted(error.cause, error.done, cluster) from error.cause
    except ModelscribeError as error:
        # Nothing handled yet, but detection ran: the report still names the cluster.
        raise SetupInterrupted(error, [], cluster) from error
    return SetupResult(cluster, actions)


def _run_steps(request: Request | None, options: SetupOptions, steps: list[str], cluster: Cluster,
               pipelines: PipelineSet | None, why_none: str, actions: list[Action]) -> None:
    """The steps in order, each step's Actions appended to `actions` as it ends."""
    if "pipelines" in steps:
        if pipelines is None:
            actions.append(Action(PIPELINE, "modelscribe-*", SKIPPED, why_none))
        else:
            actions += install_pipelines(request, cluster, pipelines, options.dry_run, options.force)
    if "lifecycle" in steps:
        actions += install_lifecycle(request, cluster, options.retention, options.dry_run, options.force)
    if "templates" in steps:
        wired, why = _wiring(request, pipelines, why_none, actions)
        actions += install_templates(request, options.dry_run, options.force, wired, cluster.engine, why)
    if options.cleanup and request is not None:
        actions += cleanup_pipelines(request, options.dry_run)

