"""A real, throw-away Elasticsearch node on 127.0.0.1 for modelscribe's tests.

Importable module (used by tests/conftest.py) and CLI::

    python scripts/elasticsearch_local.py start|stop|status [--version V] [--home DIR]
    python scripts/elasticsearch_local.py start --client-auth ...
    python scripts/elasticsearch_local.py fetch [--version V]

What it guarantees:

* The distribution (the integ-test zip from Maven Central, fetched with
  ``mvn dependency:copy``) is cached outside the repository, in
  ``$MODELSCRIBE_ES_CACHE`` (default ``~/.cache/modelscribe/elasticsearch``),
  downloaded and unpacked once per version, plus a small analysis plugin that
  the security index needs: see elasticsearch_dist.py, which does all of
  that and picks the JDK.  An interrupted unpack leaves no half tree behind;
  the unpacked tree is shared and never written to.
* ``fetch`` does everything ``start`` needs before a node home exists (JDK,
  download, unpack, shim plugin, node user, cache reachable by it) and prints
  the distribution path, so that CI reports download errors on their own.
* Every ``start_node`` builds a fresh node home in its work dir: own config
  dir, data, logs, a CA plus node certificate made by ``elasticsearch-certutil``,
  a random ``elastic`` password (keystore ``bootstrap.password``) and an API
  key.  Security and HTTPS are on; HTTP and transport bind to 127.0.0.1 only,
  on free ports; the node's output goes to files under ``<work>/node/logs``.
* ``start_node(..., client_auth=True)`` (CLI: ``start --client-auth``) makes
  the node's HTTPS layer require a client certificate
  (``xpack.security.http.ssl.client_authentication: required``) and adds a
  client certificate and key signed by the same CA (``Node.client_cert``,
  ``Node.client_key``, PEM).  The certificate only opens the TLS connection:
  requests still authenticate with the password or the API key (no PKI
  realm).  ``request`` presents it, so the harness keeps working.
* When run as root the node runs as the unprivileged system user
  ``modelscribe-es`` (Elasticsearch refuses root), created on first use.
* ``start_node`` returns only once the cluster is yellow and the API key
  exists; otherwise it stops whatever it started and raises HarnessError with
  the tail of the node's log.  ``stop_node`` stops the whole process group;
  ``restart_node`` brings the same node (data, port, credentials) back;
  ``remove_node`` stops it and deletes its data.
* ``request`` talks plain JSON over HTTPS (verifying the generated CA), with
  no client-version headers, so it works against 8.x and 9.x alike; it
  presents the node's client certificate when there is one.

Layout of a work dir: ``state.json`` (pid, url, ports, ...), ``ca.crt``,
``password`` and ``api_key`` (both 0600), with ``client_auth`` also
``client.crt`` and ``client.key`` (the key 0600), and ``node/`` (the node's home, or
a symlink to it when the node user cannot reach the work dir).

Not in the integ-test zip, hence not available: ``GET /`` (use
``/_nodes/_local``), ingest processors, ILM, ``_delete_by_query``/reindex and
the ``/_data_stream`` APIs (index templates with ``data_stream`` and
auto-created data streams do work).
"""
from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import pwd
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Union

# Fetching the distribution, the JDK and the shim plugin live in
# elasticsearch_dist (next to this file); their public names are re-exported.
# The node's life (account, home, state, process group, CLI) is shared with
# the OpenSearch harness in local_node.
try:
    import elasticsearch_dist  # noqa: F401
except ModuleNotFoundError:  # loaded by file path, without scripts/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from elasticsearch_dist import (  # noqa: E402,F401  (re-exported)
    HarnessError, cache_dir, fetch_distribution, find_java_home)
import local_node  # noqa: E402
from local_node import (  # noqa: E402
    as_node_user as _as_node_user, chown_tree as _chown_tree, free_port as _free_port,
    grant_search as _grant_search, new_home as _new_home, node_account as _node_account,
    write_private as _write_private, write_state as _write_state)

log = logging.getLogger("elasticsearch_local")

DEFAULT_VERSION = "9.2.8"
ES_USER = local_node.NODE_USER
CLUSTER_NAME = "modelscribe-test"
HEAP = "-Xms512m -Xmx512m"
START_TIMEOUT = 120.0
STOP_GRACE = 30.0

@dataclasses.dataclass(frozen=True)
class Node:
    url: str
    ca_cert: str
    api_key_file: str
    password_file: str
    password: str
    api_key: str  # base64 "encoded" form, as sent in "Authorization: ApiKey ..."
    version: str
    home: str  # the work dir (state.json, credentials, node/)
    pid: int
    # With client_auth: the PEM client certificate and key the node requires.
    client_cert: str | None = None
    client_key: str | None = None


