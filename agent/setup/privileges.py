"""The two roles modelscribe needs on Elasticsearch, and what given credentials can do.

One definition, used three ways: docs/security.md prints these role
descriptors, ``modelscribe check output`` asks ``_has_privileges`` for each
and says which the credentials hold, and ``modelscribe setup`` checks the
privileges of the step it is about to run before writing anything, naming
each one that is missing.

- SHIPPING (``modelscribe run``): ``create_doc`` (the only op_type the agent
  sends) and ``auto_configure`` (the first bulk creates the data stream) on
  our data streams, and ``monitor`` so ``check output`` can read the version.
- SETUP (``modelscribe setup``): templates, ingest pipelines and ILM at the
  cluster level, ``monitor`` to read what the cluster has (``_nodes``,
  ``_license``), and on the data streams ``manage_data_stream_lifecycle``
  (retention of existing streams), ``manage`` (ILM setting of existing
  backing indices) and ``view_index_metadata`` (cleanup reads which index
  still uses an old pipeline). Cleanup sees other indices only with
  ``view_index_metadata`` on ``*`` too, which SETUP does not grant:
  ``sees_every_index`` tells, and cleanup's report says so when it cannot.

OpenSearch's security plugin has other privilege names (action groups); see
docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from agent.errors import AuthError
from agent.setup.report import Request

STREAMS = ("logs-modelscribe-*", "metrics-modelscribe-*")

SHIPPING: Mapping[str, Any] = {
    "cluster": ["monitor"],
    "indices": [{"names": list(STREAMS), "privileges": ["create_doc", "auto_configure"]}],
}
SETUP: Mapping[str, Any] = {
    "cluster": ["monitor", "manage_index_templates", "manage_ingest_pipelines", "manage_ilm"],
    "indices": [{"names": list(STREAMS),
                 "privileges": ["manage_data_stream_lifecycle", "manage", "view_index_metadata"]}],
}

# --cleanup checks every index it can read for the old pipelines; with this
# privilege on every index (not part of SETUP, see docs/setup.md) it reads them all.
EVERY_INDEX_PRIVILEGE = "view_index_metadata"

# What each setup step needs (cluster privileges, index privileges on STREAMS).
STEP_NEEDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "detect": (("monitor",), ()),
    "templates": (("manage_index_templates", "read_pipeline"), ()),  # wired only to pipelines that exist
    "pipelines": (("manage_ingest_pipelines",), ()),
    "lifecycle": (("manage_index_templates",), ("manage_data_stream_lifecycle",)),
    "lifecycle-ilm": (("manage_ilm", "manage_index_templates"), ("manage",)),
    "cleanup": (("manage_ingest_pipelines", "manage_index_templates"), ("view_index_metadata",)),
}


@dataclass(frozen=True)
class Access:
    """Which privileges of a role the credentials lack (empty: they can)."""

    role: str
    missing: tuple[str, ...] | None  # None: the cluster cannot say (no _has_privileges API)

    @property
    def granted(self) -> bool:
        return self.missing == ()

    def describe(self) -> str:
        if self.missing is None:
            return "unknown (this cluster has no _security/user/_has_privileges API)"
        return "yes" if self.granted else "no, missing " + ", ".join(self.missing)


def _ask(request: Request, cluster: tuple[str, ...] | list[str],
         index: tuple[str, ...] | list[str]) -> list[str] | None:
    """The privileges of the request that are not granted, as ``name (cluster)``
    or ``name on pattern``. Raises AuthError on 401; None where the cluster
    has no such API (OpenSearch) or security is off (then nothing is refused)."""
    body: dict[str, Any] = {"cluster": list(cluster)}
    if index:
        body["index"] = [{"names": list(STREAMS), "privileges": list(index)}]
    status, answer = request("POST", "/_security/user/_has_privileges", body)
    if status == 401:
        raise AuthError("the cluster refused the credentials (HTTP 401)")
    if status >= 300 or not isinstance(answer, dict):
        return None
    # In the order asked, not the answer's, so messages are stable.
    granted = answer.get("cluster") or {}
    missing = [f"{name} (cluster)" for name in cluster if not granted.get(name)]
    on_index = answer.get("index") or {}
    for pattern in STREAMS if index else ():
        missing += [f"{name} on {pattern}" for name in index if not (on_index.get(pattern) or {}).get(name)]
    return missing


def sees_every_index(request: Request) -> bool | None:
    """Whether the credentials may read the settings of every index
    (``view_index_metadata`` on ``*``), which ``--cleanup`` needs to know that
    no index still uses an old pipeline. None where the cluster cannot say
    (no ``_has_privileges``: OpenSearch, or Elasticsearch with security off,
    where no index is hidden)."""
    body = {"index": [{"names": ["*"], "privileges": [EVERY_INDEX_PRIVILEGE]}]}
    status, answer = request("POST", "/_security/user/_has_privileges", body)
    if status >= 300 or not isinstance(answer, dict):
        return None
    return bool(((answer.get("index") or {}).get("*") or {}).get(EVERY_INDEX_PRIVILEGE))


def access(request: Request) -> tuple[Access, Access]:
    """(shipping, setup): what the credentials lack of each role."""
    results = []
    for role, descriptor in (("shipping", SHIPPING), ("setup", SETUP)):
        index = descriptor["indices"][0]["privileges"]
        missing = _ask(request, descriptor["cluster"], index)
        results.append(Access(role, None if missing is None else tuple(missing)))
    return results[0], results[1]


def require(request: Request, steps: list[str]) -> None:
    """Raise AuthError naming every privilege the given setup steps need and lack."""
    cluster: list[str] = []
    index: list[str] = []
    for step in steps:
        needs_cluster, needs_index = STEP_NEEDS[step]
        cluster += [name for name in needs_cluster if name not in cluster]
        index += [name for name in needs_index if name not in index]
    missing = _ask(request, cluster, index)
    if missing:
        raise AuthError(f"these credentials cannot run modelscribe setup {' '.join(s for s in steps if s != 'detect')}: "
                        f"missing the privilege{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"(see the setup role in docs/security.md)")
