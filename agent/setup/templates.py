"""Elasticsearch templates for modelscribe's data streams, built from the schema.

What ``install_templates`` puts on a cluster:

    component template  modelscribe-settings   index settings (below)
    component template  modelscribe-mappings   agent.schema.mappings()
    index template      logs-modelscribe       logs-modelscribe-*     data stream
    index template      metrics-modelscribe    metrics-modelscribe-*  data stream

Both index templates are composed of the two components, of the optional
``modelscribe-lifecycle`` component (``setup lifecycle``, agent.setup.lifecycle)
and of an optional ``<template>@custom`` component (Fleet's convention,
ignored when missing) where an operator adds replicas or extra fields
without touching ours. Their priority (250) beats the stack's built-in ``logs`` and
``metrics`` templates (``logs-*-*``, ``metrics-*-*``, priority 100) and
Fleet integrations (200), so on a stock cluster our mappings take over for
our data streams only.

Settings: ``index.mapping.ignore_malformed`` (a bad value, say an invalid
``client.ip``, is left unindexed and listed in ``_ignored`` instead of the
whole document being rejected), ``total_fields.limit`` (``TOTAL_FIELDS_LIMIT``:
room for model health's per-class keys), ``total_fields.ignore_dynamic_beyond_limit``
(keys under ``model.stats`` and the like beyond that limit are kept in _source, not
rejected) and ``best_compression`` (logs are read rarely and compress well).

Ingest pipelines: given (entry, final), the settings name them as
``index.default_pipeline`` (parses raw lines; a request that names another
pipeline, or ``_none``, skips it) and ``index.final_pipeline`` (always runs:
``event.ingested``, failure capture and the ``modelscribe@custom`` hook reach
documents of every shipper). agent.setup.install passes them only when both
pipelines exist, since an index whose default pipeline is missing refuses
every document.

OpenSearch (``engine``): ``flat_object`` for ``flattened``, no
``subobjects``, dynamic templates by leaf JSON type instead of
``unmatch_mapping_type``, ``keyword`` for ``constant_keyword`` (OpenSearch's
needs a fixed value), no ``total_fields.ignore_dynamic_beyond_limit`` (a
document past ``TOTAL_FIELDS_LIMIT`` is refused there), and
index templates composed of our two components only (no
``ignore_missing_component_templates`` or ``allow_auto_create`` there).

Every body carries ``version`` (an integer from the agent version) and
``_meta``: ``managed_by``, the agent ``version``, ``schema_hash`` (of
fields.yml) and ``template_hash`` (of the body itself, which also depends
on the field types the cluster supports).

Guarantees of ``install_templates``:

- Reads first, writes last: the mappings are validated by Elasticsearch
  (``_simulate``, which writes nothing) and every conflict is checked before
  the first PUT. Field types the cluster lacks (``match_only_text``,
  ``constant_keyword`` on minimal distributions) are found that way and
  replaced by their fallback (agent.schema.FALLBACK_TYPES).
- Idempotent: a template whose ``_meta`` and ``version`` equal ours is left
  alone (``unchanged``); only differing ones are written. A template
  installed by a newer modelscribe is ``skipped``, never downgraded unless
  ``force``. (The body itself is
  not compared: a hand-edited template that kept our ``_meta`` is not
  repaired.)
- Never overwrites what it does not manage: a template under one of our
  names without ``_meta.managed_by: modelscribe``, or another index template
  whose patterns overlap ours at the same priority (Elasticsearch would
  refuse ours), stops the install with TemplateConflictError naming it, and
  no template is written (``force`` does not change that). Templates that
  overlap at a lower priority (the stack's defaults) are taken over; ones at
  a higher priority win over ours and are reported in the action's detail.
- A refusal or an outage after some templates were handled raises
  SetupInterrupted with their Actions (agent.setup.report): what is
  half-installed is always said.
- ``dry_run``: GET and ``_simulate`` only; nothing is written.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Mapping

import orjson

from agent import AGENT_NAME, __version__
from agent import schema
from agent.errors import PermanentOutputError
from agent.setup.report import SKIPPED, UNCHANGED, Action, Request, check, outcome, reason, recording

ELASTICSEARCH, OPENSEARCH = "elasticsearch", "opensearch"  # agent.setup.cluster's engine names

MANAGED_BY = AGENT_NAME
PRIORITY = 250
SETTINGS_COMPONENT = "modelscribe-settings"
MAPPINGS_COMPONENT = "modelscribe-mappings"
# index template name -> data stream type
INDEX_TEMPLATES: Mapping[str, str] = {"logs-modelscribe": "logs", "metrics-modelscribe": "metrics"}

COMPONENT = "component template"
INDEX = "index template"

LIFECYCLE_COMPONENT = "modelscribe-lifecycle"  # written by ``setup lifecycle`` (agent.setup.lifecycle)
PRIVILEGE = "manage_index_templates cluster"

_CHECK_PATTERN = "modelscribe-mapping-check-*"
_LIST_FILTER = ",".join("index_templates." + key for key in (
    "name", "index_template.index_patterns", "index_template.priority",
    "index_template._meta", "index_template.version"))


class TemplateConflictError(PermanentOutputError):
    """A template we do not manage is in the way; the message names it and what to do."""


@dataclass(frozen=True)
class Template:
    """One template to install: its kind, name and full PUT body."""

    kind: str  # COMPONENT or INDEX
    name: str
    body: dict[str, Any]

    @property
    def path(self) -> str:
        return ("/_component_template/" if self.kind == COMPONENT else "/_index_template/") + self.name


# ------------------------------------------------------------------ building

def version_number(version: str = __version__) -> int:
    """``1.2.3`` -> 1002003: the template ``version`` Elasticsearch shows."""
    found = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if not found:
        raise ValueError(f"not a MAJOR.MINOR.PATCH version: {version!r}")
    major, minor, patch = (int(part) for part in found.groups())
    if minor >= 1000 or patch >= 1000:
        raise ValueError(f"version part above 999 in {version!r}")
    return major * 1_000_000 + minor * 1_000 + patch


# Mapped fields per index: the schema's (about 200) and the keys of its
# ``children`` objects, mostly model health's confusion pairs and per-class
# figures: at the default class cap (100) a classifier writes up to 10,000
# pairs and 400 figures. Elasticsearch's default (1,000) is reached by a
# 30-class classifier: OpenSearch then refuses the window whole (it has no
# ignore_dynamic_beyond_limit), Elasticsearch leaves the later keys unindexed.
TOTAL_FIELDS_LIMIT = 25_000


def settings(pipelines: tuple[str, str] | None = None, engine: str = ELASTICSEARCH) -> dict[str, Any]:
    """The index settings; `pipelines` = (entry, final) wires the ingest pipelines."""
    mapping: dict[str, Any] = {"ignore_malformed": True, "total_fields": {"limit": TOTAL_FIELDS_LIMIT}}
    if engine != OPENSEARCH:  # Elasticsearch 8.13+; OpenSearch has no such setting
        mapping["total_fields"]["ignore_dynamic_beyond_limit"] = True
    index: dict[str, Any] = {"codec": "best_compression", "mapping": mapping}
    if pipelines is not None:
        # default_pipeline parses raw lines (a request may name another
        # pipeline, or _none, when its documents are parsed already);
        # final_pipeline runs whatever the request named, so event.ingested,
        # failure capture and the @custom hook apply to every shipper.
        index["default_pipeline"], index["final_pipeline"] = pipelines
    return {"index": index}


# The JSON types a dynamic template can match on OpenSearch, objects excepted.
_LEAF_JSON_TYPES = ("long", "double", "string", "boolean", "date")


def _opensearch_dynamic(templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``unmatch_mapping_type: object`` is Elasticsearch 8.x's: OpenSearch gets
    one template per leaf JSON type instead, so an object below a children
    field stays an object (there is no ``subobjects: false`` to flatten it)
    and its leaves are matched by the same ``path_match``."""
    result = []
    for entry in templates:
        ((name, body),) = entry.items()
        if body.get("unmatch_mapping_type") != "object":
            result.append({name: opensearch_mappings(body)})
            continue
        rest = {key: opensearch_mappings(value) for key, value in body.items() if key != "unmatch_mapping_type"}
        result += [{f"{name}_{kind}": {**rest, "match_mapping_type": kind}} for kind in _LEAF_JSON_TYPES]
    return result


