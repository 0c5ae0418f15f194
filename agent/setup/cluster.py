"""What the target cluster has, found before ``modelscribe setup`` writes anything.

``detect`` reads (never writes):

- the engine and its version: ``GET /`` (``version.distribution`` is
  ``opensearch`` on OpenSearch), or ``GET /_nodes/_local`` on minimal
  distributions that leave ``GET /`` out (Elasticsearch's integ-test zip);
- the ingest processors every node offers: ``GET /_nodes/ingest`` (a
  pipeline may run on any ingest node, so the intersection counts);
- the licence: ``GET /_license`` (Elasticsearch; OpenSearch has none);
- the lifecycle mechanisms whose APIs answer: the data stream lifecycle
  (``/_data_stream/.../_lifecycle``) and ILM (``/_ilm/status``) on
  Elasticsearch, ISM (``/_plugins/_ism``) on OpenSearch. An API "answers"
  when the node has a handler for it: "no handler found" means the module is
  not installed.

The version is checked first: below ``OLDEST`` (Elasticsearch 8.13, whose
index settings and dynamic-template conditions our templates use;
OpenSearch 2.7, the first with ``flat_object``) ``detect`` raises
UnsupportedCluster naming the version found and those supported, before
any other request and so before anything is written. A version that cannot
be read (``?``) is not refused here: the requests that follow say what fails.

``assumed`` is the cluster an offline ``--dry-run`` describes: everything
present, nothing installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.errors import PermanentOutputError
from agent.setup.report import Request, check

ELASTICSEARCH, OPENSEARCH = "elasticsearch", "opensearch"
_DISPLAY = {ELASTICSEARCH: "Elasticsearch", OPENSEARCH: "OpenSearch"}
# Lifecycle mechanisms, in the order setup prefers them on each engine: the
# data stream lifecycle needs no policy object and no licence check.
DSL, ILM, ISM = "data stream lifecycle", "ILM", "ISM"
_PREFERENCE = (DSL, ILM, ISM)

_PROBE = "modelscribe-setup-probe"

# The oldest release setup's objects install on (major, minor). Elasticsearch
# 8.13 added index.mapping.total_fields.ignore_dynamic_beyond_limit and
# unmatch_mapping_type (both in our templates); OpenSearch 2.7 flat_object.
OLDEST = {ELASTICSEARCH: (8, 13), OPENSEARCH: (2, 7)}
_MAJOR_MINOR = re.compile(r"(\d+)\.(\d+)")


class UnsupportedCluster(PermanentOutputError):
    """The cluster's version is older than setup supports (exit code 3)."""


def supported(engine: str, version: str) -> None:
    """Raise UnsupportedCluster when `version` of `engine` is older than OLDEST."""
    found = _MAJOR_MINOR.match(version)
    if not found or (int(found[1]), int(found[2])) >= OLDEST[engine]:
        return
    major, minor = OLDEST[engine]
    others = ", ".join(f"{_DISPLAY[name]}: {a}.{b} or later" for name, (a, b) in OLDEST.items() if name != engine)
    raise UnsupportedCluster(f"{_DISPLAY[engine]} {version} is not supported by modelscribe setup: it needs "
                             f"{_DISPLAY[engine]} {major}.{minor} or later ({others}); nothing was written")


@dataclass(frozen=True)
class Cluster:
    """What setup may use on the target cluster."""

    engine: str  # ELASTICSEARCH | OPENSEARCH
    version: str
    # Processor types every ingest node offers; None when not known (offline).
    processors: frozenset[str] | None
    licence: str | None  # "basic", "trial", ...; None: no _license API (OpenSearch)
    lifecycles: frozenset[str]  # DSL / ILM / ISM, those whose API answers
    offline: bool = False

    @property
    def lifecycle(self) -> str | None:
        """The mechanism ``setup lifecycle`` uses here (None: none available)."""
        return next((name for name in _PREFERENCE if name in self.lifecycles), None)

    @property
    def major(self) -> int:
        head = self.version.split(".")[0]
        return int(head) if head.isdigit() else 0

    def describe(self) -> str:
        if self.offline:
            return f"no cluster contacted: assuming {_DISPLAY[self.engine]} {self.version} with every feature"
        processors = "unknown" if self.processors is None else str(len(self.processors))
        return (f"{_DISPLAY[self.engine]} {self.version}; licence {self.licence or 'none'}; "
                f"{processors} ingest processors; lifecycle: {self.lifecycle or 'none'}")


