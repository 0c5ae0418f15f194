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

import argparse
import base64
import dataclasses
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Union

try:
    import opensearch_dist  # noqa: F401
except ModuleNotFoundError:  # loaded by file path, without scripts/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from opensearch_dist import (  # noqa: E402,F401  (re-exported)
    SECURITY_PLUGIN, HarnessError, cache_dir, fetch_distribution, find_java_home, has_security)
# Generic process/home helpers shared with the Elasticsearch harness (node
# account when root, free ports, node homes reachable by that account).
from elasticsearch_local import (  # noqa: E402
    _as_node_user, _chown_tree, _discard_home, _free_port, _grant_search, _new_home,
    _node_account, _write_private)
import opensearch_security  # noqa: E402

log = logging.getLogger("opensearch_local")

DEFAULT_VERSION = "2.19.1"
CLUSTER_NAME = "modelscribe-os-test"
USERNAME = "admin"
HEAP = "-Xms512m -Xmx512m"
START_TIMEOUT = 240.0  # a loaded 2-core CI machine: secured first start took up to ~60 s here
STOP_GRACE = 30.0

_CHILDREN: dict[int, subprocess.Popen] = {}


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


# ------------------------------------------------------------- state file

def _read_state(work: Path) -> dict | None:
    try:
        return json.loads((work / "state.json").read_text())
    except FileNotFoundError:
        return None


def _write_state(work: Path, state: dict) -> None:
    tmp = work / "state.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(work / "state.json")


def _node_from_state(state: dict) -> Node:
    work = Path(state["home"])
    secure = state["security"]
    return Node(url=state["url"], ca_cert=str(work / "ca.crt") if secure else "",
                api_key_file="", password_file=str(work / "password"),
                password=(work / "password").read_text(), api_key="",
                version=state["version"], home=str(work), pid=state.get("pid") or 0,
                security=secure)


def _work_dir_of(node_or_workdir: Union[Node, str, os.PathLike]) -> Path:
    if isinstance(node_or_workdir, Node):
        return Path(node_or_workdir.home)
    return Path(node_or_workdir).resolve()


# ------------------------------------------------------------- processes

def _group_alive(pgid: int | None) -> bool:
    """True while a live (non-zombie) OpenSearch JVM is in process group `pgid`.

    /proc rather than kill(0): zombies count as alive for kill().  Requiring
    the OpenSearch main class in the command line guards against a reused pid.
    """
    if not pgid:
        return False
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] == "Z" or int(fields[2]) != pgid:
                    continue
                if b"opensearch" in Path(entry.path, "cmdline").read_bytes():
                    return True
            except (OSError, IndexError, ValueError):
                continue
    return False


def _launch(state: dict, work: Path) -> int:
    home = Path(state["node_home"])
    with open(home / "logs" / "console.log", "ab") as console:
        proc = subprocess.Popen(
            [str(Path(state["dist"]) / "bin" / "opensearch")],
            env=_node_env(state, home), cwd=home, stdin=subprocess.DEVNULL, stdout=console,
            stderr=subprocess.STDOUT, start_new_session=True,
            **_as_node_user(_node_account()))
    _CHILDREN[proc.pid] = proc
    state["pid"] = proc.pid
    _write_state(work, state)
    return proc.pid


def _log_tail(work: Path, lines: int = 60) -> str:
    out = []
    for name in (f"{CLUSTER_NAME}.log", "console.log"):
        path = work / "node" / "logs" / name
        if path.exists():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- tail of {path} ---\n" + "\n".join(text))
    return "\n".join(out) or f"(no log files under {work / 'node' / 'logs'})"