# ---------------------------------------------------------------- locations

def default_work_dir() -> Path:
    return Path.home() / ".cache" / "modelscribe" / "es-local"


def default_version() -> str:
    return os.environ.get("MODELSCRIBE_ES_VERSION") or DEFAULT_VERSION


# ------------------------------------------------------------- node home

def _node_env(state: dict, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ES_JAVA_HOME=state["java_home"],
        ES_PATH_CONF=str(home / "config"),
        ES_TMPDIR=str(home / "tmp"),  # not /tmp: everything stays in the home
        ES_JAVA_OPTS=HEAP,
        HOME=str(home),
    )
    env.pop("JAVA_TOOL_OPTIONS", None)  # its banner would pollute CLI tool output
    return env


def _write_config(home: Path, dist: Path, http_port: int, transport_port: int,
                  extra: dict[str, Any] | None, client_auth: bool = False) -> None:
    config = home / "config"
    shutil.copytree(dist / "config", config)
    settings: dict[str, Any] = {
        "cluster.name": CLUSTER_NAME,
        "node.name": "modelscribe-es",
        "path.data": str(home / "data"),
        "path.logs": str(home / "logs"),
        "discovery.type": "single-node",
        "network.host": "127.0.0.1",
        "http.port": http_port,
        "transport.port": transport_port,
        "xpack.security.enabled": True,
        "xpack.security.http.ssl.enabled": True,
        # Paths are relative to the config dir: ES only reads certs from there.
        "xpack.security.http.ssl.key": "certs/node.key",
        "xpack.security.http.ssl.certificate": "certs/node.crt",
        "xpack.security.http.ssl.certificate_authorities": ["certs/ca.crt"],
        # Single node on loopback: transport TLS is not required.
        "xpack.security.transport.ssl.enabled": False,
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "action.destructive_requires_name": False,
    }
    if client_auth:
        # Default "none".  "required": every HTTPS client, the harness included,
        # must present a certificate signed by certs/ca.crt ("optional" would
        # let one without through, proving nothing).
        settings["xpack.security.http.ssl.client_authentication"] = "required"
    # Unknown settings abort startup; the geoip one exists only with the module.
    if (dist / "modules" / "ingest-geoip").is_dir():
        settings["ingest.geoip.downloader.enabled"] = False
    settings.update(extra or {})
    # JSON scalars and lists are valid YAML: no YAML library needed.
    lines = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    (config / "elasticsearch.yml").write_text("\n".join(lines) + "\n")


def _cli_tool(state: dict, home: Path, account, tool: str, *args: str,
              stdin: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(state["dist"]) / "bin" / tool), *args],
        env=_node_env(state, home), cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL, text=True,
        **_as_node_user(account))


def _finish(proc: subprocess.Popen, what: str, stdin: str | None = None) -> None:
    out, _ = proc.communicate(stdin, timeout=120)
    if proc.returncode != 0:
        raise HarnessError(f"{what} failed ({proc.returncode}):\n{out}")


def _make_credentials(state: dict, home: Path, account, password: str,
                      client_auth: bool = False) -> None:
    """Keystore with bootstrap.password, CA and node certificate (certutil).

    With `client_auth` also a client certificate signed by the same CA, left
    in <home>/tmp/client/client.{crt,key} for start_node to pick up.
    """
    tmp = home / "tmp"
    # `add -f` creates the keystore when missing; it runs alongside certutil
    # (each tool is a JVM start of a few seconds).
    keystore = _cli_tool(state, home, account, "elasticsearch-keystore",
                         "add", "-x", "-f", "bootstrap.password", stdin=password)
    try:
        _finish(_cli_tool(state, home, account, "elasticsearch-certutil", "ca", "--pem",
                          "--silent", "--out", str(tmp / "ca.zip")), "certutil ca")
        with zipfile.ZipFile(tmp / "ca.zip") as zf:
            zf.extractall(tmp)
        _chown_tree(tmp, account)  # certutil cert, run as the node user, reads them
        ca_args = ("--ca-cert", str(tmp / "ca" / "ca.crt"), "--ca-key", str(tmp / "ca" / "ca.key"))
        # The client certificate is made alongside the node's (one JVM start each).
        client = _cli_tool(state, home, account, "elasticsearch-certutil", "cert", "--pem",
                           "--silent", *ca_args, "--name", "client",
                           "--out", str(tmp / "client.zip")) if client_auth else None
        try:
            _finish(_cli_tool(state, home, account, "elasticsearch-certutil", "cert", "--pem",
                              "--silent", *ca_args, "--name", "node",
                              "--ip", "127.0.0.1", "--dns", "localhost",
                              "--out", str(tmp / "node.zip")), "certutil cert")
        finally:
            if client is not None:
                _finish(client, "certutil cert (client)")
    finally:
        _finish(keystore, "elasticsearch-keystore add bootstrap.password", password)
    certs = home / "config" / "certs"
    certs.mkdir()
    for name in ("node", "client") if client_auth else ("node",):
        with zipfile.ZipFile(tmp / f"{name}.zip") as zf:
            zf.extractall(tmp)
    shutil.copy(tmp / "ca" / "ca.crt", certs / "ca.crt")
    shutil.copy(tmp / "node" / "node.crt", certs / "node.crt")
    shutil.copy(tmp / "node" / "node.key", certs / "node.key")
    shutil.rmtree(tmp / "ca")  # the CA key is not needed any more
    _chown_tree(certs, account)


