"""``modelscribe status``: what the agent has delivered and what it owes.

The running daemon writes ``STATE_DIR/status.json`` every second (atomic,
0600, versioned)::

    {"version": 1, "pid": 1234, "started": 1767225600.0, "updated": 1767225660.0,
     "counters": {"lines_read": ..., "events_acked": ..., ...}, "last_error": "..." | null,
     "spool": {"used_bytes": ..., "max_bytes": ..., "oldest_unacked_age": ...} | null}

``report(state_dir, dead_letter_path)`` reads it together with the registry
and the dead-letter file, never modifying any of them, so it works for a
running or a stopped agent. A state directory that does not exist, or that
this user cannot read, is a ``StateError`` (exit code 1) naming
``--state-dir``: an empty report would look like an agent with nothing to do.
A file name that is not valid UTF-8 is shown in the registry's readable form
(``\\xNN`` escapes) and stat'ed by its exact bytes (``path_bytes``).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

import orjson

from agent.atomic import write_atomic
from agent.errors import StateError
from agent.outputs.dead_letter import read_letters, summarize
from agent.registry import path_from_json
from agent.stats import Snapshot

STATUS_FILE = "status.json"
STATUS_VERSION = 1


def write_status(state_dir: str, started: float, snapshot: Snapshot, spool: dict[str, Any] | None) -> None:
    body = orjson.dumps({"version": STATUS_VERSION, "pid": os.getpid(), "started": started,
                         "updated": time.time(), "counters": {k: v for k, v in asdict(snapshot).items()
                                                              if k != "last_error"},
                         "last_error": snapshot.last_error, "spool": spool})
    write_atomic(os.path.join(state_dir, STATUS_FILE), body, prefix=".status.json.")


def _read_json(path: str) -> Any:
    try:
        with open(path, "rb") as handle:
            return orjson.loads(handle.read())
    except (OSError, orjson.JSONDecodeError):
        return None


def _running(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_state_dir(state_dir: str, origin: str) -> None:
    """Raise StateError unless ``state_dir`` is a directory this user can read."""
    given = "" if origin.startswith("flag") else " (the default)" if origin == "default" else f" (from {origin})"
    if not os.path.isdir(state_dir):
        what = "is not a directory" if os.path.exists(state_dir) else "does not exist"
        raise StateError(f"--state-dir {state_dir}{given}: {what}; no agent has run with this state "
                         "directory (give the one `modelscribe run` uses)")
    try:
        os.listdir(state_dir)
        with open(os.path.join(state_dir, "registry.json"), "rb"):
            pass
    except FileNotFoundError:
        pass  # an agent that has not saved offsets yet
    except OSError as error:
        raise StateError(f"--state-dir {state_dir}{given}: cannot read it: {error.strerror} (run status as "
                         "the agent's user, or root)") from error


def report(state_dir: str, dead_letter_path: str, origin: str = "default") -> dict[str, Any]:
    """Everything ``status`` prints, as plain data (``--json`` prints it as is).
    ``origin`` (``flag --state-dir``, ...) is named when the directory is unusable."""
    _check_state_dir(state_dir, origin)
    registry = _read_json(os.path.join(state_dir, "registry.json"))
    files = []
    entries = registry.get("entries", []) if isinstance(registry, dict) else []
    for entry in sorted(entries, key=lambda e: str(e.get("path"))):
        if entry.get("gone"):
            continue
        path = str(entry.get("path"))  # shown: readable even for a name that is not UTF-8
        try:
            info = os.stat(path_from_json(entry))
            same = info.st_ino == entry.get("inode") and info.st_dev == entry.get("dev")
            size: int | None = info.st_size if same else None
        except (OSError, ValueError):  # ValueError: a damaged path_bytes; the file counts as gone
            size = None
        offset = int(entry.get("offset", 0))
        files.append({"path": path, "key": entry.get("key"), "dev": entry.get("dev"), "inode": entry.get("inode"),
                      "generation": entry.get("generation"), "offset": offset, "size": size,
                      "lag_bytes": max(0, size - offset) if size is not None else None})
    status = _read_json(os.path.join(state_dir, STATUS_FILE))
    status = status if isinstance(status, dict) and status.get("version") == STATUS_VERSION else {}
    letters, broken = read_letters(dead_letter_path)
    return {
        "state_dir": state_dir,
        "agent": {"running": _running(status.get("pid")), "pid": status.get("pid"),
                  "started": status.get("started"), "updated": status.get("updated")},
        "files": files,
        "counters": status.get("counters", {}),
        "spool": status.get("spool"),
        "dead_letters": {"path": dead_letter_path, "total": len(letters), "unreadable_lines": len(broken),
                         "by_error": [{"target": t, "error_type": k, "count": c} for t, k, c in summarize(letters)]},
        "last_error": status.get("last_error"),
    }


def render(data: dict[str, Any]) -> str:
    """The human-readable form of ``report``."""
    agent = data["agent"]
    lines = [f"state dir: {data['state_dir']}",
             f"agent: {'running, pid ' + str(agent['pid']) if agent['running'] else 'not running'}"]
    lines.append(f"files ({len(data['files'])}):")
    for item in data["files"]:
        size = "gone" if item["size"] is None else f"{item['size']}"
        lag = "-" if item["lag_bytes"] is None else f"{item['lag_bytes']}"
        lines.append(f"  {item['path']}  key={item['key']} inode={item['inode']} gen={item['generation']} "
                     f"offset={item['offset']} size={size} lag_bytes={lag}")
    spool = data.get("spool")
    if spool:
        age = spool.get("oldest_unacked_age")
        lines.append(f"spool: {spool.get('used_bytes')} / {spool.get('max_bytes')} bytes, oldest unacknowledged "
                     f"{'-' if age is None else f'{age:.1f}s'}")
    else:
        lines.append("spool: -")
    dead = data["dead_letters"]
    lines.append(f"dead letters: {dead['total']} in {dead['path']}")
    for row in dead["by_error"]:
        lines.append(f"  {row['count']:>6}  {row['error_type']}  (target {row['target']})")
    counters = data.get("counters") or {}
    if counters:
        lines.append("counters: " + " ".join(f"{k}={v}" for k, v in counters.items()))
    lines.append(f"last error: {data.get('last_error') or '-'}")
    return "\n".join(lines)