def _wait_ready(node: Node, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        child = _CHILDREN.get(pid)
        if child is not None:
            child.poll()
        if not _group_alive(pid):
            raise HarnessError(f"OpenSearch exited during startup\n{_log_tail(Path(node.home))}")
        try:
            # Secured, this answers 503 until the security index is initialised.
            status, _ = request(node, "GET", "/_cluster/health?wait_for_status=yellow&timeout=5s",
                                timeout=10)
            if status == 200:
                return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise HarnessError(f"OpenSearch did not get ready within {timeout:.0f}s\n"
                               f"{_log_tail(Path(node.home))}")
        time.sleep(0.5)


def _boot(state: dict, work: Path, timeout: float) -> Node:
    t0 = time.monotonic()
    pid = _launch(state, work)
    node = _node_from_state(state)
    try:
        _wait_ready(node, pid, timeout)
    except BaseException:
        stop_node(work)
        raise
    log.info("OpenSearch %s ready at %s in %.1fs", state["version"], state["url"],
             time.monotonic() - t0)
    return node


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
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    old = _read_state(work)
    if old and _group_alive(old.get("pid")):
        raise HarnessError(f"a node is already running from {work} (pid {old['pid']}); stop it first")
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
    return _boot(state, work, timeout)


def restart_node(node_or_workdir: Union[Node, str, os.PathLike], *,
                 timeout: float = START_TIMEOUT) -> Node:
    """Start again a stopped node: same data, ports and credentials."""
    work = _work_dir_of(node_or_workdir)
    state = _read_state(work)
    if state is None:
        raise HarnessError(f"no node state in {work}")
    if _group_alive(state.get("pid")):
        raise HarnessError(f"the node in {work} is still running (pid {state['pid']})")
    return _boot(state, work, timeout)


def stop_node(node_or_workdir: Union[Node, str, os.PathLike], *, grace: float = STOP_GRACE) -> bool:
    """Stop the node's process group: SIGTERM, then SIGKILL after `grace` s.

    Returns True if a running node was stopped.
    """
    work = _work_dir_of(node_or_workdir)
    state = _read_state(work)
    if state is None or not state.get("pid"):
        return False
    pid = state["pid"]
    child = _CHILDREN.pop(pid, None)
    was_alive = _group_alive(pid)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if not _group_alive(pid):
            break
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if child is not None:
                child.poll()
            if not _group_alive(pid):
                break
            time.sleep(0.2)
    if _group_alive(pid):
        raise HarnessError(f"could not stop OpenSearch process group {pid}")
    if child is not None:
        child.wait()
    state["pid"] = None
    _write_state(work, state)
    return was_alive


def remove_node(node_or_workdir: Union[Node, str, os.PathLike]) -> None:
    """Stop the node and delete its data; its logs are kept in <work>/node-logs."""
    work = _work_dir_of(node_or_workdir)
    stop_node(work)
    logs = work / "node" / "logs"
    if (work / "node").is_symlink() and logs.is_dir():
        shutil.rmtree(work / "node-logs", ignore_errors=True)
        shutil.copytree(logs, work / "node-logs")
    _discard_home(work)


def node_status(work_dir: Union[str, os.PathLike]) -> tuple[Node | None, bool, bool]:
    """(node or None if never started here, process running, node answering)."""
    work = Path(work_dir).resolve()
    state = _read_state(work)
    if state is None or not (work / "password").exists():
        return None, False, False
    node = _node_from_state(state)
    running = _group_alive(state.get("pid"))
    answering = False
    if running:
        try:
            answering = request(node, "GET", "/_cluster/health", timeout=5)[0] == 200
        except (urllib.error.URLError, OSError):
            pass
    return node, running, answering


_SSL: dict[str, ssl.SSLContext] = {}


def request(node: Node, method: str, path: str, body: Any = None, auth: str | None = "password",
            timeout: float = 30.0) -> tuple[int, Any]:
    """One request; returns (status, parsed JSON body | text | None).

    `body`: dict/list is sent as JSON; str/bytes as-is (NDJSON for _bulk).
    `auth`: "password" (the admin user; ignored by an insecure node) or None.
    HTTP error statuses are returned, not raised; connection errors raise.
    """
    data: bytes | None = None
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
    elif body is not None:
        data = bytes(body)
    endpoint = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    ctype = "application/x-ndjson" if endpoint in ("_bulk", "_msearch") else "application/json"
    headers = {"Accept": "application/json", "Content-Type": ctype}
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
    req = urllib.request.Request(node.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            status, raw, rtype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        with err:
            status, raw, rtype = err.code, err.read(), err.headers.get("Content-Type", "")
    if not raw:
        return status, None
    if "json" in rtype:
        return status, json.loads(raw)
    return status, raw.decode(errors="replace")


# ------------------------------------------------------------- CLI

def _print_env(node: Node) -> None:
    # Same names as elasticsearch-local; ES_API_KEY_FILE is empty (no API keys
    # in OpenSearch), ES_USERNAME says which user the password belongs to.
    for key, value in (("ES_URL", node.url), ("ES_CA_CERT", node.ca_cert),
                       ("ES_API_KEY_FILE", node.api_key_file),
                       ("ES_PASSWORD_FILE", node.password_file if node.security else ""),
                       ("ES_USERNAME", node.username if node.security else ""),
                       ("ES_VERSION", node.version), ("ES_HOME", node.home),
                       ("ES_FLAVOR", "opensearch")):
        print(f"{key}={shlex.quote(value)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local OpenSearch node for modelscribe tests.")
    parser.add_argument("command", choices=["start", "stop", "status", "fetch"],
                        help="fetch: download and assemble the distribution only, print its path")
    parser.add_argument("--version", help=f"OpenSearch version (default {default_version()})")
    parser.add_argument("--home", type=Path, default=default_work_dir(),
                        help="work dir holding the node (default %(default)s)")
    parser.add_argument("-E", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="extra opensearch.yml setting (start only); VALUE is YAML/JSON")
    parser.add_argument("--insecure", action="store_true",
                        help="start only: no security plugin, plain HTTP, no authentication")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="opensearch-local: %(message)s",
                        stream=sys.stderr)
    warnings.filterwarnings("ignore", r"subprocess \d+ is still running", ResourceWarning)
    try:
        if args.command == "fetch":
            version = args.version or default_version()
            java, dist, _ = _prepare(version)
            log.info("OpenSearch %s ready to start (Java %s, security plugin: %s)", version,
                     java, "yes" if has_security(dist) else "no")
            print(dist)
        elif args.command == "start":
            node, running, answering = node_status(args.home)
            if node is None or not answering:
                if running:
                    stop_node(args.home)
                extra = {}
                for item in args.settings:
                    key, _, value = item.partition("=")
                    try:
                        extra[key] = json.loads(value)
                    except ValueError:
                        extra[key] = value
                node = start_node(args.home, args.version, extra, security=not args.insecure)
            elif args.version and args.version != node.version:
                raise HarnessError(f"OpenSearch {node.version} is already running from "
                                   f"{args.home}; stop it first")
            elif node.security == args.insecure:
                raise HarnessError(f"the node running from {args.home} has security "
                                   f"{'on' if node.security else 'off'}; stop it first")
            _print_env(node)
        elif args.command == "status":
            node, running, answering = node_status(args.home)
            if node is None:
                print(f"ES_STATUS=absent  # no node in {args.home}")
                return 1
            _print_env(node)
            print(f"ES_PID={node.pid if running else ''}")
            print(f"ES_STATUS={'answering' if answering else 'running' if running else 'stopped'}")
            return 0 if answering else 1
        else:
            pid = (_read_state(args.home.resolve()) or {}).get("pid")
            if stop_node(args.home):
                print(f"stopped OpenSearch (process group {pid})")
            else:
                print(f"no OpenSearch running from {args.home}")
    except HarnessError as err:
        print(f"opensearch-local: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
