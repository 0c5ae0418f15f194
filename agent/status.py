"""``modelscribe status``: what the agent has delivered and what it owes.

The running daemon writes ``STATE_DIR/status.json`` every second (atomic,
0600, versioned)::

    {"version": 1, "pid": 1234, "started": 1767225600.0, "updated": 1767225660.0,
     "process_start": 81234567, "pid_namespace": "pid:[4026531836]",
     "counters": {"lines_read": ..., "events_acked": ..., ...}, "last_error": "..." | null,
     "spool": {"used_bytes": ..., "max_bytes": ..., "oldest_unacked_age": ...,
               "paused": bool, "held": ...,
               "disk_full": {"for": seconds, "error": "...", "writing": bool} | null} | null,
     "waiting": {"files": N, "first": PATH} | null}   (absent in files of older agents)

``process_start`` (the writer's start time in clock ticks since boot, field
22 of ``/proc/PID/stat``) and ``pid_namespace`` (``/proc/self/ns/pid``) are
optional: written where Linux has them, so that ``pid`` can be told apart
from a later process that got the same number. ``"stopped": <time>``
(optional) is added by the agent's last write, just before it exits
(``mark_stopped``); an agent that was killed or crashed never writes it.

Compatibility rule of the format: a reader ignores keys it does not know and
does without the optional ones, so adding an optional key keeps version 1
(an older ``status`` reads the file as before; a file an older agent wrote
lacks them and is judged by ``updated`` alone). ``version`` changes only when
a key changes its meaning or goes away; a reader reports a version it does
not know as a file it cannot use, and never guesses.

``report(state_dir, dead_letter_path)`` reads it together with the registry
and the dead-letter file, never modifying any of them, so it works for a
running or a stopped agent. It guarantees:

- A state directory that does not exist, or that this user cannot read (or
  whose ``registry.json`` this user cannot read), is a ``StateError`` (exit
  code 1) naming ``--state-dir`` (and the file): an empty report would look
  like an agent with nothing to do. The hint to run status as the agent's
  user, or root, comes only with a permission error.
- For the same reason a damaged ``registry.json`` or ``status.json`` (not
  JSON, the wrong shape, a version this code does not know) is never shown
  as an empty, healthy state: it is listed in ``problems`` (the file and what
  is wrong), the report holds what could be read, and ``status`` exits 1. The
  registry is judged by the agent's own parser (``Registry``), so "damaged"
  here is exactly what the agent would move aside at its next start; a
  registry of another version is said to be "written by another version of
  modelscribe", as the agent says (a downgrade, not damage), and a directory
  in its place is named as one (the agent refuses to start with it).
- The agent is said to be ``running`` only when that is known (``state``):
  ``running``: the file does not say ``stopped``, its pid is alive, is the
  process that wrote the file (same start time, where both are known) and
  the file is fresh (rewritten within ``STALE_AFTER`` seconds); ``not
  responding``: the pid is the agent's own process but the file is stale
  (stuck, or in a long shutdown); ``not running``: no status file, the file
  says ``stopped``, the pid is gone (or a zombie), or it now belongs to
  another process (PID reuse, a reboot); ``unknown``: the file is damaged,
  or the pid is alive but cannot be told apart from another process (no
  start time to compare, another PID namespace such as a container's) and
  the file is stale. A pid this user may not signal (EPERM) only counts as
  alive, never as the agent.
- Dead-letter lines that are not letters are counted and named, also in the
  text form.
- With a ``--dead-letter-index`` (flag, variable or config file), the
  letters go to that index and only those it could not take to the file:
  the report names the index and says that ``dlq list`` counts its letters
  (``status`` never queries the node), so a 0 for the file is not read as
  "no dead letters".
- A file name that is not valid UTF-8 is shown in the registry's readable
  form (``\\xNN`` escapes) and stat'ed by its exact bytes.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict
from typing import Any

import orjson

from agent.atomic import write_atomic
from agent.errors import StateError
from agent.outputs.dead_letter import read_letters, summarize
from agent.registry import FILE_NAME as REGISTRY_FILE, Entry, Registry, owner_name, path_to_json
from agent.stats import Snapshot

STATUS_FILE = "status.json"
STATUS_VERSION = 1
# The daemon rewrites status.json every second; a slow save or a reload may
# hold its main loop a few seconds. Older than this, the writer is not
# taken to be alive on the file's word alone.
STALE_AFTER = 10.0
RUNNING, NOT_RESPONDING, NOT_RUNNING, UNKNOWN = "running", "not responding", "not running", "unknown"
_SHOWN_LINE_NUMBERS = 10  # of unreadable dead-letter lines


_NOT_COUNTERS = ("last_error", "last_error_at", "last_ack_at")


def write_status(state_dir: str, started: float, snapshot: Snapshot, spool: dict[str, Any] | None,
                 waiting: dict[str, Any] | None = None) -> None:
    """``waiting``: ``{"files": N, "first": PATH}`` while matched files wait for an open-file slot."""
    body = orjson.dumps({"version": STATUS_VERSION, "pid": os.getpid(), **_own_identity(), "started": started,
                         "updated": time.time(), "counters": {k: v for k, v in asdict(snapshot).items()
                                                              if k not in _NOT_COUNTERS},
                         "last_error": snapshot.last_error, "last_error_at": snapshot.last_error_at,
                         "last_ack_at": snapshot.last_ack_at, "spool": spool, "waiting": waiting})
    write_atomic(os.path.join(state_dir, STATUS_FILE), body, prefix=".status.json.")


def mark_stopped(state_dir: str) -> None:
    """Add ``"stopped": <time>`` to this process's status file: its last
    words before it exits, so that ``status`` need not wait for the file to
    go stale (nor guess, for a pid it cannot check). Best effort: if it
    cannot, ``status`` judges by the pid and the file's age instead."""
    path = os.path.join(state_dir, STATUS_FILE)
    try:
        status = _load_status(path)
        if status is not None and status["pid"] == os.getpid():  # never another agent's file
            status["stopped"] = time.time()
            write_atomic(path, orjson.dumps(status), prefix=".status.json.")
    except (OSError, ValueError):
        pass  # a failing status write was logged by the agent already


