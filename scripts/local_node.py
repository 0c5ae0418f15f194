"""What elasticsearch_local.py and opensearch_local.py share: one local node's life.

Both harnesses run one node JVM on 127.0.0.1 out of a work dir; they differ
in how the node home is configured, how credentials are made and how a
request authenticates.  Everything else lives here, parametrised by an
``Engine`` (the product name, its launcher, its ``Node`` and ``request``).

What it guarantees:

* When run as root the node runs as the unprivileged system user
  ``modelscribe-es`` (both Elasticsearch and OpenSearch refuse root), created
  on first use; ``grant_search`` lets it traverse down to the cached
  distribution (search bit only), and a node home it could not reach is made
  in the system temp dir with ``<work>/node`` a symlink to it.
* ``state.json`` is written to a temp file and renamed, so it is always whole.
* ``launch`` starts the node in its own process group (it outlives the CLI)
  with its output in ``<work>/node/logs/console.log``; ``wait_ready`` returns
  once ``/_cluster/health`` reaches yellow, else raises HarnessError with the
  tail of the node's logs; ``boot`` stops what it launched when waiting fails.
* ``stop_node`` stops the whole process group (SIGTERM, SIGKILL after the
  grace period), reaps a child this process started and returns whether a
  node was running; the pid comes from the state file, so a Node from before
  a restart still stops the current process.  ``remove_node`` keeps the logs
  in ``<work>/node-logs`` and deletes the node home.
* ``send`` is the plain-JSON HTTP exchange both ``request`` functions use:
  error statuses are returned, not raised; connection errors raise.
* ``cli`` gives both CLIs the same start/stop/status/fetch behaviour and
  output (shell-evaluable ``ES_*`` lines on stdout, progress on stderr).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pwd
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
from pathlib import Path
from typing import Any, Callable, Union

try:
    import node_dist  # noqa: F401
except ModuleNotFoundError:  # loaded by file path, without scripts/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from node_dist import HarnessError  # noqa: E402

log = logging.getLogger("local_node")

NODE_USER = "modelscribe-es"

# Popen objects of nodes this process started: kept so that stop_node can
# reap them (an unreaped Popen raises ResourceWarning under pytest).
CHILDREN: dict[int, subprocess.Popen] = {}


@dataclasses.dataclass(frozen=True)
class Engine:
    """The product-specific half of a harness."""
    product: str  # "Elasticsearch", in messages
    binary: str  # bin/<binary> starts the node; also in its JVM's command line
    cluster_name: str  # names the node's main log file
    node_env: Callable[[dict, Path], dict]  # (state, node home) -> environment
    node_from_state: Callable[[dict], Any]
    request: Callable[..., tuple[int, Any]]  # the harness's request(node, method, path, ...)
    launch_cwd: str = ""  # below the node home: where relative gc.log/hs_err land


# ------------------------------------------------------------- node account

def node_account() -> pwd.struct_passwd | None:
    """The account the node runs as: None means the current user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(NODE_USER)
    except KeyError:
        pass
    proc = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group",
         "--shell", "/usr/sbin/nologin", NODE_USER],
        stdin=subprocess.DEVNULL, capture_output=True, text=True)
    # exit code 9: created meanwhile by a concurrent start.
    if proc.returncode not in (0, 9):
        raise HarnessError(f"could not create user {NODE_USER}: {proc.stderr.strip()}")
    return pwd.getpwnam(NODE_USER)


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


def grant_search(path: Path, account: pwd.struct_passwd | None) -> None:
    """Let the node user traverse every ancestor of the cached distribution.

    The default cache is below /root (0700).  Only the search bit (o+x) is
    added: listings stay private.  Used for the cache only: a node home in a
    private place is relocated instead (see new_home), because a concurrent
    pytest run resets /tmp/pytest-of-root to 0700 at any time.
    """
    for directory in _unreachable(path, account):
        log.info("adding o+x to %s so %s can reach %s", directory, NODE_USER, path)
        directory.chmod(stat.S_IMODE(directory.stat().st_mode) | stat.S_IXOTH)


def chown_tree(path: Path, account: pwd.struct_passwd | None) -> None:
    if account is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, account.pw_uid, account.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), account.pw_uid, account.pw_gid)


def as_node_user(account: pwd.struct_passwd | None) -> dict[str, Any]:
    if account is None:
        return {}
    # extra_groups=[] drops root's supplementary groups too.
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


# ------------------------------------------------------------- node home

def free_port(exclude: int | None = None) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != exclude:
            return port


def new_home(work: Path, account: pwd.struct_passwd | None) -> Path:
    """Create the node home: <work>/node, or a symlink there to a reachable one.

    When the node user cannot traverse down to the work dir (pytest's
    tmp_path, ~/.cache as root), the home is made in the system temp dir and
    <work>/node points to it; remove_node deletes it.
    """
    discard_home(work)
    if _unreachable(work, account):
        home = Path(tempfile.mkdtemp(prefix="modelscribe-es-node-"))
        (work / "node").symlink_to(home)
    else:
        home = work / "node"
        home.mkdir()
    for sub in ("data", "logs", "tmp"):
        (home / sub).mkdir()
    return home