def opensearch_mappings(mappings: Any) -> Any:
    """Our mappings in OpenSearch's terms: ``flat_object`` for ``flattened``
    (it takes no options), no ``subobjects`` (OpenSearch has no such
    parameter: an object below such a field becomes an object mapping) and
    dynamic templates by leaf type (above)."""
    if isinstance(mappings, list):
        return [opensearch_mappings(item) for item in mappings]
    if not isinstance(mappings, dict):
        return mappings
    if mappings.get("type") == "flattened":
        return {"type": "flat_object"}
    return {key: _opensearch_dynamic(value) if key == "dynamic_templates" else opensearch_mappings(value)
            for key, value in mappings.items() if key != "subobjects"}


def mappings(unsupported: frozenset[str], engine: str) -> dict[str, Any]:
    built = schema.mappings(unsupported)
    return opensearch_mappings(built) if engine == OPENSEARCH else built


def _hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def stamp(kind: str, name: str, body: dict[str, Any]) -> Template:
    meta = {"managed_by": MANAGED_BY, "version": __version__, "schema_hash": schema.schema_hash(),
            "template_hash": _hash(body)}
    return Template(kind, name, {**body, "version": version_number(), "_meta": meta})


def build_templates(unsupported: frozenset[str] = frozenset(), pipelines: tuple[str, str] | None = None,
                    engine: str = ELASTICSEARCH) -> tuple[Template, ...]:
    """The four templates, components first (the order they must be PUT in).

    `unsupported`: field types the cluster lacks (see agent.schema.mappings).
    `pipelines`: (entry, final) ingest pipelines to wire, or None.
    """
    templates = [
        stamp(COMPONENT, SETTINGS_COMPONENT, {"template": {"settings": settings(pipelines, engine)}}),
        stamp(COMPONENT, MAPPINGS_COMPONENT, {"template": {"mappings": mappings(unsupported, engine)}}),
    ]
    for name in INDEX_TEMPLATES:
        body: dict[str, Any] = {"index_patterns": [name + "-*"], "data_stream": {}, "priority": PRIORITY}
        if engine == OPENSEARCH:
            # OpenSearch (forked from 7.10) has neither
            # ignore_missing_component_templates nor allow_auto_create: it
            # composes only what exists, and ISM needs no component.
            body["composed_of"] = [SETTINGS_COMPONENT, MAPPINGS_COMPONENT]
        else:
            custom = name + "@custom"
            body["composed_of"] = [SETTINGS_COMPONENT, MAPPINGS_COMPONENT, LIFECYCLE_COMPONENT, custom]
            body["ignore_missing_component_templates"] = [LIFECYCLE_COMPONENT, custom]
            # The agent relies on the first bulk request creating the data
            # stream, even where action.auto_create_index is restricted.
            body["allow_auto_create"] = True
        templates.append(stamp(INDEX, name, body))
    return tuple(templates)