def assumed(engine: str = ELASTICSEARCH) -> Cluster:
    """The cluster an offline dry run plans for: a current one, with everything."""
    if engine == OPENSEARCH:
        return Cluster(OPENSEARCH, "2.19.1", None, None, frozenset({ISM}), offline=True)
    return Cluster(ELASTICSEARCH, "9.2.0", None, "basic", frozenset({DSL, ILM}), offline=True)


def has_handler(status: int, body: object) -> bool:
    """False when the node has no REST handler for the request (module missing)."""
    text = str(body)
    return not (status in (400, 404, 405) and ("no handler found" in text or "Incorrect HTTP method" in text))


def _engine(request: Request) -> tuple[str, str]:
    status, body = request("GET", "/", None)
    if status == 200 and isinstance(body, dict):
        version = body.get("version") or {}
        engine = OPENSEARCH if version.get("distribution") == "opensearch" else ELASTICSEARCH
        return engine, str(version.get("number", "?"))
    if status not in (401, 403) and has_handler(status, body):
        check(status, body, "reading the cluster's version (GET /)", "monitor cluster")
    status, body = request("GET", "/_nodes/_local?filter_path=nodes.*.version,nodes.*.build_type", None)
    check(status, body, "reading the cluster's version (GET /_nodes/_local)", "monitor cluster")
    versions = [str(node.get("version", "?")) for node in (body.get("nodes") or {}).values()]
    # OpenSearch always has GET /; only Elasticsearch distributions leave it out.
    return ELASTICSEARCH, versions[0] if versions else "?"


def _processors(request: Request) -> frozenset[str]:
    status, body = request("GET", "/_nodes/ingest?filter_path=nodes.*.ingest.processors.type", None)
    check(status, body, "listing the ingest processors (GET /_nodes/ingest)", "monitor cluster")
    common: set[str] | None = None
    for node in (body.get("nodes") or {}).values():
        types = {item.get("type") for item in (node.get("ingest") or {}).get("processors") or []}
        common = types if common is None else common & types
    return frozenset(common or ())


def _licence(request: Request) -> str | None:
    status, body = request("GET", "/_license", None)
    if status == 200 and isinstance(body, dict):
        licence = body.get("license") or {}
        kind, state = licence.get("type"), licence.get("status")
        return f"{kind} ({state})" if state and state != "active" else kind
    if has_handler(status, body) and status not in (400, 404):
        check(status, body, "reading the licence (GET /_license)", "monitor cluster")
    return None


def _answers(request: Request, path: str, doing: str, privilege: str) -> bool:
    status, body = request("GET", path, None)
    if not has_handler(status, body):
        return False
    if status in (401, 403):
        check(status, body, doing, privilege)
    return True


def detect(request: Request) -> Cluster:
    """Read what the cluster has; raises UnsupportedCluster for a version
    older than OLDEST, AuthError naming the privilege when the credentials
    may not read it."""
    engine, version = _engine(request)
    supported(engine, version)
    processors = _processors(request)
    lifecycles = set()
    if engine == OPENSEARCH:
        licence = None
        if _answers(request, "/_plugins/_ism/policies?size=1", "reading ISM policies", "ISM read"):
            lifecycles.add(ISM)
    else:
        licence = _licence(request)
        # A stream that does not exist: 404 where the API exists, "no handler" where not.
        if _answers(request, f"/_data_stream/{_PROBE}/_lifecycle", "reading a data stream lifecycle",
                    "view_index_metadata index"):
            lifecycles.add(DSL)
        if _answers(request, "/_ilm/status", "reading the ILM status", "read_ilm cluster"):
            lifecycles.add(ILM)
    return Cluster(engine, version, processors, licence, frozenset(lifecycles))
