"""The dead-letter file: documents the output refused for good, and the
tools to inspect and replay them (``modelscribe dlq list|replay``).

Format: NDJSON, one object per rejected document, file mode 0600:

    {"@timestamp": "...", "target": "logs-...", "_id": "...",
     "status": 400, "error": {"type": "document_parsing_exception", "reason": "..."},
     "document": {...the document exactly as it was sent...}}

Invariants:
- a letter is appended and fsynced BEFORE its document is acknowledged, so
  the file offset can advance without the line existing nowhere;
- a write is all or nothing: a short write is continued until every byte is
  written; a write or fsync that fails part-way (ENOSPC, EDQUOT, EIO) cuts
  the file back to its size before the write, so no torn line is left, and
  raises StateError (``Sender`` then keeps the documents unacknowledged and
  tries again). If even the cut fails, it is tried again before the next
  write, which fails until it succeeds. A torn last line left by a crash
  mid-write cannot be cut (nothing says where it began): the next letters
  start on a line of their own, so they stay readable and ``dlq list``
  reports the fragment;
- the file has no size cap and no rotation: it grows until ``dlq replay``
  (or the operator) empties it;
- writers and ``replay`` take an exclusive ``flock`` on the file; replay
  rewrites it atomically (temp file, fsync, rename) with the letters that
  are still not indexed, and a writer that finds the file replaced while it
  waited for the lock reopens it, so no letter is lost to the rewrite;
- a replayed document keeps its ``_id``: replaying twice cannot index it twice;
- a replay that meets an output error (OutputError: unreachable, refused)
  keeps the letters concerned for the next replay and says why; any other
  exception is a bug and propagates, leaving the file as it was;
- a replay sends at most ``batch_size`` letters per request and halves a
  request the node (or a proxy) refuses as too large (413), as the sender
  does; a single letter still too large is rejected again (``dlq replay``
  exit 4), its reason naming its size and the limits to raise;
- a letter names its target: the event's, else the output's default one,
  whichever store (file or index) takes it, so a replay without
  ``--to-index`` sends it back where it was meant to go;
- when the index cannot take letters they go to the file, and the warning
  saying so is logged at once, then at most every ``FALLBACK_LOG_INTERVAL``
  seconds with the number of batches since (not once per batch).

Dependencies go one way: ``dead_letter_index`` (the index store) uses this
module's ``Letter``; ``DeadLetters`` sees the index only as a ``LetterStore``.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from stat import S_ISREG
from typing import Callable, Protocol, Sequence

import orjson

from agent.atomic import write_all, write_atomic
from agent.enrich import format_timestamp
from agent.errors import ModelscribeError, OutputError, StateError
from agent.events import Event
from agent.outputs.base import Response
from agent.outputs.retry import Action, ItemVerdict, classify, too_large_reason
from agent.selflog import get_logger

log = get_logger("dead_letter")

# Seams for the tests: a full disk cannot be made without mounting one.
_write = os.write
_fsync = os.fsync
_truncate = os.ftruncate
_monotonic = time.monotonic

FALLBACK_LOG_INTERVAL = 60.0  # at most one "cannot take the letters" warning per this many seconds


@dataclass(frozen=True)
class Letter:
    line: int
    timestamp: str
    target: str
    doc_id: str
    status: int
    error_type: str
    reason: str
    document: bytes  # the JSON document, serialised


class LetterStore(Protocol):
    """Somewhere other than the file that letters can be kept
    (``dead_letter_index.IndexLetters``); ``write`` raises ModelscribeError
    when it cannot take them. ``target``: the output's default target, named
    in the letters of events that have none of their own."""

    name: str

    def write(self, rejected: Sequence[tuple[Event, ItemVerdict]], now: float, target: str) -> None: ...


class _Locked:
    """The dead-letter file opened for appending under an exclusive lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)  # the caller retries: do not leak a descriptor per attempt
                raise
            if same:
                self.fd = fd
                return fd
            os.close(fd)  # replaced by a replay while we waited: use the new file

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing releases the lock