# ------------------------------------------------------------------ planning

def patterns_overlap(first: str, second: str) -> bool:
    """True when some index name matches both patterns (``*`` is the only wildcard)."""

    @cache
    def match(i: int, j: int) -> bool:
        if i == len(first) and j == len(second):
            return True
        if i < len(first) and first[i] == "*":
            if match(i + 1, j) or (j < len(second) and match(i, j + 1)):
                return True
        if j < len(second) and second[j] == "*":
            if match(i, j + 1) or (i < len(first) and match(i + 1, j)):
                return True
        return i < len(first) and j < len(second) and first[i] == second[j] and match(i + 1, j + 1)

    return match(0, 0)


def _overlaps(template: Template, others: Mapping[str, dict]) -> tuple[list[str], list[str]]:
    """(conflicts, notes) about other index templates matching our patterns."""
    conflicts, notes = [], []
    ours = template.body["index_patterns"]
    for name, other in sorted(others.items()):
        if name in INDEX_TEMPLATES:
            continue
        patterns = [p for p in other.get("index_patterns") or [] if any(patterns_overlap(p, o) for o in ours)]
        if not patterns:
            continue
        priority = other.get("priority") or 0
        where = f"index template {name!r} (patterns {', '.join(patterns)}, priority {priority})"
        if priority == PRIORITY:
            conflicts.append(f"{where} overlaps {template.name!r} at the same priority, which "
                             f"Elasticsearch refuses: give it another priority or remove it")
        elif priority > PRIORITY:
            notes.append(f"outranked by {where}: data streams it matches do not get these mappings")
        else:
            notes.append(f"takes over from {where}")
    return conflicts, notes