def discard_home(work: Path) -> None:
    link = work / "node"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
        link.unlink()
    else:
        shutil.rmtree(link, ignore_errors=True)


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


# ------------------------------------------------------------- state file

def read_state(work: Path) -> dict | None:
    try:
        return json.loads((work / "state.json").read_text())
    except FileNotFoundError:
        return None


def write_state(work: Path, state: dict) -> None:
    tmp = work / "state.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(work / "state.json")


def work_dir_of(node_or_workdir: Union[Any, str, os.PathLike]) -> Path:
    """The work dir of a Node (its ``home``) or of a path."""
    if isinstance(node_or_workdir, (str, os.PathLike)):
        return Path(node_or_workdir).resolve()
    return Path(node_or_workdir.home)


def claim_work_dir(engine: Engine, work_dir: Union[str, os.PathLike]) -> Path:
    """The resolved work dir, created; HarnessError if a node is running from it."""
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    old = read_state(work)
    if old and _alive(engine, old.get("pid")):
        raise HarnessError(f"a node is already running from {work} (pid {old['pid']}); stop it first")
    return work


# ------------------------------------------------------------- processes

def group_alive(pgid: int | None, marker: bytes = b"") -> bool:
    """True while a live (non-zombie) node process is in process group `pgid`.

    Scans /proc rather than kill(0): zombies count as alive for kill(), and an
    orphaned node JVM may stay a zombie when PID 1 does not reap.  Requiring
    `marker` ("elasticsearch", "opensearch") in the command line guards
    against a reused pid.
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
                if marker in Path(entry.path, "cmdline").read_bytes():
                    return True
            except (OSError, IndexError, ValueError):
                continue  # the process went away while we looked
    return False


def _alive(engine: Engine, pid: int | None) -> bool:
    return group_alive(pid, engine.binary.encode())


def launch(engine: Engine, state: dict, work: Path) -> int:
    home = Path(state["node_home"])  # the real path: the node user may not pass <work>
    with open(home / "logs" / "console.log", "ab") as console:
        proc = subprocess.Popen(
            [str(Path(state["dist"]) / "bin" / engine.binary)],
            env=engine.node_env(state, home), cwd=home / engine.launch_cwd,
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group; survives the CLI exiting
            **as_node_user(node_account()))
    CHILDREN[proc.pid] = proc
    state["pid"] = proc.pid
    write_state(work, state)
    return proc.pid


def log_tail(engine: Engine, work: Path, lines: int = 60) -> str:
    out = []
    for name in (f"{engine.cluster_name}.log", "console.log"):
        path = work / "node" / "logs" / name
        if path.exists():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- tail of {path} ---\n" + "\n".join(text))
    return "\n".join(out) or f"(no log files under {work / 'node' / 'logs'})"


def wait_ready(engine: Engine, node: Any, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        child = CHILDREN.get(pid)
        if child is not None:
            child.poll()
        # Dead only if still so half a second later: one CI run saw a node that
        # went on running reported gone during its start-up (a /proc read).
        if not _alive(engine, pid) and (time.sleep(0.5) or not _alive(engine, pid)):
            raise HarnessError(f"{engine.product} exited during startup\n"
                               f"{log_tail(engine, Path(node.home))}")
        try:
            # A secured OpenSearch answers 503 until its security index is initialised.
            status, _ = engine.request(node, "GET",
                                       "/_cluster/health?wait_for_status=yellow&timeout=5s",
                                       timeout=10)
            if status == 200:
                return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or TLS not up yet
        if time.monotonic() > deadline:
            raise HarnessError(f"{engine.product} did not get ready within {timeout:.0f}s\n"
                               f"{log_tail(engine, Path(node.home))}")
        time.sleep(0.5)


def boot(engine: Engine, state: dict, work: Path, timeout: float) -> Any:
    """Launch from `state` and wait; on failure stop what was launched."""
    t0 = time.monotonic()
    pid = launch(engine, state, work)
    node = engine.node_from_state(state)
    try:
        wait_ready(engine, node, pid, timeout)
    except BaseException:
        stop_node(engine, work, 30.0)
        raise
    log.info("%s %s ready at %s in %.1fs", engine.product, state["version"], state["url"],
             time.monotonic() - t0)
    return node


def restart_node(engine: Engine, node_or_workdir, timeout: float) -> Any:
    work = work_dir_of(node_or_workdir)
    state = read_state(work)
    if state is None:
        raise HarnessError(f"no node state in {work}")
    if _alive(engine, state.get("pid")):
        raise HarnessError(f"the node in {work} is still running (pid {state['pid']})")
    return boot(engine, state, work, timeout)


def stop_node(engine: Engine, node_or_workdir, grace: float) -> bool:
    work = work_dir_of(node_or_workdir)
    state = read_state(work)
    if state is None or not state.get("pid"):
        return False
    pid = state["pid"]
    child = CHILDREN.pop(pid, None)
    was_alive = _alive(engine, pid)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if not _alive(engine, pid):
            break
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if child is not None:
                child.poll()
            if not _alive(engine, pid):
                break
            time.sleep(0.2)
    if _alive(engine, pid):
        raise HarnessError(f"could not stop {engine.product} process group {pid}")
    if child is not None:
        child.wait()
    state["pid"] = None
    write_state(work, state)
    return was_alive


def remove_node(engine: Engine, node_or_workdir) -> None:
    work = work_dir_of(node_or_workdir)
    stop_node(engine, work, 30.0)
    logs = work / "node" / "logs"
    if (work / "node").is_symlink() and logs.is_dir():
        shutil.rmtree(work / "node-logs", ignore_errors=True)
        shutil.copytree(logs, work / "node-logs")
    discard_home(work)


def node_status(engine: Engine, work_dir) -> tuple[Any, bool, bool]:
    work = Path(work_dir).resolve()
    state = read_state(work)
    if state is None or not (work / "password").exists():
        return None, False, False
    node = engine.node_from_state(state)
    running = _alive(engine, state.get("pid"))
    answering = False
    if running:
        try:
            # No "GET /": the Elasticsearch integ-test zip lacks its handler.
            answering = engine.request(node, "GET", "/_cluster/health", timeout=5)[0] == 200
        except (urllib.error.URLError, OSError):
            pass
    return node, running, answering


# ------------------------------------------------------------- HTTP

def send(url: str, method: str, path: str, body: Any, headers: dict[str, str],
         context: ssl.SSLContext | None, timeout: float) -> tuple[int, Any]:
    """One request; returns (status, parsed JSON body | text | None).

    `body`: dict/list is sent as JSON; str/bytes as-is (NDJSON for _bulk and
    _msearch).  `headers` carry the authentication.
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
    headers = {"Accept": "application/json", "Content-Type": ctype, **headers}
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
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

