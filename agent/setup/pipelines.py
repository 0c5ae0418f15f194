"""Installing modelscribe's ingest pipelines, and removing those nothing uses any more.

The pipelines themselves are data: ``pipelines/*.yml``, loaded by
``agent.setup.pipeline_defs`` into installed name -> JSON body, where every
installed name carries the agent version (``modelscribe-json-0.1.0``). So an
upgrade never changes a pipeline that older agents (or indices created by
them) still use: it installs new ones next to them, and ``--cleanup``
removes the old ones once nothing references them.

Guarantees of ``install_pipelines``:

- Reads first: every processor type the pipelines use (nested ``on_failure``
  and ``foreach`` included) must be offered by every ingest node
  (``GET /_nodes/ingest``). If one is missing, nothing is written and every
  pipeline is reported ``skipped`` with the missing types named.
- Idempotent: an installed pipeline whose body equals ours is ``unchanged``.
- Never overwrites what it does not manage: a pipeline under our name whose
  ``_meta.managed_by`` is someone else's is skipped (``--force`` overwrites).
- Writes a referenced pipeline before the pipelines that call it, so the
  entry pipeline never routes to one that is not there yet.
- Elasticsearch gets ``_meta`` (managed_by, version); OpenSearch refuses
  unknown pipeline keys, so there the integer ``version`` is the stamp.
- A refusal or an outage after some pipelines were handled raises
  SetupInterrupted carrying their Actions (agent.setup.report).

``cleanup_pipelines`` deletes a pipeline only when all of these hold: its
name is ours with an OLDER version than this agent's (never a newer one:
that belongs to a newer agent), and no index template, component template,
index (``index.default_pipeline`` / ``index.final_pipeline``, hidden
backing indices included) or kept pipeline refers to it. Indices the
credentials cannot see cannot be checked, and every deletion (dry run
included) then says that only the visible ones were: on Elasticsearch,
which leaves them out of ``_all`` silently, when ``_has_privileges`` says
the credentials lack ``view_index_metadata`` on ``*``; on OpenSearch, which
refuses ``_all``, when only our data streams' indices could be read.
Elasticsearch itself refuses to delete a pipeline an index uses as its
default or final pipeline: that pipeline (and those it calls) is reported
``skipped`` naming the index, and the cleanup goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from agent import __version__
from agent.setup import privileges
from agent.setup.cluster import OPENSEARCH, Cluster
from agent.setup.report import SKIPPED, UNCHANGED, Action, Request, check, outcome, reason, recording
from agent.setup.templates import MANAGED_BY, version_number

WHAT = "ingest pipeline"
PRIVILEGE = "manage_ingest_pipelines cluster"
_NAME = re.compile(r"^modelscribe-(?P<name>.+)-(?P<version>\d+\.\d+\.\d+)$")
# Keys Elasticsearch adds to a stored pipeline: not part of what we compare.
_STREAMS = "logs-modelscribe-*,metrics-modelscribe-*"
# Elasticsearch's refusal to delete a pipeline an index uses (IngestService.validateNotInUse).
_IN_USE = re.compile(r"cannot be deleted because it is (?P<uses>the (?:default|final) pipeline for .*)$", re.S)
_STORED_ONLY = ("created_date_millis", "modified_date_millis", "created_date", "modified_date")


@dataclass(frozen=True)
class PipelineSet:
    """The pipelines to install: installed name -> body, and which is entry and final."""

    bodies: Mapping[str, Mapping[str, Any]]
    entry: str
    final: str


def shipped() -> PipelineSet:
    """The pipelines of this agent (pipelines/*.yml through pipeline_defs)."""
    from agent.setup import pipeline_defs

    return PipelineSet(pipeline_defs.load_pipelines(), pipeline_defs.ENTRY, pipeline_defs.FINAL)


# ------------------------------------------------------------------ reading bodies

def _processors(items: Any) -> Iterator[tuple[str, dict]]:
    """(type, config) of every processor in a list, nested ones included."""
    for item in items or []:
        if not isinstance(item, dict):
            continue
        for kind, config in item.items():
            config = config if isinstance(config, dict) else {}
            yield kind, config
            yield from _processors(config.get("on_failure"))
            if isinstance(config.get("processor"), dict):  # foreach
                yield from _processors([config["processor"]])


def processor_types(body: Mapping[str, Any]) -> set[str]:
    """Every processor type a pipeline body uses."""
    found = _processors(list(body.get("processors") or []) + list(body.get("on_failure") or []))
    return {kind for kind, _ in found}


def references(body: Mapping[str, Any]) -> set[str]:
    """Names of the pipelines a body calls with ``pipeline`` processors."""
    found = _processors(list(body.get("processors") or []) + list(body.get("on_failure") or []))
    return {str(config["name"]) for kind, config in found if kind == "pipeline" and "name" in config}


def _order(bodies: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names ordered so that a called pipeline comes before its callers."""
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered or name in visiting or name not in bodies:
            return
        visiting.add(name)
        for callee in sorted(references(bodies[name])):
            visit(callee)
        ordered.append(name)

    for name in sorted(bodies):
        visit(name)
    return ordered


def stamped(body: Mapping[str, Any], engine: str) -> dict[str, Any]:
    """The body as installed: with our ``version`` and, on Elasticsearch, ``_meta``."""
    result = {**body, "version": version_number()}
    if engine != OPENSEARCH:
        result["_meta"] = {**(body.get("_meta") or {}), "managed_by": MANAGED_BY, "version": __version__}
    return result


def _comparable(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in _STORED_ONLY}


# ------------------------------------------------------------------ install

def _installed(request: Request, pattern: str = "modelscribe-*") -> dict[str, dict]:
    status, body = request("GET", f"/_ingest/pipeline/{pattern}", None)
    if status == 404:
        return {}
    check(status, body, "reading ingest pipelines", PRIVILEGE)
    return dict(body or {})


def missing_processors(pipelines: PipelineSet, cluster: Cluster) -> list[str]:
    """Processor types the pipelines use that the cluster lacks (none when unknown)."""
    if cluster.processors is None:
        return []
    used: set[str] = set()
    for body in pipelines.bodies.values():
        used |= processor_types(body)
    return sorted(used - cluster.processors)


def install_pipelines(request: Request | None, cluster: Cluster, pipelines: PipelineSet,
                      dry_run: bool = False, force: bool = False) -> list[Action]:
    """Install (or plan) every pipeline; one Action each. `request` may be
    None for an offline dry run (nothing is installed then)."""
    order = _order(pipelines.bodies)
    lacking = missing_processors(pipelines, cluster)
    if lacking:
        why = (f"this cluster lacks the ingest processor{'s' if len(lacking) > 1 else ''} "
               f"{', '.join(lacking)} (GET /_nodes/ingest): keep --parse-at agent here")
        return [Action(WHAT, name, SKIPPED, why) for name in order]
    installed = _installed(request) if request is not None else {}
    actions: list[Action] = []
    with recording(actions):
        for name in order:
            actions.append(_install_one(request, name, stamped(pipelines.bodies[name], cluster.engine),
                                        installed.get(name), dry_run, force))
    return actions


def _install_one(request: Request | None, name: str, desired: dict[str, Any], current: dict | None,
                 dry_run: bool, force: bool) -> Action:
    if current is not None and _comparable(current) == desired:
        return Action(WHAT, name, UNCHANGED)
    if current is not None and not force:
        owner = (current.get("_meta") or {}).get("managed_by")
        if owner is not None and owner != MANAGED_BY:
            return Action(WHAT, name, SKIPPED, f"exists and is managed by {owner!r}, not {MANAGED_BY}: "
                                               f"--force overwrites it")
    step = "create" if current is None else "update"
    if not dry_run:
        assert request is not None
        status, body = request("PUT", f"/_ingest/pipeline/{name}", desired)
        check(status, body, f"installing {WHAT} {name}", PRIVILEGE)
    return Action(WHAT, name, outcome(step, dry_run))


def present(request: Request, names: tuple[str, ...]) -> set[str]:
    """Which of `names` exist on the cluster."""
    return set(_installed(request, ",".join(names))) & set(names)


# ------------------------------------------------------------------ cleanup

def _setting(settings: Any, key: str) -> Any:
    """``index.default_pipeline`` from nested or flat settings."""
    if not isinstance(settings, dict):
        return None
    if key in settings:
        return settings[key]
    head, _, rest = key.partition(".")
    return _setting(settings.get(head), rest) if rest else None


def _settings_users(request: Request) -> tuple[dict[str, set[str]], str]:
    """(pipeline name -> who names it in index.default_pipeline / final_pipeline,
    the caveat to report when not every index could be read, else "")."""
    users: dict[str, set[str]] = {}

    def note(settings: Any, who: str) -> None:
        for key in ("index.default_pipeline", "index.final_pipeline"):
            value = _setting(settings, key)
            if isinstance(value, str):
                users.setdefault(value, set()).add(who)

    status, body = request("GET", "/_index_template", None)
    check(status, body, "reading index templates", "manage_index_templates cluster")
    for item in (body or {}).get("index_templates", []):
        note((item["index_template"].get("template") or {}).get("settings"), f"index template {item['name']}")
    status, body = request("GET", "/_component_template", None)
    check(status, body, "reading component templates", "manage_index_templates cluster")
    for item in (body or {}).get("component_templates", []):
        note((item["component_template"].get("template") or {}).get("settings"),
             f"component template {item['name']}")
    caveat = ""
    # Elasticsearch answers _all with the indices the credentials may see and
    # says nothing of the others: only _has_privileges tells.
    if privileges.sees_every_index(request) is False:
        caveat = (f"; only the indices these credentials can see were checked (they lack "
                  f"{privileges.EVERY_INDEX_PRIVILEGE} on every index, *)")
    query = "/_settings/index.default_pipeline,index.final_pipeline?expand_wildcards=all&flat_settings=true"
    status, body = request("GET", "/_all" + query, None)
    if status == 403:
        # OpenSearch's security plugin refuses a wildcard that covers any
        # forbidden index: read ours.
        status, body = request("GET", "/" + _STREAMS + query, None)
        caveat = (f"; only the indices of {_STREAMS} were checked (the credentials may not read the "
                  f"settings of every index)")
    check(status, body, "reading index settings", "view_index_metadata index")
    for index, entry in (body or {}).items():
        note(entry.get("settings"), f"index {index}")
    return users, caveat


def _older(name: str) -> bool:
    found = _NAME.match(name)
    return bool(found) and version_number(found["version"]) < version_number()


def _referenced(who: set[str]) -> str:
    named = sorted(who)
    return ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")


def _in_use(status: int, body: Any) -> str | None:
    """What an index uses the pipeline as, when the cluster refused the delete
    for that (Elasticsearch: "the default pipeline for 1 index(es) including [x]")."""
    if status != 400:
        return None
    found = _IN_USE.search(reason(body))
    return found["uses"] if found else None


def cleanup_pipelines(request: Request, dry_run: bool = False) -> list[Action]:
    """Delete our pipelines of older versions that nothing references.

    A delete the cluster refuses because an index still uses the pipeline
    (one these credentials could not see) is reported ``skipped`` naming
    that index, and keeps the pipelines it calls; the rest goes on."""
    everything = _installed(request, "*")
    candidates = {name for name, body in everything.items()
                  if _older(name) and (body.get("_meta") or {}).get("managed_by", MANAGED_BY) == MANAGED_BY}
    if not candidates:
        return []
    users, caveat = _settings_users(request)
    callers: dict[str, set[str]] = {}
    for name, body in everything.items():
        for callee in references(body):
            callers.setdefault(callee, set()).add(name)
    kept = _kept(candidates, users, callers)
    actions = []
    for name in sorted(candidates & kept):
        who = users.get(name, set()) | {f"ingest pipeline {caller}" for caller in callers.get(name, ())
                                        if caller not in candidates or caller in kept}
        actions.append(Action(WHAT, name, SKIPPED, "older version still referenced by " + _referenced(who)))
    # Callers before the pipelines they call: a caller the cluster refuses to
    # delete still calls them, so they must stay too.
    refused: set[str] = set()
    with recording(actions):
        for name in reversed(_order({name: everything[name] for name in candidates - kept})):
            holders = {caller for caller in callers.get(name, ()) if caller in refused}
            if holders:
                refused.add(name)
                actions.append(Action(WHAT, name, SKIPPED, "older version still referenced by "
                                      + _referenced({f"ingest pipeline {caller}" for caller in holders})))
                continue
            if not dry_run:
                status, body = request("DELETE", f"/_ingest/pipeline/{name}", None)
                uses = _in_use(status, body)
                if uses is not None:
                    refused.add(name)
                    actions.append(Action(WHAT, name, SKIPPED, f"older version still {uses} (the cluster "
                                                               f"refused to delete it)"))
                    continue
                if status != 404:
                    check(status, body, f"deleting {WHAT} {name}", PRIVILEGE)
            actions.append(Action(WHAT, name, outcome("delete", dry_run), "older version, referenced by nothing"
                                  + caveat))
    return sorted(actions, key=lambda action: action.name)


def _kept(candidates: set[str], users: dict[str, set[str]], callers: dict[str, set[str]]) -> set[str]:
    """The candidates something references: a kept pipeline keeps whatever it
    calls, so iterate until nothing changes."""
    kept = {name for name in candidates if users.get(name)}
    changed = True
    while changed:
        changed = False
        for name in candidates - kept:
            if any(caller not in candidates or caller in kept for caller in callers.get(name, ())):
                kept.add(name)
                changed = True
    return kept
