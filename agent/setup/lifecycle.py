"""Retention of modelscribe's data streams, through the mechanism each engine has.

``install_lifecycle`` uses, by the cluster's capabilities (agent.setup.cluster):

- Elasticsearch with the data stream lifecycle: the component template
  ``modelscribe-lifecycle`` carries ``lifecycle.data_retention``. Our index
  templates compose it (optional, so templates work before it exists); data
  streams that exist already are given the same retention with
  ``PUT /_data_stream/<name>/_lifecycle`` (a template only reaches new ones).
- Elasticsearch with ILM and no data stream lifecycle (before 8.11): the ILM
  policy ``modelscribe`` (rollover at 50GB per primary shard or 1 day, then
  delete ``retention`` after rollover) and the component setting
  ``index.lifecycle.name``; existing backing indices get the setting too.
- OpenSearch: the ISM policy ``modelscribe``, whose ``ism_template`` attaches
  it to new backing indices of our data streams (rollover at 1 day, delete
  at ``retention`` of index age); existing ones are added with
  ``POST /_plugins/_ism/add``.
- Neither: every object is reported ``skipped`` with the reason.

Idempotent and version-stamped like the templates (``_meta`` with
managed_by, version and the retention). ``retention`` None keeps what is
installed, so a later ``setup all`` does not undo a ``--retention 7d``; the
default for a first install is 30 days. A failure after some objects were
handled raises SetupInterrupted carrying their Actions (agent.setup.report).
"""

from __future__ import annotations

from typing import Any

from agent import __version__
from agent.setup.cluster import DSL, ILM, ISM, OPENSEARCH, Cluster, has_handler
from agent.setup.report import SKIPPED, UNCHANGED, Action, Request, check, outcome, recording
from agent.setup.templates import COMPONENT, INDEX_TEMPLATES, LIFECYCLE_COMPONENT, MANAGED_BY, Template, plan, stamp

DEFAULT_RETENTION = 30 * 86400.0
POLICY = "modelscribe"
STREAMS = ",".join(name + "-*" for name in INDEX_TEMPLATES)  # logs-modelscribe-*,metrics-modelscribe-*
ROLLOVER_SIZE = "50gb"
ROLLOVER_AGE = "1d"


def time_value(seconds: float) -> str:
    """A duration in the cluster's units: 30d, 12h, 90m, 45s."""
    whole = int(round(seconds))
    if whole <= 0:
        raise ValueError("--retention must be longer than zero")
    for unit, suffix in ((86400, "d"), (3600, "h"), (60, "m")):
        if whole % unit == 0:
            return f"{whole // unit}{suffix}"
    return f"{whole}s"


def component(retention: str, mechanism: str) -> Template:
    """The modelscribe-lifecycle component template for DSL or ILM."""
    if mechanism == DSL:
        template: dict[str, Any] = {"lifecycle": {"data_retention": retention}}
    else:
        template = {"settings": {"index": {"lifecycle": {"name": POLICY}}}}
    built = stamp(COMPONENT, LIFECYCLE_COMPONENT, {"template": template})
    built.body["_meta"]["retention"] = retention
    return built


def ilm_policy(retention: str) -> dict[str, Any]:
    return {"policy": {
        "_meta": {"managed_by": MANAGED_BY, "version": __version__, "retention": retention},
        "phases": {
            "hot": {"min_age": "0ms", "actions": {"rollover": {
                "max_primary_shard_size": ROLLOVER_SIZE, "max_age": ROLLOVER_AGE}}},
            "delete": {"min_age": retention, "actions": {"delete": {}}},
        },
    }}