def print_env(pairs) -> None:
    """``KEY=value`` lines a shell can eval; a None value is left out."""
    for key, value in pairs:
        if value is not None:
            print(f"{key}={shlex.quote(value)}")


def cli_parser(engine: Engine, yml: str, version: str, work_dir: Path) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=f"Local {engine.product} node for modelscribe tests.")
    parser.add_argument("command", choices=["start", "stop", "status", "fetch"],
                        help="fetch: download and prepare the distribution only, print its path")
    parser.add_argument("--version", help=f"{engine.product} version (default {version})")
    parser.add_argument("--home", type=Path, default=work_dir,
                        help="work dir holding the node (default %(default)s)")
    parser.add_argument("-E", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help=f"extra {yml} setting (start only); VALUE is YAML/JSON")
    return parser


def cli(engine: Engine, prog: str, args: argparse.Namespace, *, fetch: Callable[[], Path],
        start: Callable[[dict], Any], mismatch: Callable[[Any], str | None],
        env: Callable[[Any], None]) -> int:
    """Run one command; `start(settings)` starts a node, `mismatch(node)` says why a
    running one does not fit the arguments (None: it fits), `env(node)` prints it."""
    # Progress goes to stderr so that stdout stays shell-evaluable.
    logging.basicConfig(level=logging.INFO, format=f"{prog}: %(message)s", stream=sys.stderr)
    # The node is meant to outlive this process: no "still running" warning.
    warnings.filterwarnings("ignore", r"subprocess \d+ is still running", ResourceWarning)
    try:
        if args.command == "fetch":
            print(fetch())
        elif args.command == "start":
            node, running, answering = node_status(engine, args.home)
            if node is None or not answering:
                if running:
                    stop_node(engine, args.home, 30.0)
                extra = {}
                for item in args.settings:
                    key, _, value = item.partition("=")
                    try:
                        extra[key] = json.loads(value)
                    except ValueError:
                        extra[key] = value
                node = start(extra)
            elif args.version and args.version != node.version:
                raise HarnessError(f"{engine.product} {node.version} is already running from "
                                   f"{args.home}; stop it first")
            elif (why := mismatch(node)) is not None:
                raise HarnessError(f"the node running from {args.home} {why}; stop it first")
            env(node)
        elif args.command == "status":
            node, running, answering = node_status(engine, args.home)
            if node is None:
                print(f"ES_STATUS=absent  # no node in {args.home}")
                return 1
            env(node)
            print(f"ES_PID={node.pid if running else ''}")
            print(f"ES_STATUS={'answering' if answering else 'running' if running else 'stopped'}")
            return 0 if answering else 1
        else:
            pid = (read_state(args.home.resolve()) or {}).get("pid")
            if stop_node(engine, args.home, 30.0):
                print(f"stopped {engine.product} (process group {pid})")
            else:
                print(f"no {engine.product} running from {args.home}")
    except HarnessError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    return 0
