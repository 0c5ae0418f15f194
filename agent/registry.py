"""The offset registry: how far each file has been delivered, kept on disk.

Delivery contract (MUST): ``commit(key, offset)`` is called only after the
output has acknowledged every line of that file before ``offset``. The tailer
resumes a known file at its committed offset, never at the position it had
read to, so a crash re-reads (with the same key and offsets, hence the same
document ids) whatever was not acknowledged, and loses nothing.

On-disk format: ``<state_dir>/registry.json``, UTF-8 JSON::

    {"version": 1,
     "entries": [{"key": "3f2a9c0d1e2b4a5f", "path": "/var/log/app.log",
                  "dev": 2049, "inode": 131077, "fp_len": 58,
                  "fp_hash": "<32 hex>", "generation": 0, "offset": 18234,
                  "updated": 1767225600.0, "gone": false}, ...],
     "retired": [[2049, 131077, "<32 hex>", 0, 1767225600.0], ...]}

``retired`` (optional; an agent that predates it ignores it, so the format
stays version 1): what is left of an entry dropped for ``ttl``, as
``[dev, inode, fp_hash, generation, dropped at]``. A new content on that
inode with the same first bytes (a reused inode, a log re-created with the
same header) must not get the dropped entry's key again: its lines would
carry ids Elasticsearch already holds and be refused as duplicates. So the
generation of a new content counts these too (``generations``). They are
kept for ``max(RETIRED_MIN_TTL, 4 * ttl)``, at most ``MAX_RETIRED`` of them
(the oldest go first).

Paths: a file name need not be valid UTF-8, and JSON text must be. ``path``
holds the name as text; for a name that is not valid UTF-8 it is a readable,
lossy form (each undecodable byte written ``\\xNN``) and the entry also has
``"path_bytes": "<base64 of the name's bytes>"``, which is authoritative: the
name is read back byte for byte (in memory it is the ``surrogateescape`` text
that ``os.listdir`` and ``glob`` return). ``path_bytes`` is optional, so the
format stays version 1: an agent that predates it ignores the field and only
sees the readable form, which costs nothing but a label (files are resumed by
dev/inode and fingerprint, never by path).

Invariants of the file (and of the in-memory table):

* ``version`` is 1; any other value, or a file that does not parse into this
  shape, is moved aside to ``registry.json.corrupt-<unix-ms>`` and the agent
  starts empty (it re-reads files from the start; it never refuses to start
  for damage). A file it cannot read (no permission, a directory of that
  name) is not damage: ``load`` raises a ConfigError (exit code 2) naming the
  file and what to do, and leaves it as it is (``unusable_state_file``);
* ``key`` is unique; it is ``identity.source_key(dev, inode, generation,
  fp_hash)``, i.e. it names one *content* of one file, and is never reused
  for another content;
* ``fp_hash`` is the hash of the file's first ``fp_len`` bytes;
* ``offset`` only grows, and is always the end of an acknowledged line;
* at most one entry per (dev, inode) has ``gone == false``: tracking a new
  content for an inode retires the others (a file that was truncated, or an
  inode that was reused, must never be resumed into). Gone entries are kept
  until they expire so a reused inode gets a fresh generation;
* ``updated`` is the wall-clock time the file was last seen (to about a
  minute, and exactly when it is closed: ``release``); entries not updated
  for ``ttl`` seconds are dropped at save, except those of files the tailer
  holds open (``hold``/``release``): whatever the ttl, the offsets of a file
  being read are never forgotten.

The file is replaced atomically (temp file in the same directory, fsync,
rename, fsync of the directory) with mode 0600, and only when something
changed. The state directory is created with mode 0700.

A failed write raises ``StateError`` from ``save`` (the caller decides: the
daemon logs it and retries at its next save, ``agent.pipeline``); from
``settle`` it is logged and retried at the next hand-over, never raised into
the reader: shipping goes on, the offsets on disk only lag.

Thread safety: every method may be called from any thread. ``commit`` comes
from output workers, ``save`` from the main thread (and ``settle``, which
saves a newly tracked file at once, from the reader thread), the rest from
the tailer.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import pwd
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agent.atomic import remove_stale_temps, write_atomic
from agent.clock import SYSTEM_CLOCK, Clock
from agent.errors import ConfigError, StateError
from agent.selflog import get_logger

log = get_logger("registry")

FORMAT_VERSION = 1
FILE_NAME = "registry.json"
_TEMP_PREFIX = ".registry.json."
_TEMP_SUFFIX = ".tmp"
# ``updated`` is only refreshed (and the file rewritten for it) this often:
# it drives a TTL measured in days, and rewriting the registry every scan for
# a timestamp nobody needs to the second would be wasted I/O.
TOUCH_RESOLUTION = 60.0
RETIRED_MIN_TTL = 30 * 86400.0  # how long a dropped entry's generation is remembered, at least
MAX_RETIRED = 10_000  # ... and how many (about 80 bytes each in the file)
SAVE_PACE = 20  # a paced save waits 20 times the last one's duration: at most 5 % of a core
SETTLE_RETRY_INTERVAL = 1.0  # seconds between two settle saves after one failed


OWNER_HINT = ("run the agent as the user that owns the state directory, e.g. with runuser -u modelscribe, "
              "or give it back to that user")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def owner_name(path: Any) -> str | None:
    """The user name (else the uid) owning ``path``; None if it cannot be stat'ed."""
    try:
        return _user(os.stat(path).st_uid)
    except OSError:
        return None