# ------------------------------------------------------------- state

def _node_from_state(state: dict) -> Node:
    work = Path(state["home"])
    client = state.get("client_auth", False)
    return Node(
        url=state["url"], ca_cert=str(work / "ca.crt"),
        api_key_file=str(work / "api_key"), password_file=str(work / "password"),
        password=(work / "password").read_text(),
        api_key=(work / "api_key").read_text() if (work / "api_key").exists() else "",
        version=state["version"], home=str(work), pid=state.get("pid") or 0,
        client_cert=str(work / "client.crt") if client else None,
        client_key=str(work / "client.key") if client else None)


# ------------------------------------------------------------- public API

def _prepare(version: str) -> tuple[Path, Path, pwd.struct_passwd | None]:
    """What a node of `version` needs before its home exists: (JDK, distribution, account).

    Picks the JDK, fetches/unpacks the distribution with the shim plugin, creates
    the node user when root, and lets that user reach the cached distribution.
    """
    java = find_java_home(version)
    dist = fetch_distribution(version, java)
    account = _node_account()
    _grant_search(dist, account)
    return java, dist, account


def start_node(work_dir: Union[str, os.PathLike], version: str | None = None,
               settings: dict[str, Any] | None = None, *, timeout: float = START_TIMEOUT,
               client_auth: bool = False) -> Node:
    """Start a fresh node whose home is `work_dir` (created; any old node home is replaced).

    `settings` are extra elasticsearch.yml entries, e.g. {"thread_pool.write.queue_size": 2}.
    `client_auth`: HTTPS requires a client certificate; the node gets one signed by
    its CA (``Node.client_cert``/``client_key``), which ``request`` presents.
    """
    work = local_node.claim_work_dir(ENGINE, work_dir)
    version = version or default_version()
    t0 = time.monotonic()
    java, dist, account = _prepare(version)
    for name in ("api_key", "password", "ca.crt", "client.crt", "client.key", "state.json"):
        (work / name).unlink(missing_ok=True)
    home = _new_home(work, account)
    http_port = _free_port()
    state = {
        "version": version, "dist": str(dist), "java_home": str(java),
        "url": f"https://127.0.0.1:{http_port}", "http_port": http_port,
        "transport_port": _free_port(exclude=http_port), "home": str(work), "pid": None,
        "node_home": str(home), "client_auth": client_auth,
    }
    _write_config(home, dist, http_port, state["transport_port"], settings, client_auth)
    _chown_tree(home, account)
    password = secrets.token_urlsafe(18)
    _write_private(work / "password", password)
    _make_credentials(state, home, account, password, client_auth)
    shutil.copy(home / "config" / "certs" / "ca.crt", work / "ca.crt")
    (work / "ca.crt").chmod(0o644)
    if client_auth:
        client = home / "tmp" / "client"
        shutil.copy(client / "client.crt", work / "client.crt")
        (work / "client.crt").chmod(0o644)
        _write_private(work / "client.key", (client / "client.key").read_text())
        shutil.rmtree(client)
    _write_state(work, state)
    log.info("prepared node home (Java %s) in %.1fs", java, time.monotonic() - t0)

    node = local_node.boot(ENGINE, state, work, timeout)
    try:
        status, body = request(node, "POST", "/_security/api_key", {"name": "modelscribe-tests"})
        if status != 200 or not isinstance(body, dict) or "encoded" not in body:
            raise HarnessError(f"creating the API key failed: {status} {body}")
    except BaseException:
        stop_node(work)
        raise
    _write_private(work / "api_key", body["encoded"])
    return _node_from_state(state)