class DeadLetters:
    """Where rejected documents go: the dead-letter file, or (with
    --dead-letter-index) an Elasticsearch index, falling back to the file
    whenever the index cannot take them, so a letter is never lost."""

    def __init__(self, path: str, target: str, index: LetterStore | None = None) -> None:
        self.path = path
        self._target = target
        self._index = index
        self._lock = threading.Lock()
        # (inode, size before, size after) of a failed write whose cut-back failed too
        self._torn: tuple[int, int, int] | None = None
        self.count = 0
        # The fallback warning: when last logged, and the batches since (None: the index takes letters).
        self._fallback_logged: float | None = None
        self._fallback_batches = 0

    @property
    def index_name(self) -> str | None:
        """The --dead-letter-index, None without one."""
        return None if self._index is None else self._index.name

    def write(self, rejected: Sequence[tuple[Event, ItemVerdict]], now: float) -> str:
        """Store the letters; returns where they went: ``"index"`` or ``"file"``."""
        if self._index is not None:
            try:
                self._index.write(rejected, now, self._target)
            except ModelscribeError as error:
                self._fell_back(error)
            else:
                with self._lock:
                    self.count += len(rejected)
                    recovered, self._fallback_logged = self._fallback_logged is not None, None
                    self._fallback_batches = 0
                if recovered:
                    log.warning("the dead-letter index takes the letters again", index=self._index.name)
                return "index"
        lines = []
        for event, verdict in rejected:
            lines.append(orjson.dumps({
                "@timestamp": format_timestamp(now), "target": event.target or self._target,
                "_id": event.doc_id, "status": verdict.status,
                "error": {"type": verdict.error_type, "reason": verdict.reason},
                "document": orjson.Fragment(event.data),
            }) + b"\n")
        with self._lock:
            try:
                self._append(b"".join(lines))
            except OSError as error:
                raise StateError(f"cannot write the dead-letter file {self.path}: "
                                 f"{error.strerror or error}") from error
            self.count += len(rejected)
        return "file"

    def _fell_back(self, error: ModelscribeError) -> None:
        """Warn that the letters go to the file: at once, then once a
        ``FALLBACK_LOG_INTERVAL`` with the batches since (a closed or blocked
        index would otherwise give a warning per batch)."""
        assert self._index is not None
        now = _monotonic()
        with self._lock:
            self._fallback_batches += 1
            last = self._fallback_logged
            if last is not None and now - last < FALLBACK_LOG_INTERVAL:
                return
            batches, self._fallback_batches, self._fallback_logged = self._fallback_batches, 0, now
        log.warning("the dead-letter index cannot take the letters; writing them to the file instead",
                    index=self._index.name, path=self.path, batches=batches,
                    **({} if last is None else {"since": f"{now - last:.0f}s"}), error=str(error))

    def _append(self, data: bytes) -> None:
        """Append ``data`` and fsync it, or leave the file as it was and raise OSError."""
        with _Locked(self.path) as fd:
            stat = os.fstat(fd)
            size = stat.st_size
            if self._torn is not None:
                inode, base, end = self._torn
                if (inode, size) == (stat.st_ino, end):  # nothing appended since: the torn bytes are last
                    _truncate(fd, base)  # still failing: these letters wait too (OSError)
                    size = base
                self._torn = None
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # keep a torn last line (a crash mid-write) apart from these letters
            try:
                write_all(fd, data, _write)
                _fsync(fd)
            except OSError:
                # Writers and replay hold the lock, so ``size`` is still the
                # end of the last whole letter.
                try:
                    _truncate(fd, size)
                except OSError as cut:
                    self._torn = (stat.st_ino, size, os.fstat(fd).st_size)
                    log.error("cannot cut the dead-letter file back after a failed write; tried again before "
                              "the next letters", path=self.path, error=str(cut))
                raise


def read_letters(path: str) -> tuple[list[Letter], list[int]]:
    """The letters in the file, and the line numbers of lines that are not letters."""
    letters: list[Letter] = []
    broken: list[int] = []
    try:
        # O_NONBLOCK: a FIFO named as the dead-letter file must not block the open for ever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            if not S_ISREG(os.fstat(fd).st_mode):
                raise StateError(f"the dead-letter file {path}: not a regular file (the dead letters are an "
                                 "NDJSON file)")
            for number, raw in enumerate(handle, 1):
                if raw.strip():
                    letter = _parse(number, raw)
                    if letter is None:
                        broken.append(number)
                    else:
                        letters.append(letter)
    except FileNotFoundError:
        return [], []
    except OSError as error:
        raise StateError(f"cannot read the dead-letter file {path}: {error.strerror}") from error
    return letters, broken


def _parse(number: int, raw: bytes) -> Letter | None:
    try:
        item = orjson.loads(raw)
        error = item.get("error") or {}
        document = item["document"]
        if not isinstance(document, dict):
            return None
        return Letter(number, str(item.get("@timestamp", "")), str(item.get("target", "")), str(item["_id"]), int(item.get("status", 0)),
                      str(error.get("type")), str(error.get("reason")), orjson.dumps(document))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def summarize(letters: Sequence[Letter]) -> list[tuple[str, str, int]]:
    """(target, error type, count), most frequent first."""
    counts = Counter((letter.target, letter.error_type) for letter in letters)
    return [(target, kind, count) for (target, kind), count in counts.most_common()]