def ism_policy(retention: str) -> dict[str, Any]:
    return {"policy": {
        "description": f"modelscribe {__version__}: delete indices after {retention} (managed by "
                       f"{MANAGED_BY}; retention={retention})",
        "schema_version": 1,
        "default_state": "hot",
        "states": [
            {"name": "hot", "actions": [{"rollover": {"min_index_age": ROLLOVER_AGE,
                                                      "min_primary_shard_size": ROLLOVER_SIZE}}],
             "transitions": [{"state_name": "delete", "conditions": {"min_index_age": retention}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        # Data streams: the pattern matches the stream's name, ISM attaches the
        # policy to each new backing index of it.
        "ism_template": [{"index_patterns": [name + "-*" for name in INDEX_TEMPLATES], "priority": 100}],
    }}


def _installed_retention(request: Request | None, cluster: Cluster) -> str | None:
    """The retention a previous setup installed, if any."""
    if request is None:
        return None
    if cluster.lifecycle == ISM:
        status, body = request("GET", f"/_plugins/_ism/policies/{POLICY}", None)
        if status == 200:
            description = str((body.get("policy") or {}).get("description", ""))
            return description.rpartition("retention=")[2].rstrip(")") or None
        return None
    status, body = request("GET", f"/_component_template/{LIFECYCLE_COMPONENT}", None)
    if status == 200:
        for item in body.get("component_templates", []):
            return (item["component_template"].get("_meta") or {}).get("retention")
    return None


def install_lifecycle(request: Request | None, cluster: Cluster, retention: float | None = None,
                      dry_run: bool = False, force: bool = False) -> list[Action]:
    """Install (or plan) the retention objects for the cluster's mechanism."""
    mechanism = cluster.lifecycle
    if mechanism is None:
        if cluster.engine == OPENSEARCH:
            why = ("this cluster has no ISM (the index-management plugin: /_plugins/_ism has no handler): "
                   "data is kept until deleted by hand")
        else:
            why = ("this cluster has neither the data stream lifecycle nor ILM (their APIs have no handler): "
                   "data is kept until deleted by hand")
        return [Action("lifecycle", STREAMS, SKIPPED, why)]
    installed = _installed_retention(request, cluster)
    value = time_value(retention) if retention is not None else installed or time_value(DEFAULT_RETENTION)
    kept = " (kept from the installed lifecycle)" if retention is None and installed else ""
    if mechanism == ISM:
        return _ism(request, value, kept, dry_run)
    actions: list[Action] = []
    with recording(actions):
        if mechanism == ILM:
            actions.append(_ilm(request, value, dry_run))
        actions.append(_component(request, component(value, mechanism), kept, dry_run, force))
        if request is not None:
            _existing_streams(request, value, mechanism, dry_run, actions)
    return actions


def _component(request: Request | None, desired: Template, kept: str, dry_run: bool, force: bool) -> Action:
    components: dict[str, dict] = {}
    if request is not None:
        status, body = request("GET", desired.path, None)
        if status != 404:
            check(status, body, f"reading {desired.path}", "manage_index_templates cluster")
            components = {item["name"]: item["component_template"] for item in body["component_templates"]}
    ((template, step, detail),) = plan((desired,), components, {}, force)
    detail = "; ".join(filter(None, [f"retention {desired.body['_meta']['retention']}{kept}", detail]))
    if step in ("unchanged", "skip"):
        return Action(COMPONENT, template.name, UNCHANGED if step == "unchanged" else SKIPPED, detail)
    if not dry_run:
        assert request is not None
        status, body = request("PUT", template.path, template.body)
        check(status, body, f"installing {COMPONENT} {template.name}", "manage_index_templates cluster")
    return Action(COMPONENT, template.name, outcome(step, dry_run), detail)


def _ilm(request: Request | None, retention: str, dry_run: bool) -> Action:
    desired = ilm_policy(retention)
    step = "create"
    if request is not None:
        status, body = request("GET", f"/_ilm/policy/{POLICY}", None)
        if status == 200:
            # _meta (version, retention) decides: ILM stores the phases with
            # defaults filled in (delete_searchable_snapshot...), never as sent.
            if body[POLICY]["policy"].get("_meta") == desired["policy"]["_meta"]:
                return Action("ILM policy", POLICY, UNCHANGED, f"retention {retention}")
            step = "update"
        elif status != 404:
            check(status, body, "reading the ILM policy", "manage_ilm cluster")
    if not dry_run:
        assert request is not None
        status, body = request("PUT", f"/_ilm/policy/{POLICY}", desired)
        check(status, body, f"installing ILM policy {POLICY}", "manage_ilm cluster")
    return Action("ILM policy", POLICY, outcome(step, dry_run), f"retention {retention}")


def _existing_streams(request: Request, retention: str, mechanism: str, dry_run: bool,
                      actions: list[Action]) -> None:
    """Data streams created before (the template reaches only new ones): their
    Actions are appended to `actions` one by one, so a failure leaves the
    ones done there."""
    status, body = request("GET", f"/_data_stream/{STREAMS}", None)
    # Without the data streams module 9.x says "no handler found", 8.x "Incorrect HTTP method" (405).
    if status == 404 or not has_handler(status, body):
        return
    check(status, body, "reading the data streams", "view_index_metadata index")
    for stream in body.get("data_streams", []):
        name = stream["name"]
        if mechanism == DSL:
            current = (stream.get("lifecycle") or {}).get("data_retention")
            if current == retention:
                actions.append(Action("data stream lifecycle", name, UNCHANGED, f"retention {retention}"))
                continue
            path, payload, privilege = f"/_data_stream/{name}/_lifecycle", {"data_retention": retention}, \
                "manage_data_stream_lifecycle index"
        else:
            if stream.get("ilm_policy") == POLICY:
                actions.append(Action("data stream ILM policy", name, UNCHANGED, POLICY))
                continue
            path, payload, privilege = f"/{name}/_settings", {"index.lifecycle.name": POLICY}, "manage index"
        if not dry_run:
            status, answer = request("PUT", path, payload)
            check(status, answer, f"setting the retention of data stream {name}", privilege)
        actions.append(Action("data stream lifecycle" if mechanism == DSL else "data stream ILM policy", name,
                              outcome("update", dry_run), f"retention {retention}"))


def _ism(request: Request | None, retention: str, kept: str, dry_run: bool) -> list[Action]:
    desired = ism_policy(retention)
    path = f"/_plugins/_ism/policies/{POLICY}"
    step, query = "create", ""
    if request is not None:
        status, body = request("GET", path, None)
        if status == 200:
            # The description carries our version and the retention; ISM
            # stores states with defaults filled in (retry...), never as sent.
            if (body.get("policy") or {}).get("description") == desired["policy"]["description"]:
                return [Action("ISM policy", POLICY, UNCHANGED, f"retention {retention}{kept}")]
            step, query = "update", f"?if_seq_no={body['_seq_no']}&if_primary_term={body['_primary_term']}"
        elif status != 404:
            check(status, body, "reading the ISM policy", "ISM (cluster:admin/opendistro/ism/*)")
    if not dry_run:
        assert request is not None
        status, body = request("PUT", path + query, desired)
        check(status, body, f"installing ISM policy {POLICY}", "ISM (cluster:admin/opendistro/ism/*)")
    actions = [Action("ISM policy", POLICY, outcome(step, dry_run), f"retention {retention}{kept}")]
    if request is not None and not dry_run:
        with recording(actions):
            # Backing indices created before the policy existed are not attached by ism_template.
            status, body = request("POST", f"/_plugins/_ism/add/{STREAMS}", {"policy_id": POLICY})
        if status < 300 and body.get("updated_indices"):
            actions.append(Action("ISM managed indices", STREAMS, outcome("update", False),
                                  f"{body['updated_indices']} existing backing indices attached to {POLICY}"))
    return actions