def restart_node(node_or_workdir: Union[Node, str, os.PathLike], *,
                 timeout: float = START_TIMEOUT) -> Node:
    """Start again a stopped node: same data, ports, certificates and credentials."""
    return local_node.restart_node(ENGINE, node_or_workdir, timeout)


def stop_node(node_or_workdir: Union[Node, str, os.PathLike], *, grace: float = STOP_GRACE) -> bool:
    """Stop the node's process group: SIGTERM, then SIGKILL after `grace` s.

    Returns True if a running node was stopped.  Uses the pid in the state
    file, so a Node from before a restart_node still stops the current process.
    """
    return local_node.stop_node(ENGINE, node_or_workdir, grace)


def remove_node(node_or_workdir: Union[Node, str, os.PathLike]) -> None:
    """Stop the node and delete its data; its logs are kept in <work>/node-logs."""
    local_node.remove_node(ENGINE, node_or_workdir)


def node_status(work_dir: Union[str, os.PathLike]) -> tuple[Node | None, bool, bool]:
    """(node or None if never started here, process running, node answering)."""
    return local_node.node_status(ENGINE, work_dir)


# One TLS context per (CA, client certificate, client key).
_SSL: dict[tuple[str, str | None, str | None], ssl.SSLContext] = {}


def _ssl_context(node: Node) -> ssl.SSLContext:
    key = (node.ca_cert, node.client_cert, node.client_key)
    if key not in _SSL:
        context = ssl.create_default_context(cafile=node.ca_cert)
        if node.client_cert:
            context.load_cert_chain(node.client_cert, node.client_key)
        _SSL[key] = context
    return _SSL[key]


def request(node: Node, method: str, path: str, body: Any = None, auth: str | None = "password",
            timeout: float = 30.0) -> tuple[int, Any]:
    """One HTTPS request; returns (status, parsed JSON body | text | None).

    `body`: dict/list is sent as JSON; str/bytes as-is (NDJSON for _bulk and
    _msearch).  `auth`: "password" (elastic user), "api_key" or None.  HTTP
    error statuses are returned, not raised; connection errors raise.  The
    node's client certificate, if it has one, is always presented.
    """
    if auth == "password":
        token = base64.b64encode(f"elastic:{node.password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
    elif auth == "api_key":
        headers = {"Authorization": f"ApiKey {node.api_key}"}
    elif auth is None:
        headers = {}
    else:
        raise ValueError(f"auth must be 'password', 'api_key' or None, not {auth!r}")
    return local_node.send(node.url, method, path, body, headers, _ssl_context(node), timeout)


ENGINE = local_node.Engine(product="Elasticsearch", binary="elasticsearch",
                           cluster_name=CLUSTER_NAME, node_env=_node_env,
                           node_from_state=_node_from_state, request=request,
                           launch_cwd="logs")  # gc.log, hs_err land there


# ------------------------------------------------------------- CLI

def _print_env(node: Node) -> None:
    # The client certificate exists only with --client-auth (None: not printed).
    local_node.print_env((("ES_URL", node.url), ("ES_CA_CERT", node.ca_cert),
                          ("ES_API_KEY_FILE", node.api_key_file),
                          ("ES_PASSWORD_FILE", node.password_file),
                          ("ES_VERSION", node.version), ("ES_HOME", node.home),
                          ("ES_CLIENT_CERT", node.client_cert),
                          ("ES_CLIENT_KEY", node.client_key)))


def main(argv: list[str] | None = None) -> int:
    parser = local_node.cli_parser(ENGINE, "elasticsearch.yml", default_version(),
                                   default_work_dir())
    parser.add_argument("--client-auth", action="store_true",
                        help="start only: HTTPS requires a client certificate; one signed by the "
                             "node's CA is made and printed as ES_CLIENT_CERT/ES_CLIENT_KEY")
    args = parser.parse_args(argv)

    def fetch() -> Path:
        version = args.version or default_version()
        java, dist, _ = _prepare(version)
        log.info("Elasticsearch %s ready to start (Java %s)", version, java)
        return dist

    def mismatch(node: Node) -> str | None:
        if args.client_auth and node.client_cert is None:
            return "does not require client certificates"
        return None

    return local_node.cli(
        ENGINE, "elasticsearch-local", args, fetch=fetch, env=_print_env, mismatch=mismatch,
        start=lambda extra: start_node(args.home, args.version, extra,
                                       client_auth=args.client_auth))


if __name__ == "__main__":
    sys.exit(main())