@dataclass(frozen=True)
class ReplayResult:
    indexed: int
    duplicates: int
    still_rejected: int  # refused again (a mapping still wrong): ``dlq replay`` exits 4
    failed: int  # not attempted or retryable failures (the output's state): kept, exit 3
    reasons: tuple[str, ...]
    # Delivered, but their store could not forget them (a write-blocked
    # letters index): listed and re-sent (as duplicates) until it can; exit 3.
    not_removed: int = 0
    warnings: tuple[str, ...] = ()

    def __add__(self, other: ReplayResult) -> ReplayResult:
        """Both replays' counts (the file's and the index's), one report."""
        return ReplayResult(self.indexed + other.indexed, self.duplicates + other.duplicates,
                            self.still_rejected + other.still_rejected, self.failed + other.failed,
                            tuple(dict.fromkeys(self.reasons + other.reasons))[:5],
                            self.not_removed + other.not_removed, self.warnings + other.warnings)


class _Resend:
    """One replay's tally: sends letters, halving a request refused as too large (413)."""

    def __init__(self, send: Callable[[Sequence[Event]], Response], to_index: str | None) -> None:
        self._send = send
        self._to_index = to_index
        self.keep: list[Letter] = []
        self.indexed = self.duplicates = self.rejected = self.failed = 0
        self.reasons: list[str] = []

    def result(self) -> ReplayResult:
        return ReplayResult(self.indexed, self.duplicates, self.rejected, self.failed,
                            tuple(dict.fromkeys(self.reasons))[:5])

    def send(self, chunk: Sequence[Letter]) -> None:
        events = [Event("dead-letter", letter.line, letter.line + 1, letter.doc_id, letter.document,
                        self._to_index or letter.target or None) for letter in chunk]
        try:
            decision = classify(self._send(events), len(events), [event.doc_id for event in events])
        except OutputError as error:  # the output's own failure: keep these letters, say why
            log.warning("dead letters not re-sent; kept for the next replay", letters=len(chunk),
                        error=str(error))
            self._keep(chunk, str(error), rejected=False)
            return
        if decision.kind == "ack":
            self.indexed += len(chunk)
        elif decision.kind == "split" and len(chunk) > 1:  # 413: in halves, as the sender does
            half = len(chunk) // 2
            self.send(chunk[:half])
            self.send(chunk[half:])
        elif decision.kind == "split":  # one letter too large on its own: no replay can send it as it is
            self._keep(chunk, _too_large(chunk[0], events[0]), rejected=True)
        elif decision.kind == "reject":  # the request itself refused: rejected again, not the output's state
            self._keep(chunk, decision.reason, rejected=True)
        elif decision.kind != "items":
            self._keep(chunk, decision.reason, rejected=False)
        else:
            for verdict in decision.items:
                if verdict.action is Action.ACK:
                    self.indexed += 1
                elif verdict.action is Action.DUPLICATE:
                    self.duplicates += 1
                else:
                    self._keep([chunk[verdict.position]], f"{verdict.error_type}: {verdict.reason}",
                               rejected=verdict.action is Action.REJECT)

    def _keep(self, chunk: Sequence[Letter], reason: str, rejected: bool) -> None:
        self.keep.extend(chunk)
        if rejected:
            self.rejected += len(chunk)
        else:
            self.failed += len(chunk)
        self.reasons.append(reason)


def _too_large(letter: Letter, event: Event) -> str:
    return f"request_too_large: the letter {letter.doc_id}: " \
           f"{too_large_reason(event.data, event.doc_id, event.target)}, then replay"


def resend(letters: Sequence[Letter], send: Callable[[Sequence[Event]], Response], to_index: str | None,
           batch_size: int = 500) -> tuple[ReplayResult, list[Letter]]:
    """Re-send ``letters`` (to ``to_index`` or each one's recorded target),
    ``batch_size`` per request, halving on 413; returns the counts and the
    letters that still did not make it."""
    tally = _Resend(send, to_index)
    for start in range(0, len(letters), batch_size):
        tally.send(letters[start:start + batch_size])
    return tally.result(), tally.keep


def replay(path: str, send: Callable[[Sequence[Event]], Response], to_index: str | None,
           batch_size: int = 500) -> ReplayResult:
    """Re-send every letter of the file; keep in it only those that still did not make it."""
    with _Locked(path):
        letters, broken = read_letters(path)
        if broken:
            raise StateError(f"{path}: lines {', '.join(map(str, broken[:10]))} are not dead letters; "
                             "fix or remove them before replaying")
        result, keep = resend(letters, send, to_index, batch_size)
        _rewrite(path, [letters_line(letter) for letter in keep])
    return result


def letters_line(letter: Letter) -> bytes:
    return orjson.dumps({"@timestamp": letter.timestamp, "target": letter.target, "_id": letter.doc_id, "status": letter.status,
                         "error": {"type": letter.error_type, "reason": letter.reason},
                         "document": orjson.Fragment(letter.document)}) + b"\n"


def _rewrite(path: str, lines: list[bytes]) -> None:
    try:
        write_atomic(path, b"".join(lines), prefix=".dead-letter.")
    except OSError as error:
        raise StateError(f"cannot rewrite the dead-letter file {path}: {error.strerror}") from error