def owner_hint(path: Any) -> str:
    """What to do about a state file this user may not read or write, by name
    where the owners tell (``sudo modelscribe run`` on the service's state
    directory leaves root-owned files in it); else OWNER_HINT."""
    mine, theirs = owner_name(path), owner_name(os.path.dirname(os.fspath(path)))
    me = _user(os.geteuid())
    if mine is None or theirs is None:
        return OWNER_HINT
    if mine != theirs:
        if me == theirs:
            return f"it belongs to {mine}, and the agent runs as {me}: give it back, chown {me}: {path}"
        return (f"it belongs to {mine}, the state directory to {theirs}: run the agent as {theirs}, e.g. with "
                f"runuser -u {theirs} --, and give the file back, chown {theirs}: {path}")
    if me != mine:
        return f"it and the state directory belong to {mine}: run the agent as {mine}, e.g. with runuser -u {mine} --"
    return f"its mode keeps even its owner out: chmod u+rw {path}"


def unusable_state_file(path: Any, error: OSError, what: str, instead: str) -> ConfigError:
    """The error of a state file ``run`` cannot read at start-up (``what``
    names it: "the agent id"): a ConfigError (exit code 2), because restarting
    cannot fix it (the packaged unit restarts on exit code 1, every 5 s, for
    ever). It names the file and what to do: for a permission problem (a
    ``sudo modelscribe run`` leaves root-owned files), ``owner_hint``; for a
    directory in its place, move it away, and ``instead`` says what the agent
    then does. Never taken for damage: the file is left as it is."""
    if isinstance(error, PermissionError):
        return ConfigError(f"cannot read {what} {path}: {error.strerror} ({owner_hint(path)}; the file is left "
                           "as it is)")
    if isinstance(error, IsADirectoryError):
        return ConfigError(f"cannot read {what} {path}: it is a directory, not a file (move it away: {instead})")
    return ConfigError(f"cannot read {what} {path}: {error.strerror or error}")


@dataclass(frozen=True, slots=True)
class Entry:
    """What the registry knows about one content of one file."""

    key: str
    path: str
    dev: int
    inode: int
    fp_len: int
    fp_hash: str
    generation: int
    offset: int
    updated: float
    gone: bool = False


_FIELDS: dict[str, tuple[type, ...]] = {
    "key": (str,), "path": (str,), "dev": (int,), "inode": (int,), "fp_len": (int,),
    "fp_hash": (str,), "generation": (int,), "offset": (int,), "updated": (int, float),
    "gone": (bool,),
}


def path_to_json(path: str) -> dict[str, str]:
    """``{"path": ...}``, plus ``path_bytes`` when the name is not valid UTF-8."""
    try:
        path.encode("utf-8")
        return {"path": path}
    except UnicodeEncodeError:
        pass
    try:
        raw = path.encode("utf-8", "surrogateescape")  # what os.fsencode does on POSIX
    except UnicodeEncodeError:
        # A surrogate that no file name decodes to (not from the file system):
        # kept, not reversible, rather than failing every save.
        raw = path.encode("utf-8", "surrogatepass")
    return {"path": raw.decode("utf-8", "backslashreplace"),
            "path_bytes": base64.b64encode(raw).decode("ascii")}


def path_from_json(item: dict[str, Any]) -> str:
    """The path of an entry as written by ``path_to_json`` (ValueError if malformed)."""
    raw = item.get("path_bytes")
    if raw is None:
        path = item.get("path")
        if not isinstance(path, str):
            raise ValueError("entry field 'path' is missing or has the wrong type")
        return path
    if not isinstance(raw, str):
        raise ValueError("entry field 'path_bytes' is not a string")
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8", "surrogateescape")
    except binascii.Error as error:
        raise ValueError(f"entry field 'path_bytes' is not base64: {error}") from error


