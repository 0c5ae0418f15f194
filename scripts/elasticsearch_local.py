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

import argparse
import base64
import dataclasses
import json
import logging
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Any, Union

# Fetching the distribution, the JDK and the shim plugin live in
# elasticsearch_dist (next to this file); their public names are re-exported.
try:
    import elasticsearch_dist  # noqa: F401
except ModuleNotFoundError:  # loaded by file path, without scripts/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from elasticsearch_dist import (  # noqa: E402,F401  (re-exported)
    HarnessError, cache_dir, fetch_distribution, find_java_home)

log = logging.getLogger("elasticsearch_local")

DEFAULT_VERSION = "9.2.8"
ES_USER = "modelscribe-es"
CLUSTER_NAME = "modelscribe-test"
HEAP = "-Xms512m -Xmx512m"
START_TIMEOUT = 120.0
STOP_GRACE = 30.0

# Popen objects of nodes this process started: kept so that stop_node can
# reap them (an unreaped Popen raises ResourceWarning under pytest).
_CHILDREN: dict[int, subprocess.Popen] = {}


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


# ------------------------------------------------------------- node account

def _node_account() -> pwd.struct_passwd | None:
    """The account the node runs as: None means the current user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(ES_USER)
    except KeyError:
        pass
    proc = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group",
         "--shell", "/usr/sbin/nologin", ES_USER],
        stdin=subprocess.DEVNULL, capture_output=True, text=True)
    # exit code 9: created meanwhile by a concurrent start.
    if proc.returncode not in (0, 9):
        raise HarnessError(f"could not create user {ES_USER}: {proc.stderr.strip()}")
    return pwd.getpwnam(ES_USER)


def _unreachable(path: Path, account: pwd.struct_passwd | None) -> list[Path]:
    """The directories on the way to `path` that the node user cannot traverse."""
    if account is None:
        return []
    blocked = []
    for directory in reversed([path, *path.parents]):
        st = directory.stat()
        if st.st_uid != account.pw_uid and not st.st_mode & stat.S_IXOTH:
            blocked.append(directory)
    return blocked


def _grant_search(path: Path, account: pwd.struct_passwd | None) -> None:
    """Let the node user traverse every ancestor of the cached distribution.

    The default cache is below /root (0700).  Only the search bit (o+x) is
    added: listings stay private.  Used for the cache only: a node home in a
    private place is relocated instead (see _new_home), because a concurrent
    pytest run resets /tmp/pytest-of-root to 0700 at any time.
    """
    for directory in _unreachable(path, account):
        log.info("adding o+x to %s so %s can reach %s", directory, ES_USER, path)
        directory.chmod(stat.S_IMODE(directory.stat().st_mode) | stat.S_IXOTH)


def _chown_tree(path: Path, account: pwd.struct_passwd | None) -> None:
    if account is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, account.pw_uid, account.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), account.pw_uid, account.pw_gid)


def _as_node_user(account: pwd.struct_passwd | None) -> dict[str, Any]:
    if account is None:
        return {}
    # extra_groups=[] drops root's supplementary groups too.
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


# ------------------------------------------------------------- node home

def _free_port(exclude: int | None = None) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != exclude:
            return port


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


def _new_home(work: Path, account: pwd.struct_passwd | None) -> Path:
    """Create the node home: <work>/node, or a symlink there to a reachable one.

    When the node user cannot traverse down to the work dir (pytest's
    tmp_path, ~/.cache as root), the home is made in the system temp dir and
    <work>/node points to it; remove_node deletes it.
    """
    _discard_home(work)
    if _unreachable(work, account):
        home = Path(tempfile.mkdtemp(prefix="modelscribe-es-node-"))
        (work / "node").symlink_to(home)
    else:
        home = work / "node"
        home.mkdir()
    for sub in ("data", "logs", "tmp"):
        (home / sub).mkdir()
    return home


def _discard_home(work: Path) -> None:
    link = work / "node"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
        link.unlink()
    else:
        shutil.rmtree(link, ignore_errors=True)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


# ------------------------------------------------------------- state file

def _state_path(work: Path) -> Path:
    return work / "state.json"


def _read_state(work: Path) -> dict | None:
    try:
        return json.loads(_state_path(work).read_text())
    except FileNotFoundError:
        return None


def _write_state(work: Path, state: dict) -> None:
    tmp = _state_path(work).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(_state_path(work))


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


def _work_dir_of(node_or_workdir: Union[Node, str, os.PathLike]) -> Path:
    if isinstance(node_or_workdir, Node):
        return Path(node_or_workdir.home)
    return Path(node_or_workdir).resolve()


# ------------------------------------------------------------- processes

def _group_alive(pgid: int | None) -> bool:
    """True while a live (non-zombie) Elasticsearch process is in group `pgid`.

    Scans /proc rather than kill(0): zombies count as alive for kill(), and an
    orphaned node JVM may stay a zombie when PID 1 does not reap.  Requiring
    "elasticsearch" in the command line guards against a reused pid.
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
                if b"elasticsearch" in Path(entry.path, "cmdline").read_bytes():
                    return True
            except (OSError, IndexError, ValueError):
                continue  # the process went away while we looked
    return False