def plan(desired: tuple[Template, ...], components: Mapping[str, dict],
         index_templates: Mapping[str, dict], force: bool = False) -> list[tuple[Template, str, str]]:
    """(template, "create" | "update" | "unchanged" | "skip", detail) for each desired template.

    `components` / `index_templates` map names to installed bodies as GET
    returns them (index templates: all of the cluster's, for the overlap
    check). One installed by a newer modelscribe is skipped, or with
    `force` downgraded. Raises TemplateConflictError listing every conflict found.
    """
    steps, conflicts = [], []
    ours = version_number()
    for template in desired:
        installed = (components if template.kind == COMPONENT else index_templates).get(template.name)
        notes: list[str] = []
        if template.kind == INDEX:
            clashes, notes = _overlaps(template, index_templates)
            conflicts += clashes
        if installed is None:
            steps.append((template, "create", "; ".join(notes)))
            continue
        meta = installed.get("_meta") or {}
        if meta.get("managed_by") != MANAGED_BY:
            owner = meta.get("managed_by")
            whose = f"its _meta.managed_by is {owner!r}" if owner is not None else "it has no _meta.managed_by"
            conflicts.append(f"{template.kind} {template.name!r} exists and is not managed by "
                             f"{MANAGED_BY} ({whose}): rename or delete it, then run this again "
                             f"(--force does not overwrite it)")
            continue
        theirs = installed.get("version")
        if isinstance(theirs, int) and theirs > ours and not force:
            notes.insert(0, f"installed by {MANAGED_BY} {meta.get('version')}, newer than "
                            f"{__version__}: left alone (--force downgrades it)")
            steps.append((template, "skip", "; ".join(notes)))
        elif isinstance(theirs, int) and theirs > ours:
            notes.insert(0, f"downgraded from {MANAGED_BY} {meta.get('version')} (--force)")
            steps.append((template, "update", "; ".join(notes)))
        elif meta == template.body["_meta"] and theirs == template.body["version"]:
            steps.append((template, "unchanged", "; ".join(notes)))
        else:
            steps.append((template, "update", "; ".join(notes)))
    if conflicts:
        raise TemplateConflictError("cannot install the modelscribe templates, no template was written:\n  "
                                    + "\n  ".join(conflicts))
    return steps


# ------------------------------------------------------------------ talking to Elasticsearch

def _check(status: int, body: Any, doing: str) -> None:
    check(status, body, doing, PRIVILEGE)


def unsupported_types(request: Request, engine: str = ELASTICSEARCH) -> frozenset[str]:
    """Field types of the schema that this cluster lacks, found with ``_simulate``.

    One request on a full distribution; one more per missing type. Any other
    refusal of our mappings or settings is raised, before anything is written.
    """
    # OpenSearch's constant_keyword needs its one value in the mapping; ours
    # (data_stream.*) differ per data stream under one template.
    missing: set[str] = {"constant_keyword"} if engine == OPENSEARCH else set()
    for _ in range(len(schema.FALLBACK_TYPES) + 1):
        body = {"index_patterns": [_CHECK_PATTERN],
                "template": {"settings": settings(None, engine), "mappings": mappings(frozenset(missing), engine)}}
        status, answer = request("POST", "/_index_template/_simulate", body)
        if status == 200:
            return frozenset(missing)
        if status != 400:
            _check(status, answer, "checking the modelscribe mappings")
        why = reason(answer)
        found = {name for name in schema.FALLBACK_TYPES if name not in missing and f"[{name}]" in why}
        if not found:
            raise PermanentOutputError(f"the cluster refuses the modelscribe mappings: {why}")
        missing |= found
    raise PermanentOutputError("Elasticsearch refuses the modelscribe mappings even with fallback types")