def _entry_to_json(entry: Entry) -> dict[str, Any]:
    # By hand, not dataclasses.asdict: 13 times faster (20,000 entries in 21 ms,
    # not 270), and a save runs every second and before a new file's first
    # lines are handed over (audit 4: at 20,000 files reading almost stopped).
    item = {"key": entry.key, "path": entry.path, "dev": entry.dev, "inode": entry.inode, "fp_len": entry.fp_len,
            "fp_hash": entry.fp_hash, "generation": entry.generation, "offset": entry.offset,
            "updated": entry.updated, "gone": entry.gone}
    item.update(path_to_json(entry.path))
    return item


def _entry_from_json(item: Any) -> Entry:
    if not isinstance(item, dict):
        raise ValueError("an entry is not an object")
    values = {}
    for name, types in _FIELDS.items():
        value = item.get(name)
        # bool is an int in Python; a true/false where a number belongs is corruption.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"entry field {name!r} is missing or has the wrong type")
        values[name] = value
    if values["offset"] < 0 or values["fp_len"] < 0 or values["generation"] < 0:
        raise ValueError("entry has a negative offset, fp_len or generation")
    values["updated"] = float(values["updated"])
    values["path"] = path_from_json(item)
    return Entry(**values)


class Registry:
    """Committed offsets of every known file content, keyed by ``Source.key``."""

    def __init__(self, state_dir: Path, ttl: float = 7 * 86400, clock: Clock = SYSTEM_CLOCK) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / FILE_NAME
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()  # guards the table and the change counter
        self._save_lock = threading.Lock()  # one writer of the file at a time
        self._entries: dict[str, Entry] = {}
        # (dev, inode) -> keys of its entries: a tuple, nearly always of one key
        # (a set of one is 216 bytes, a tuple 48).
        self._by_inode: dict[tuple[int, int], tuple[str, ...]] = {}
        self._changes = 0  # bumped on every change
        self._saved = 0  # value of _changes the file on disk reflects
        self._tracked = 0  # value of _changes right after the latest ``track``
        self._held: set[str] = set()  # keys of files the tailer has open: never expired
        # (dev, inode, fp_hash) -> (generation, dropped at) of entries dropped for ttl.
        self._retired: dict[tuple[int, int, str], tuple[int, float]] = {}
        self._settle_failed = False  # a settle save failed (logged once until one succeeds)
        self._settle_retry_at = float("-inf")  # monotonic; no settle save attempted before
        self._pace_until = float("-inf")  # monotonic; a paced save waits until then (``save``)
        self._prepare_dir()

    # -- state directory -------------------------------------------------

    def _prepare_dir(self) -> None:
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Prove now that the directory is writable: failing at start-up,
            # naming the directory, beats failing at the first save.
            fd, probe = tempfile.mkstemp(dir=self.state_dir, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX)
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            raise StateError(f"state directory {self.state_dir} is not usable: {error}") from error

    # -- load / save -----------------------------------------------------

    def load(self) -> None:
        """Read the registry file; missing → empty; corrupt → moved aside, empty."""
        remove_stale_temps(self.state_dir, (_TEMP_PREFIX,), _TEMP_SUFFIX)  # (a crash mid-save)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            entries: list[Entry] = []
            retired: dict[tuple[int, int, str], tuple[int, float]] = {}
        except OSError as error:  # (not damage: exit code 2, the file left as it is)
            raise unusable_state_file(self.path, error, "the registry", "the agent then reads every file again from "
                                      "its start") from error
        else:
            try:
                entries, retired = self._parse(raw)
            except ValueError as error:  # orjson.JSONDecodeError is a ValueError
                entries, retired = [], {}
                self._move_aside(str(error))
        with self._lock:
            self._entries = {}
            self._by_inode = {}
            self._retired = retired
            for entry in entries:
                self._put(entry)
            self._changes += 1
            self._saved = self._changes

    @staticmethod
    def _parse(raw: bytes) -> tuple[list[Entry], dict[tuple[int, int, str], tuple[int, float]]]:
        document = orjson.loads(raw)
        if not isinstance(document, dict):
            raise ValueError("top level is not an object")
        if document.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown version {document.get('version')!r}")
        items = document.get("entries")
        if not isinstance(items, list):
            raise ValueError("entries is not a list")
        entries = [_entry_from_json(item) for item in items]
        if len({entry.key for entry in entries}) != len(entries):
            raise ValueError("duplicate keys")
        return entries, _retired_from_json(document.get("retired", []))

    def _move_aside(self, reason: str) -> None:
        aside = self.path.with_name(f"{FILE_NAME}.corrupt-{int(self._clock.time() * 1000)}")
        try:
            os.replace(self.path, aside)
        except OSError as error:
            # (exit code 2: a restart would fail the same way)
            raise ConfigError(f"cannot move corrupt {self.path} aside: {error} (move it away yourself: the agent "
                              "then reads every file again from its start)") from error
        if reason.startswith("unknown version"):  # (a downgrade: not damage)
            log.warning("registry file was written by another version of modelscribe; moved aside, starting "
                        "empty", path=str(self.path), moved_to=str(aside), error=reason)
            return
        log.warning("registry file is corrupt; moved aside, starting empty",
                    path=str(self.path), moved_to=str(aside), error=reason)

    def save(self, pace: bool = False) -> bool:
        """Write the table atomically if it changed; expired entries are dropped.
        ``pace`` (the daemon's periodic save): skipped, returning False, until
        ``SAVE_PACE`` times the last write's duration has passed since it
        began, so a large table costs at most 1/SAVE_PACE of a core (the file
        is rewritten whole: 100,000 entries took about 0.2 s; audit 5). Only
        re-delivery after a crash grows with it, as 409 duplicates."""
        if pace and self._clock.monotonic() < self._pace_until:
            return False
        with self._save_lock:
            began = self._clock.monotonic()
            now = self._clock.time()
            with self._lock:
                expired = [key for key, entry in self._entries.items()
                           if now - entry.updated > self.ttl and key not in self._held]
                for key in expired:
                    self._retire(self._entries[key], now)
                    self._drop(key)
                horizon = now - max(RETIRED_MIN_TTL, 4 * self.ttl)
                stale = [found for found, (_, dropped) in self._retired.items() if dropped < horizon]
                for found in stale:
                    del self._retired[found]
                if expired or stale:
                    self._changes += 1
                if self._changes == self._saved:
                    return True
                version = self._changes
                entries = sorted(self._entries.values(), key=lambda entry: entry.key)
                retired = [[dev, inode, digest, generation, dropped]
                           for (dev, inode, digest), (generation, dropped) in sorted(self._retired.items())]
            # The file is written outside the table lock: output threads keep
            # committing while the fsyncs run.
            document: dict[str, Any] = {"version": FORMAT_VERSION,
                                        "entries": [_entry_to_json(entry) for entry in entries]}
            if retired:
                document["retired"] = retired
            body = orjson.dumps(document)
            self._write(body)
            with self._lock:
                self._saved = max(self._saved, version)
            self._pace_until = began + SAVE_PACE * (self._clock.monotonic() - began)
        return True

    def _write(self, body: bytes) -> None:
        try:
            write_atomic(self.path, body, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX)
        except OSError as error:
            raise StateError(f"cannot write {self.path}: {error}") from error

    # -- the table ---------------------------------------------------------

    def _put(self, entry: Entry) -> None:
        old = self._entries.get(entry.key)
        if old is not None:
            self._drop(old.key)
        self._entries[entry.key] = entry
        found = (entry.dev, entry.inode)
        self._by_inode[found] = self._by_inode.get(found, ()) + (entry.key,)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        found = (entry.dev, entry.inode)
        keys = tuple(other for other in self._by_inode.get(found, ()) if other != key)
        if keys:
            self._by_inode[found] = keys
        else:
            self._by_inode.pop(found, None)

    def lookup(self, dev: int, inode: int, fingerprint_of: Callable[[int], str]) -> Entry | None:
        """The live entry for this dev/inode whose fingerprint still matches the file.

        ``fingerprint_of(n)`` hashes the file's first n bytes; it is called
        outside the lock (it reads the file).
        """
        with self._lock:
            candidates = [self._entries[key] for key in self._by_inode.get((dev, inode), ())]
        candidates = [entry for entry in candidates if not entry.gone]
        candidates.sort(key=lambda entry: entry.generation, reverse=True)
        hashes: dict[int, str] = {}
        for entry in candidates:
            if entry.fp_len not in hashes:
                hashes[entry.fp_len] = fingerprint_of(entry.fp_len)
            if hashes[entry.fp_len] == entry.fp_hash:
                return entry
        return None

    def generations(self, dev: int, inode: int) -> list[tuple[str, int]]:
        """``(fp_hash, generation)`` of every content this dev/inode had that the
        registry remembers (entries live or gone, and retired ones), to pick a
        new content's generation (``identity.next_generation``)."""
        with self._lock:
            known = [(self._entries[key].fp_hash, self._entries[key].generation)
                     for key in self._by_inode.get((dev, inode), ())]
            known += [(digest, generation) for (d, i, digest), (generation, _) in self._retired.items()
                      if (d, i) == (dev, inode)]
        return known

    def _retire(self, entry: Entry, now: float) -> None:
        """Remember the generation of ``entry``, dropped for ttl (under the lock)."""
        found = (entry.dev, entry.inode, entry.fp_hash)
        known = self._retired.get(found)
        if known is None or known[0] <= entry.generation:
            self._retired[found] = (entry.generation, now)
        if len(self._retired) > MAX_RETIRED:
            del self._retired[min(self._retired, key=lambda k: self._retired[k][1])]

    def track(self, entry: Entry) -> None:
        """Add or replace (by key); retire other live entries of the same inode."""
        with self._lock:
            for key in list(self._by_inode.get((entry.dev, entry.inode), ())):
                other = self._entries[key]
                if key != entry.key and not other.gone:
                    self._entries[key] = dataclasses.replace(other, gone=True)
            self._put(entry)
            self._changes += 1
            self._tracked = self._changes

    def settle(self) -> None:
        """Save now if a file was tracked since the last save.

        Called before a new file's first events are handed over: its key
        hashes the bytes the file had when first read, so after a crash
        before the periodic save the key would be computed anew over more
        bytes, and lines already shipped would go again under other ids.
        """
        if self._tracked > self._saved and self._clock.monotonic() >= self._settle_retry_at:
            try:
                self.save()
            except StateError as error:
                # At most one attempt a second: a hand-over happens for every
                # group of lines, and a full disk would be asked at each.
                self._settle_retry_at = self._clock.monotonic() + SETTLE_RETRY_INTERVAL
                # Like a failed cuts.json write: not a reason to stop reading.
                # The key is only at risk if the agent also crashes before a
                # save succeeds (the main loop retries every second).
                if not self._settle_failed:
                    log.error("cannot save the registry before handing over a new file's lines; "
                              "retried at the next hand-over", path=str(self.path), error=str(error))
                self._settle_failed = True
                return
            if self._settle_failed:
                log.info("registry saved again", path=str(self.path))
            self._settle_failed = False

    def commit(self, key: str, offset: int) -> None:
        """Advance the committed offset of ``key``; never backwards; unknown keys ignored."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or offset <= entry.offset:
                return
            self._entries[key] = dataclasses.replace(entry, offset=offset)
            self._changes += 1

    def touch(self, key: str, path: str) -> None:
        """The file was seen now at ``path``."""
        now = self._clock.time()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            if entry.path == path and now - entry.updated < TOUCH_RESOLUTION:
                return
            self._entries[key] = dataclasses.replace(entry, path=path, updated=now)
            self._changes += 1

    def hold(self, key: str) -> None:
        """The tailer has the file of ``key`` open: its entry must not expire."""
        with self._lock:
            self._held.add(key)

    def release(self, key: str) -> None:
        """The tailer closed the file of ``key``: it was last seen now."""
        now = self._clock.time()
        with self._lock:
            self._held.discard(key)
            entry = self._entries.get(key)
            if entry is None or entry.updated >= now:
                return
            self._entries[key] = dataclasses.replace(entry, updated=now)
            self._changes += 1

    def mark_gone(self, key: str) -> None:
        """The file was deleted (or its content replaced): never resume into it."""
        now = self._clock.time()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.gone:
                return
            self._entries[key] = dataclasses.replace(entry, gone=True, updated=now)
            self._changes += 1

    def get(self, key: str) -> Entry | None:
        with self._lock:
            return self._entries.get(key)

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    @property
    def dirty(self) -> bool:
        """True if the table changed since it was last loaded or saved."""
        with self._lock:
            return self._changes != self._saved


def _retired_from_json(items: Any) -> dict[tuple[int, int, str], tuple[int, float]]:
    if not isinstance(items, list):
        raise ValueError("retired is not a list")
    retired: dict[tuple[int, int, str], tuple[int, float]] = {}
    for item in items:
        if not (isinstance(item, list) and len(item) == 5 and all(type(n) is int for n in item[:2])
                and isinstance(item[2], str) and type(item[3]) is int and item[3] >= 0
                and type(item[4]) in (int, float)):
            raise ValueError(f"a retired entry is not [dev, inode, fp_hash, generation, time]: {item!r:.100}")
        retired[(item[0], item[1], item[2])] = (item[3], float(item[4]))
    return retired