def _launch(state: dict, work: Path) -> int:
    home = Path(state["node_home"])  # the real path: the node user may not pass <work>
    account = _node_account()
    with open(home / "logs" / "console.log", "ab") as console:
        proc = subprocess.Popen(
            [str(Path(state["dist"]) / "bin" / "elasticsearch")],
            env=_node_env(state, home), cwd=home / "logs",  # gc.log, hs_err land here
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group; survives the CLI exiting
            **_as_node_user(account))
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
            raise HarnessError(f"Elasticsearch exited during startup\n{_log_tail(Path(node.home))}")
        try:
            status, _ = request(node, "GET", "/_cluster/health?wait_for_status=yellow&timeout=5s",
                                timeout=10)
            if status == 200:
                return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or TLS not up yet
        if time.monotonic() > deadline:
            raise HarnessError(f"Elasticsearch did not get ready within {timeout:.0f}s\n"
                               f"{_log_tail(Path(node.home))}")
        time.sleep(0.5)


def _boot(state: dict, work: Path, timeout: float) -> Node:
    """Launch from `state` and wait; on failure stop what was launched."""
    t0 = time.monotonic()
    pid = _launch(state, work)
    node = _node_from_state(state)
    try:
        _wait_ready(node, pid, timeout)
    except BaseException:
        stop_node(work)
        raise
    log.info("Elasticsearch %s ready at %s in %.1fs", state["version"], state["url"],
             time.monotonic() - t0)
    return node


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
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    old = _read_state(work)
    if old and _group_alive(old.get("pid")):
        raise HarnessError(f"a node is already running from {work} (pid {old['pid']}); stop it first")
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

    node = _boot(state, work, timeout)
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
    work = _work_dir_of(node_or_workdir)
    state = _read_state(work)
    if state is None:
        raise HarnessError(f"no node state in {work}")
    if _group_alive(state.get("pid")):
        raise HarnessError(f"the node in {work} is still running (pid {state['pid']})")
    return _boot(state, work, timeout)


def stop_node(node_or_workdir: Union[Node, str, os.PathLike], *, grace: float = STOP_GRACE) -> bool:
    """Stop the node's process group: SIGTERM, then SIGKILL after `grace` s.

    Returns True if a running node was stopped.  Uses the pid in the state
    file, so a Node from before a restart_node still stops the current process.
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
        raise HarnessError(f"could not stop Elasticsearch process group {pid}")
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
            # No "GET /" here: its handler lives in a module the integ-test zip lacks.
            answering = request(node, "GET", "/_cluster/health", timeout=5)[0] == 200
        except (urllib.error.URLError, OSError):
            pass
    return node, running, answering


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
        token = base64.b64encode(f"elastic:{node.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif auth == "api_key":
        headers["Authorization"] = f"ApiKey {node.api_key}"
    elif auth is not None:
        raise ValueError(f"auth must be 'password', 'api_key' or None, not {auth!r}")
    req = urllib.request.Request(node.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=_ssl_context(node)) as resp:
            status, raw, rtype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        with err:  # closes the response it carries
            status, raw, rtype = err.code, err.read(), err.headers.get("Content-Type", "")
    if not raw:
        return status, None
    if "json" in rtype:
        return status, json.loads(raw)
    return status, raw.decode(errors="replace")


# ------------------------------------------------------------- CLI

def _print_env(node: Node) -> None:
    for key, value in (("ES_URL", node.url), ("ES_CA_CERT", node.ca_cert),
                       ("ES_API_KEY_FILE", node.api_key_file),
                       ("ES_PASSWORD_FILE", node.password_file),
                       ("ES_VERSION", node.version), ("ES_HOME", node.home),
                       ("ES_CLIENT_CERT", node.client_cert), ("ES_CLIENT_KEY", node.client_key)):
        if value is not None:  # the client certificate exists only with --client-auth
            print(f"{key}={shlex.quote(value)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local Elasticsearch node for modelscribe tests.")
    parser.add_argument("command", choices=["start", "stop", "status", "fetch"],
                        help="fetch: download, unpack and prepare the distribution only, "
                             "print its path")
    parser.add_argument("--version", help=f"Elasticsearch version (default {default_version()})")
    parser.add_argument("--home", type=Path, default=default_work_dir(),
                        help="work dir holding the node (default %(default)s)")
    parser.add_argument("-E", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="extra elasticsearch.yml setting (start only); VALUE is YAML/JSON")
    parser.add_argument("--client-auth", action="store_true",
                        help="start only: HTTPS requires a client certificate; one signed by the "
                             "node's CA is made and printed as ES_CLIENT_CERT/ES_CLIENT_KEY")
    args = parser.parse_args(argv)
    # Progress goes to stderr so that stdout stays shell-evaluable.
    logging.basicConfig(level=logging.INFO, format="elasticsearch-local: %(message)s",
                        stream=sys.stderr)
    # The node is meant to outlive this process: no "still running" warning.
    warnings.filterwarnings("ignore", r"subprocess \d+ is still running", ResourceWarning)
    try:
        if args.command == "fetch":
            version = args.version or default_version()
            java, dist, _ = _prepare(version)
            log.info("Elasticsearch %s ready to start (Java %s)", version, java)
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
                node = start_node(args.home, args.version, extra, client_auth=args.client_auth)
            elif args.version and args.version != node.version:
                raise HarnessError(f"Elasticsearch {node.version} is already running from "
                                   f"{args.home}; stop it first")
            elif args.client_auth and node.client_cert is None:
                raise HarnessError(f"the node running from {args.home} does not require client "
                                   f"certificates; stop it first")
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
                print(f"stopped Elasticsearch (process group {pid})")
            else:
                print(f"no Elasticsearch running from {args.home}")
    except HarnessError as err:
        print(f"elasticsearch-local: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