def _installed(request: Request) -> tuple[dict[str, dict], dict[str, dict]]:
    """(our component templates, every index template) by name."""
    status, body = request("GET", "/_component_template/modelscribe-*", None)
    if status != 404:
        _check(status, body, "reading component templates")
    found = body.get("component_templates", []) if status == 200 and isinstance(body, dict) else []
    components = {item["name"]: item["component_template"] for item in found}
    status, body = request("GET", "/_index_template?filter_path=" + _LIST_FILTER, None)
    _check(status, body, "reading index templates")
    index_templates = {item["name"]: item.get("index_template", {})
                       for item in (body or {}).get("index_templates", [])}
    return components, index_templates


def install_templates(request: Request | None, dry_run: bool = False, force: bool = False,
                      pipelines: tuple[str, str] | None = None, engine: str = ELASTICSEARCH,
                      wiring: str = "") -> list[Action]:
    """Install (or, with dry_run, plan) the templates; one Action per template.

    `request` None: an offline dry run (every template would be created).
    `pipelines`: (entry, final) to wire into the settings, or None;
    `wiring` says why they are not (reported on the settings component).
    Raises TemplateConflictError (no template written), AuthError (401/403),
    TransientOutputError (429/5xx) or PermanentOutputError (any other refusal);
    once a template was handled, as SetupInterrupted carrying the Actions so far.
    """
    if request is None:
        assert dry_run, "only a dry run goes without a cluster"
        unsupported: frozenset[str] = frozenset()
        components: dict[str, dict] = {}
        index_templates: dict[str, dict] = {}
    else:
        unsupported = unsupported_types(request, engine)
        components, index_templates = _installed(request)
    desired = build_templates(unsupported, pipelines, engine)
    steps = plan(desired, components, index_templates, force)
    fallback = ""
    if unsupported:
        pairs = sorted((name, schema.FALLBACK_TYPES[name]) for name in unsupported)
        fallback = "this cluster lacks " + ", ".join(f"{a} (mapped as {b})" for a, b in pairs)
    actions: list[Action] = []
    with recording(actions):
        for template, step, detail in steps:
            actions.append(_install_one(request, template, step, _detail(template, detail, fallback, wiring),
                                        dry_run))
    return actions


def _detail(template: Template, detail: str, fallback: str, wiring: str) -> str:
    if template.name == MAPPINGS_COMPONENT and fallback:
        return "; ".join(filter(None, [fallback, detail]))
    if template.name == SETTINGS_COMPONENT and wiring:
        return "; ".join(filter(None, [wiring, detail]))
    return detail


def _install_one(request: Request | None, template: Template, step: str, detail: str, dry_run: bool) -> Action:
    if step in ("unchanged", "skip"):
        return Action(template.kind, template.name, UNCHANGED if step == "unchanged" else SKIPPED, detail)
    if not dry_run:
        assert request is not None
        # create=true: a template that appeared since we looked is not overwritten.
        path = template.path + ("?create=true" if step == "create" else "")
        status, body = request("PUT", path, template.body)
        _check(status, body, f"installing {template.kind} {template.name}")
    return Action(template.kind, template.name, outcome(step, dry_run), detail)


def requester(output: Any) -> Request:
    """Adapt ``ElasticsearchOutput.request`` (returns a Response) to Request."""

    def request(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = output.request(method, path, None if body is None else orjson.dumps(body))
        return response.status, response.body

    return request