# -- telling the agent's process from another one ------------------------------

def _proc_stat(pid: int | str) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process, from
    ``/proc/PID/stat``; None where that cannot be read (not Linux, hidepid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    # Field 2, the command name, is in parentheses and may itself hold spaces
    # or ')': the fields that follow start after the last ')'.
    fields = raw[raw.rfind(b")") + 1:].split()
    try:
        return fields[0].decode("ascii", "replace"), int(fields[19])  # fields 3 and 22
    except (IndexError, ValueError):
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


@functools.cache
def _own_identity() -> dict[str, Any]:
    """The optional keys that identify the writing process (a process keeps them for life)."""
    own: dict[str, Any] = {}
    stat = _proc_stat("self")
    if stat is not None:
        own["process_start"] = stat[1]
    namespace = _pid_namespace()
    if namespace is not None:
        own["pid_namespace"] = namespace
    return own


def _whose(status: dict[str, Any]) -> tuple[str, str]:
    """Who has the status file's pid now, and why it is thought so: "same"
    (the writer), "other", "gone", "unverified" (alive, but which process it
    is cannot be told) or "elsewhere" (another PID namespace: not checkable)."""
    pid = status["pid"]
    namespace = status.get("pid_namespace")
    if isinstance(namespace, str) and namespace != _pid_namespace():
        return "elsewhere", f"pid {pid} is in another PID namespace (a container?) and cannot be checked from here"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone", f"pid {pid} has exited"
    except PermissionError:
        pass  # another user's process: alive, and which one is told below, not assumed
    stat = _proc_stat(pid)
    if stat is None:
        return "unverified", f"pid {pid} exists, but its start time cannot be read here"
    state, start = stat
    if state == "Z":
        return "gone", f"pid {pid} has exited (not yet reaped)"
    recorded = status.get("process_start")
    if not isinstance(recorded, int) or isinstance(recorded, bool):
        return "unverified", (f"pid {pid} exists, but status.json does not record the agent's start time "
                              "(written by an older agent?)")
    if recorded != start:
        return "other", f"pid {pid} now belongs to another process (its start time differs from the agent's)"
    return "same", ""


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _agent(status: dict[str, Any] | None, damaged: bool, now: float) -> dict[str, Any]:
    """The ``agent`` part of the report: ``state`` (see the module docstring),
    ``detail`` (why, in words), ``running`` (True: alive, False: not, None: unknown)."""
    unknown = {"pid": None, "started": None, "updated": None, "age": None}
    if status is None and damaged:
        return {"state": UNKNOWN, "running": None, "detail": "status.json cannot be used, see the error", **unknown}
    if status is None:
        return {"state": NOT_RUNNING, "running": False, "detail": "no status.json: no agent has written one here",
                **unknown}
    pid, updated = status["pid"], status["updated"]
    if status.get("stopped") is not None:
        return {"state": NOT_RUNNING, "running": False, "detail": f"pid {pid} stopped at {_when(status['stopped'])}",
                "pid": pid, "started": status.get("started"), "updated": updated, "age": None}
    age = max(0.0, now - updated)  # a clock stepped back makes the file look new, never older
    fresh = age <= STALE_AFTER
    whose, why = _whose(status)
    last = f"status.json last written {_when(updated)}, {age:.0f}s ago"
    if whose in ("gone", "other"):
        state, running, detail = NOT_RUNNING, False, f"{why}; {last}"
    elif fresh:  # the writer was alive seconds ago: a reused pid is not that quick
        state, running, detail = RUNNING, True, "in another PID namespace" if whose == "elsewhere" else ""
    elif whose == "same":
        state, running, detail = NOT_RESPONDING, True, (f"pid {pid} is alive but has not rewritten status.json "
                                                         f"for {age:.0f}s: stuck, in a long shutdown, or its state directory "
                                                         "cannot be written (a full disk: see its log)")
    else:
        state, running, detail = UNKNOWN, None, f"stopped, or not responding: {last}; {why}"
    return {"state": state, "running": running, "detail": detail, "pid": pid, "started": status.get("started"),
            "updated": updated, "age": round(age, 1)}


# -- reading the files -----------------------------------------------------------

def _read(path: str) -> bytes | None:
    """The file's bytes, None if it does not exist; OSError otherwise."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _load_status(path: str) -> dict[str, Any] | None:
    """status.json checked against the format above; ValueError says what is wrong."""
    raw = _read(path)
    if raw is None:
        return None
    try:
        status = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error})") from None
    if not isinstance(status, dict):
        raise ValueError("not a JSON object")
    if status.get("version") != STATUS_VERSION:
        raise ValueError(f"version {status.get('version')!r}, and this modelscribe reads version {STATUS_VERSION} "
                         "(written by another version of the agent?)")
    shapes = {"pid": (int,), "started": (int, float), "updated": (int, float), "counters": (dict,),
              "last_error": (str, type(None)), "spool": (dict, type(None)), "stopped": (int, float, type(None))}
    for key, types in shapes.items():
        value = status.get(key)
        # bool is an int in Python; true where a number belongs is damage.
        if not isinstance(value, types) or isinstance(value, bool):
            raise ValueError(f"{key!r} is missing or has the wrong type")
    if status["pid"] <= 0:
        raise ValueError(f"'pid' is {status['pid']}")
    return status


def _load_registry(path: str) -> list[Entry]:
    """The registry's entries, by the agent's own parser; ValueError says what is wrong."""
    try:
        raw = _read(path)
    except IsADirectoryError:
        raise ValueError("a directory, not the registry file: `modelscribe run` refuses to start with it (exit "
                         "code 2; move it away: the agent then reads every file again from its start)") from None
    if raw is None:
        return []  # an agent that has not saved offsets yet
    try:
        entries, _ = Registry._parse(raw)  # the agent's reading, so status and the agent agree on damage
    except ValueError as error:
        # The agent's words too (``Registry._move_aside``): after a downgrade, not damage.
        what = ("written by another version of modelscribe" if str(error).startswith("unknown version")
                else "damaged")
        raise ValueError(f"{what} ({error}); an agent starting with it moves it aside and reads every file "
                         "again from its start") from None
    return entries


def _check_state_dir(state_dir: str, origin: str) -> None:
    """Raise StateError unless ``state_dir`` is a directory this user can read."""
    given = "" if origin.startswith("flag") else " (the default)" if origin == "default" else f" (from {origin})"
    if not os.path.isdir(state_dir):
        what = "is not a directory" if os.path.exists(state_dir) else "does not exist"
        raise StateError(f"--state-dir {state_dir}{given}: {what}; no agent has run with this state "
                         "directory (give the one `modelscribe run` uses)")
    hint = " (run status as the agent's user, or root)"
    try:
        os.listdir(state_dir)
    except OSError as error:
        raise StateError(f"--state-dir {state_dir}{given}: cannot read it: {error.strerror}"
                         f"{hint if isinstance(error, PermissionError) else ''}") from error
    registry = os.path.join(state_dir, REGISTRY_FILE)
    try:
        with open(registry, "rb"):
            pass
    except PermissionError as error:
        mine, theirs = owner_name(registry), owner_name(state_dir)
        if mine is not None and theirs is not None and mine != theirs:  # (a ``sudo modelscribe run`` left it)
            hint = (f" (it belongs to {mine}, the state directory to {theirs}: the agent cannot read it either; "
                    f"give it back: chown {theirs}: {registry})")
        raise StateError(f"--state-dir {state_dir}{given}: cannot read {registry}: {error.strerror}{hint}") from error
    except OSError:
        pass  # none yet (an agent that has not saved offsets), or a directory: a problem ``report`` names


def _file(entry: Entry) -> dict[str, Any]:
    try:
        info = os.stat(entry.path)  # surrogateescape text: the name's exact bytes
        same = info.st_ino == entry.inode and info.st_dev == entry.dev
        size: int | None = info.st_size if same else None
    except (OSError, ValueError):  # ValueError: a NUL in a damaged name; the file counts as gone
        size = None
    return {"path": path_to_json(entry.path)["path"],  # shown: readable even for a name that is not UTF-8
            "key": entry.key, "dev": entry.dev, "inode": entry.inode, "generation": entry.generation,
            "offset": entry.offset, "size": size,
            "lag_bytes": max(0, size - entry.offset) if size is not None else None}


def report(state_dir: str, dead_letter_path: str, origin: str = "default", now: float | None = None,
           dead_letter_index: str | None = None) -> dict[str, Any]:
    """Everything ``status`` prints, as plain data (``--json`` prints it as is).
    ``origin`` (``flag --state-dir``, ...) is named when the directory is
    unusable. ``problems``: ``{"file", "error"}`` of each damaged file; not
    empty means ``status`` exits 1. ``dead_letter_index``: the
    --dead-letter-index, only named (the node is not asked)."""
    _check_state_dir(state_dir, origin)
    problems: list[dict[str, str]] = []
    loaded: dict[str, Any] = {}
    for name, load in ((REGISTRY_FILE, _load_registry), (STATUS_FILE, _load_status)):
        path = os.path.join(state_dir, name)
        try:
            loaded[name] = load(path)
        except (OSError, ValueError) as error:
            what = f"cannot read it: {error.strerror}" if isinstance(error, OSError) else str(error)
            problems.append({"file": path, "error": what})
            loaded[name] = None
    entries, status = loaded[REGISTRY_FILE], loaded[STATUS_FILE]
    damaged = {os.path.basename(problem["file"]) for problem in problems}
    letters, broken = read_letters(dead_letter_path)
    return {
        "state_dir": state_dir,
        "agent": _agent(status, STATUS_FILE in damaged, time.time() if now is None else now),
        # None: unknown (the registry is damaged), which an empty list would hide.
        "files": None if entries is None else [_file(entry) for entry in sorted(entries, key=lambda e: e.path)
                                               if not entry.gone],
        "counters": (status or {}).get("counters", {}),
        "spool": (status or {}).get("spool"),
        "waiting": _waiting((status or {}).get("waiting")),
        "dead_letters": {"path": dead_letter_path, "index": dead_letter_index, "total": len(letters),
                         "unreadable_lines": len(broken),
                         "unreadable_line_numbers": broken[:_SHOWN_LINE_NUMBERS],
                         "by_error": [{"target": t, "error_type": k, "count": c} for t, k, c in summarize(letters)]},
        "last_error": (status or {}).get("last_error"),
        "last_error_at": _number((status or {}).get("last_error_at")),
        "last_ack_at": _number((status or {}).get("last_ack_at")),
        "problems": problems,
    }


def _waiting(value: Any) -> dict[str, Any] | None:
    """The status file's ``waiting``, if it has that shape (older files have none)."""
    if isinstance(value, dict) and isinstance(value.get("files"), int) and value["files"] > 0:
        return {"files": value["files"], "first": value.get("first") if isinstance(value.get("first"), str) else None}
    return None


def _agent_line(agent: dict[str, Any]) -> str:
    state, detail = agent["state"], agent["detail"]
    if state == RUNNING:
        return f"agent: running, pid {agent['pid']}" + (f" ({detail})" if detail else "")
    if state == NOT_RESPONDING:
        return f"agent: not responding since {_when(agent['updated'])} ({detail})"
    return f"agent: {state} ({detail})"


def _disk_full(episode: Any) -> str:
    """The spool's full-disk episode (optional in status.json: an older agent's
    file has none), as the log tells it: from its warning to "writing resumed"."""
    if not isinstance(episode, dict):
        return ""
    lasted = episode.get("for")
    lasted = f" for {lasted:.1f}s" if isinstance(lasted, (int, float)) and not isinstance(lasted, bool) else ""
    error = f" ({episode['error']})" if isinstance(episode.get("error"), str) and episode["error"] else ""
    if episode.get("writing"):
        return f"; the disk refused writes{error}{lasted}; they go through again (not yet for 5 s)"
    return (f"; writing paused{lasted}: the disk refuses it{error}; reading waits until it takes writes again "
            "(free space on the spool's file system; nothing is lost)")


def render(data: dict[str, Any]) -> str:
    """The human-readable form of ``report``."""
    lines = [f"state dir: {data['state_dir']}", _agent_line(data["agent"])]
    if data["files"] is None:
        lines.append(f"files: unknown ({REGISTRY_FILE} cannot be used, see the error)")
    else:
        lines.append(f"files ({len(data['files'])}):")
        for item in data["files"]:
            size = "gone" if item["size"] is None else f"{item['size']}"
            lag = "-" if item["lag_bytes"] is None else f"{item['lag_bytes']}"
            lines.append(f"  {item['path']}  key={item['key']} inode={item['inode']} gen={item['generation']} "
                         f"offset={item['offset']} size={size} lag_bytes={lag}")
    waiting = data.get("waiting")
    if waiting:
        lines.append(f"waiting for an open-file slot: {waiting['files']} files, none of their lines read yet "
                     f"(first: {waiting['first'] or '-'}; raise the open-file limit, or lower --close-inactive)")
    spool = data.get("spool")
    if spool:
        age = spool.get("oldest_unacked_age")
        paused = ("; full: reading paused until the output catches up" +
                  (f" ({spool['held']} events read wait for room)" if spool.get("held") else "")
                  if spool.get("paused") else "")  # (it counts as full before its last bytes: audit 9)
        lines.append(f"spool: {spool.get('used_bytes')} / {spool.get('max_bytes')} bytes, oldest unacknowledged "
                     f"{'-' if age is None else f'{age:.1f}s'}{paused}{_disk_full(spool.get('disk_full'))}")
    else:
        lines.append("spool: -")
    dead = data["dead_letters"]
    lines.append(f"dead letters: {dead['total']} in {dead['path']}")
    for row in dead["by_error"]:
        lines.append(f"  {row['count']:>6}  {row['error_type']}  (target {row['target']})")
    if dead["unreadable_lines"]:
        numbers = ", ".join(map(str, dead["unreadable_line_numbers"]))
        more = ", ..." if dead["unreadable_lines"] > len(dead["unreadable_line_numbers"]) else ""
        lines.append(f"  {dead['unreadable_lines']:>6}  unreadable: not dead letters, never replayed "
                     f"(line {numbers}{more})")
    if dead.get("index"):
        lines.append(f"dead-letter index: {dead['index']} (letters go there first, to the file only when it "
                     f"cannot take them; `modelscribe dlq list` counts them, status does not ask the node)")
    counters = data.get("counters") or {}
    if counters:
        lines.append("counters: " + " ".join(f"{k}={v}" for k, v in counters.items()))
    lines.append(f"last error: {_error_line(data, time.time())}")
    return "\n".join(lines)


def _error_line(data: dict[str, Any], now: float) -> str:
    """The last error, when it came and whether deliveries were acknowledged
    since (so an error long over is not read as the agent's state now)."""
    error, at, acked = data.get("last_error"), data.get("last_error_at"), data.get("last_ack_at")
    if not error:
        return "-"
    if at is None:  # (a status file of an older version)
        return error
    since = "; deliveries acknowledged since" if acked is not None and acked > at else ""
    return f"({_when(at)}, {max(0.0, now - at):.0f}s ago{since}) {error}"


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
