"""A real, throw-away OpenSearch node on 127.0.0.1 with a real ingest engine.

Importable module (tests/opensearch_fixtures.py) and CLI::

    python scripts/opensearch_local.py start|stop|status|fetch [--version V] [--home DIR]
    python scripts/opensearch_local.py start --insecure   # plain HTTP, no security plugin

What it guarantees:

* The distribution is OpenSearch's integ-test zip plus the ingest-common,
  lang-painless, lang-mustache and analysis-common modules and the security plugin, all from
  Maven Central, assembled once per version in ``$MODELSCRIBE_OS_CACHE``
  (default ``~/.cache/modelscribe/opensearch``): see opensearch_dist.py.  So
  the node has every ingest-common processor (grok, dissect, date, json, kv,
  urldecode, convert, script with painless, ``{{ }}`` templates, ...),
  unlike the Elasticsearch integ-test zip.
* Every ``start_node`` builds a fresh node home in its work dir (config,
  data, logs), binds HTTP and transport to 127.0.0.1 on free ports and
  returns only once the cluster is yellow (and, secured, once the security
  index is initialised); otherwise it stops what it started and raises
  HarnessError with the tail of the node's log.
* ``security=True`` (the default): the real security plugin, TLS on HTTP and
  transport with a CA and node certificate made by ``openssl``, and the
  internal user ``admin`` with a random password (bcrypt-hashed by the
  plugin's own ``hash.sh``).  OpenSearch has no Elasticsearch-style API keys:
  ``Node.api_key`` and ``api_key_file`` are empty.  ``security=False``: the
  plugin is disabled and the node speaks plain HTTP without authentication.
* When run as root the node runs as the unprivileged user the Elasticsearch
  harness uses (OpenSearch refuses root too).
* ``stop_node`` stops the whole process group; ``restart_node`` brings the
  same node (data, port, credentials) back; ``remove_node`` deletes its data.
* ``request`` talks plain JSON (HTTPS verifying the generated CA when
  secured), like elasticsearch_local.request.

Layout of a work dir: ``state.json``, ``ca.crt`` (secured only),
``password`` (0600; empty when insecure), ``node/`` (the node's home or a
symlink to it when the node user cannot reach the work dir).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import secrets
import shutil
import ssl
import sys
import time
from pathlib import Path
from typing import Any, Union

try:
    import opensearch_dist  # noqa: F401
except ModuleNotFoundError:  # loaded by file path, without scripts/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from opensearch_dist import (  # noqa: E402,F401  (re-exported)
    SECURITY_PLUGIN, HarnessError, cache_dir, fetch_distribution, find_java_home, has_security)
# The node's life (account when root, free ports, node home, state file,
# process group, CLI) is shared with the Elasticsearch harness.
import local_node  # noqa: E402
from local_node import (  # noqa: E402
    chown_tree as _chown_tree, free_port as _free_port, grant_search as _grant_search,
    new_home as _new_home, node_account as _node_account, write_private as _write_private,
    write_state as _write_state)
import opensearch_security  # noqa: E402

log = logging.getLogger("opensearch_local")

DEFAULT_VERSION = "2.19.1"
CLUSTER_NAME = "modelscribe-os-test"
USERNAME = "admin"
HEAP = "-Xms512m -Xmx512m"
START_TIMEOUT = 240.0  # a loaded 2-core CI machine: secured first start took up to ~60 s here
STOP_GRACE = 30.0

@dataclasses.dataclass(frozen=True)
class Node:
    url: str
    ca_cert: str  # "" when insecure
    api_key_file: str  # always "": OpenSearch has no Elasticsearch-style API keys
    password_file: str
    password: str  # "" when insecure
    api_key: str  # always ""
    version: str
    home: str
    pid: int
    username: str = USERNAME
    security: bool = True


def default_work_dir() -> Path:
    return Path.home() / ".cache" / "modelscribe" / "os-local"


def default_version() -> str:
    return os.environ.get("MODELSCRIBE_OS_VERSION") or DEFAULT_VERSION


# ------------------------------------------------------------- node home

def _node_env(state: dict, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OPENSEARCH_JAVA_HOME=state["java_home"], OPENSEARCH_PATH_CONF=str(home / "config"),
               OPENSEARCH_TMPDIR=str(home / "tmp"), OPENSEARCH_JAVA_OPTS=HEAP, HOME=str(home))
    env.pop("JAVA_TOOL_OPTIONS", None)
    env.pop("JAVA_HOME", None)  # OPENSEARCH_JAVA_HOME decides
    return env


def _write_config(home: Path, dist: Path, state: dict, extra: dict[str, Any] | None) -> None:
    config = home / "config"
    shutil.copytree(dist / "config", config)
    # bin/opensearch-env cd's into the (shared, read-only) distribution, so
    # the relative gc.log, heap dump and error file paths of jvm.options would
    # point into it: make them point into the node home.
    options = (config / "jvm.options").read_text()
    for old, new in (("file=logs/gc.log", f"file={home}/logs/gc.log"),
                     ("HeapDumpPath=data", f"HeapDumpPath={home}/data"),
                     ("ErrorFile=logs/", f"ErrorFile={home}/logs/")):
        options = options.replace(old, new)
    (config / "jvm.options").write_text(options)
    settings: dict[str, Any] = {
        "cluster.name": CLUSTER_NAME,
        "node.name": "modelscribe-os",
        "path.data": str(home / "data"),
        "path.logs": str(home / "logs"),
        "discovery.type": "single-node",
        "network.host": "127.0.0.1",
        "http.port": state["http_port"],
        "transport.port": state["transport_port"],
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "action.destructive_requires_name": False,
    }
    if state["security"]:
        settings.update(opensearch_security.settings())
        opensearch_security.write_config(config, dist / "plugins" / SECURITY_PLUGIN / "config")
    elif has_security(dist):
        settings["plugins.security.disabled"] = True
    settings.update(extra or {})
    # JSON scalars and lists are valid YAML: no YAML library needed.
    lines = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    (config / "opensearch.yml").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------- state

def _node_from_state(state: dict) -> Node:
    work = Path(state["home"])
    secure = state["security"]
    return Node(url=state["url"], ca_cert=str(work / "ca.crt") if secure else "",
                api_key_file="", password_file=str(work / "password"),
                password=(work / "password").read_text(), api_key="",
                version=state["version"], home=str(work), pid=state.get("pid") or 0,
                security=secure)


# ------------------------------------------------------------- public API

def _prepare(version: str):
    java = find_java_home(version)
    dist = fetch_distribution(version)
    account = _node_account()
    _grant_search(dist, account)
    return java, dist, account


def start_node(work_dir: Union[str, os.PathLike], version: str | None = None,
               settings: dict[str, Any] | None = None, *, security: bool = True,
               timeout: float = START_TIMEOUT) -> Node:
    """Start a fresh node whose home is `work_dir` (any old node home there is replaced).

    `settings`: extra opensearch.yml entries.  `security`: TLS + the admin
    password through the real security plugin; False gives plain HTTP.
    """
    work = local_node.claim_work_dir(ENGINE, work_dir)
    version = version or default_version()
    t0 = time.monotonic()
    java, dist, account = _prepare(version)
    if security and not has_security(dist):
        raise HarnessError(f"the security plugin {SECURITY_PLUGIN} {version}.0 could not be "
                           f"fetched for this version (see {cache_dir()}/downloads-{version}); "
                           f"use security=False / --insecure or another version")
    for name in ("password", "ca.crt", "state.json"):
        (work / name).unlink(missing_ok=True)
    home = _new_home(work, account)
    http_port = _free_port()
    scheme = "https" if security else "http"
    state = {"version": version, "dist": str(dist), "java_home": str(java),
             "url": f"{scheme}://127.0.0.1:{http_port}", "http_port": http_port,
             "transport_port": _free_port(exclude=http_port), "home": str(work), "pid": None,
             "node_home": str(home), "security": security}
    password = ""
    if security:
        password = secrets.token_urlsafe(18)
        opensearch_security.make_certs(home / "config-certs")
    _write_config(home, dist, state, settings)
    if security:
        shutil.move(str(home / "config-certs"), str(home / "config" / "certs"))
        opensearch_security.write_users(home / "config", dist, java, USERNAME, password)
        shutil.copy(home / "config" / "certs" / "ca.crt", work / "ca.crt")
        (work / "ca.crt").chmod(0o644)
    _write_private(work / "password", password)
    # The security plugin warns about any config file others can read.
    for path in [home / "config", *(home / "config").rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    _chown_tree(home, account)
    _write_state(work, state)
    log.info("prepared node home (Java %s) in %.1fs", java, time.monotonic() - t0)
    return local_node.boot(ENGINE, state, work, timeout)


def restart_node(node_or_workdir: Union[Node, str, os.PathLike], *,
                 timeout: float = START_TIMEOUT) -> Node:
    """Start again a stopped node: same data, ports and credentials."""
    return local_node.restart_node(ENGINE, node_or_workdir, timeout)


def stop_node(node_or_workdir: Union[Node, str, os.PathLike], *, grace: float = STOP_GRACE) -> bool:
    """Stop the node's process group: SIGTERM, then SIGKILL after `grace` s.

    Returns True if a running node was stopped.
    """
    return local_node.stop_node(ENGINE, node_or_workdir, grace)


def remove_node(node_or_workdir: Union[Node, str, os.PathLike]) -> None:
    """Stop the node and delete its data; its logs are kept in <work>/node-logs."""
    local_node.remove_node(ENGINE, node_or_workdir)


def node_status(work_dir: Union[str, os.PathLike]) -> tuple[Node | None, bool, bool]:
    """(node or None if never started here, process running, node answering)."""
    return local_node.node_status(ENGINE, work_dir)


_SSL: dict[str, ssl.SSLContext] = {}


def request(node: Node, method: str, path: str, body: Any = None, auth: str | None = "password",
            timeout: float = 30.0) -> tuple[int, Any]:
    """One request; returns (status, parsed JSON body | text | None).

    `body`: dict/list is sent as JSON; str/bytes as-is (NDJSON for _bulk).
    `auth`: "password" (the admin user; ignored by an insecure node) or None.
    HTTP error statuses are returned, not raised; connection errors raise.
    """
    headers = {}
    if auth == "password":
        if node.security:
            token = base64.b64encode(f"{node.username}:{node.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
    elif auth is not None:
        raise ValueError(f"auth must be 'password' or None, not {auth!r}")
    context = None
    if node.security:
        if node.ca_cert not in _SSL:
            _SSL[node.ca_cert] = ssl.create_default_context(cafile=node.ca_cert)
        context = _SSL[node.ca_cert]
    return local_node.send(node.url, method, path, body, headers, context, timeout)


ENGINE = local_node.Engine(product="OpenSearch", binary="opensearch", cluster_name=CLUSTER_NAME,
                           node_env=_node_env, node_from_state=_node_from_state, request=request)


# ------------------------------------------------------------- CLI

def _print_env(node: Node) -> None:
    # Same names as elasticsearch-local; ES_API_KEY_FILE is empty (no API keys
    # in OpenSearch), ES_USERNAME says which user the password belongs to.
    local_node.print_env((("ES_URL", node.url), ("ES_CA_CERT", node.ca_cert),
                          ("ES_API_KEY_FILE", node.api_key_file),
                          ("ES_PASSWORD_FILE", node.password_file if node.security else ""),
                          ("ES_USERNAME", node.username if node.security else ""),
                          ("ES_VERSION", node.version), ("ES_HOME", node.home),
                          ("ES_FLAVOR", "opensearch")))


def main(argv: list[str] | None = None) -> int:
    parser = local_node.cli_parser(ENGINE, "opensearch.yml", default_version(),
                                   default_work_dir())
    parser.add_argument("--insecure", action="store_true",
                        help="start only: no security plugin, plain HTTP, no authentication")
    args = parser.parse_args(argv)

    def fetch() -> Path:
        version = args.version or default_version()
        java, dist, _ = _prepare(version)
        log.info("OpenSearch %s ready to start (Java %s, security plugin: %s)", version,
                 java, "yes" if has_security(dist) else "no")
        return dist

    def mismatch(node: Node) -> str | None:
        if node.security == args.insecure:
            return f"has security {'on' if node.security else 'off'}"
        return None

    return local_node.cli(
        ENGINE, "opensearch-local", args, fetch=fetch, env=_print_env, mismatch=mismatch,
        start=lambda extra: start_node(args.home, args.version, extra,
                                       security=not args.insecure))


if __name__ == "__main__":
    sys.exit(main())
