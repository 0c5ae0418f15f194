"""Privacy: field redaction, keyed hashing, pattern redaction (payload
stripping is ``agent.transforms.payloads``).

Guarantees:

- --redact-field replaces a value with ``[REDACTED]``; a value that cannot
  hold a string (a number, an address, an object) is removed instead so the
  document still fits the index mapping.
- --hash-field replaces a value with HMAC-SHA256(key, value), hex, first 32
  characters (128 bits: collisions are out of reach, values stay joinable
  across documents and agents sharing the key). Numbers hash as their JSON
  text, so ``42`` and ``"42"`` join. ``client.ip`` cannot hold a hash: the
  hash goes to ``client.address`` and ``client.ip`` is removed.
- Pattern redaction (``Redactor``) covers every string of the document, keys
  included, and integers for the card pattern: ``[REDACTED:<kind>]``.

Nothing here changes a nested dict or list in place: the parser's record may
share them. Changed containers are copied along the changed path only.
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Callable

import orjson

from agent.atomic import fsync_directory
from agent.errors import StateError
from agent.selflog import Secret, get_logger
from agent.transforms import schema
from agent.transforms.patterns import REDACTED, SECRET_KEY, Pattern, marker

log = get_logger("transforms")

HASH_KEY_FILE = "hash_key"
HASH_HEX_CHARS = 32
_HASH_CACHE = 4096
MAX_DEPTH = 100  # deeper than any index mapping accepts (Elasticsearch: 20)
DEPTH_MARKER = "[depth limit]"
_DELETE = object()
_SCALARS = (int, float, bool, type(None))


def keyed_hash(key: bytes, value: Any) -> str:
    if type(value) is str:
        data = value.encode("utf-8", "surrogatepass")
    else:
        try:
            data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        except TypeError:
            data = str(value).encode("utf-8", "surrogatepass")
    return hmac.digest(key, data, "sha256").hex()[:HASH_HEX_CHARS]


def edit(node: dict[str, Any], parts: tuple[str, ...], change: Callable[[Any], Any]) -> dict[str, Any] | None:
    """A copy of ``node`` with ``change`` applied at ``parts``, or None if nothing was there.

    A dotted name matches nested objects and dotted keys alike (``extra.user.id``
    finds ``extra["user.id"]`` and ``extra["user"]["id"]``); a list on the way
    is entered element by element.
    """
    copy: dict[str, Any] | None = None
    for split in range(len(parts), 0, -1):
        key = parts[0] if split == 1 else ".".join(parts[:split])
        if key not in node:
            continue
        value = node[key]
        if split == len(parts):
            new = change(value)
        else:
            new = _descend(value, parts[split:], change)
            if new is None:
                continue
        if copy is None:
            copy = dict(node)
        if new is _DELETE:
            del copy[key]
        else:
            copy[key] = new
    return copy


def _descend(value: Any, rest: tuple[str, ...], change: Callable[[Any], Any]) -> Any:
    if type(value) is dict:
        return edit(value, rest, change)
    if type(value) is list:
        items = [edit(item, rest, change) if type(item) is dict else None for item in value]
        if all(item is None for item in items):
            return None
        return [new if new is not None else old for old, new in zip(value, items)]
    return None


def _set(node: dict[str, Any], parts: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``node`` with ``value`` at ``parts`` (objects created on the way)."""
    copy = dict(node)
    if len(parts) == 1:
        copy[parts[0]] = value
    else:
        child = copy.get(parts[0])
        copy[parts[0]] = _set(child if type(child) is dict else {}, parts[1:], value)
    return copy


class FieldRules:
    """--redact-field and --hash-field, compiled once."""

    def __init__(self, redact: tuple[str, ...], hashed: tuple[str, ...], key: Secret | None) -> None:
        self._redact = [(tuple(name.split(".")), schema.field_type(name)) for name in redact]
        self._hash = [tuple(name.split(".")) for name in hashed]
        self._key = key.reveal().encode() if key is not None else b""
        self._cache: dict[str, str] = {}
        self.active = bool(self._redact or self._hash)

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        for parts, kind in self._redact:
            changed = edit(doc, parts, lambda value, kind=kind: _redacted(value, kind))
            if changed is not None:
                doc = changed
        for parts in self._hash:
            if parts == ("client", "ip"):
                doc = self._hash_ip(doc)
                continue
            changed = edit(doc, parts, self._hashed)
            if changed is not None:
                doc = changed
        return doc

    def _hashed(self, value: Any) -> Any:
        if value is None:
            return None
        if type(value) is not str:
            return keyed_hash(self._key, value)
        # Hashed values repeat (the same clients, users, sessions): remember the last few thousand.
        found = self._cache.get(value)
        if found is None:
            if len(self._cache) >= _HASH_CACHE:
                self._cache.clear()
            found = self._cache[value] = keyed_hash(self._key, value)
        return found

    def _hash_ip(self, doc: dict[str, Any]) -> dict[str, Any]:
        client = doc.get("client")
        if type(client) is not dict or client.get("ip") is None:
            return doc
        address = self._hashed(client["ip"])
        client = dict(client)
        del client["ip"]
        if client.get("address") is None or client.get("address") == doc["client"]["ip"]:
            client["address"] = address
        doc = dict(doc)
        doc["client"] = client
        return doc


def _redacted(value: Any, kind: str | None) -> Any:
    if value is None:
        return None
    if type(value) in (dict, list) or kind not in (None, schema.KEYWORD, schema.TEXT, schema.FLATTENED):
        return _DELETE
    return REDACTED


# -- pattern redaction -----------------------------------------------------

class Redactor:
    """Applies patterns to every string of a document; see ``patterns`` for the prefilters."""

    def __init__(self, patterns: tuple[Pattern, ...]) -> None:
        self.patterns = patterns
        self._lowered = any(p.lowered for p in patterns)
        # (literal, gate, search, pattern) of every literal prefilter, each regex compiled once.
        found = [(literal, gate, search, pattern) for pattern in patterns
                 if pattern.search is None and pattern.prefilter is None
                 for literal, (gate, search) in zip(pattern.byte_literals, pattern.checks())]
        self._checks = tuple((gate, search, pattern) for _, gate, search, pattern in found)
        self._functions = tuple(p for p in patterns if p.prefilter is not None)
        self._user = tuple(p for p in patterns if p.search is not None)
        # Only literal prefilters on the bytes as they are (the defaults): the short loop below.
        self._literal_only = not (self._lowered or self._functions or self._user)
        # Those literals, when they are all the prefilter looks for (else None),
        # and each with its gate and search (as in ``_checks``).
        self.literals: tuple[bytes, ...] | None = (
            tuple(literal for literal, _, _, _ in found) if self._literal_only else None)
        self.literal_checks = tuple((literal, gate, search) for literal, gate, search, _ in found
                                    if self._literal_only)

    def triggered(self, doc: dict[str, Any], data: bytes) -> tuple[Pattern, ...]:
        """The patterns that may match somewhere in ``doc`` (serialised as ``data``)."""
        if self._literal_only:  # runs for every document: nearly always finds nothing
            found: list[Pattern] | None = None
            for gate, search, pattern in self._checks:
                if (gate is None or gate in data) and search(data) is not None:
                    if found is None:
                        found = [pattern]
                    elif pattern not in found:
                        found.append(pattern)
            return () if found is None else tuple(found)
        hits: list[Pattern] = []
        lowered = data.lower() if self._lowered else data
        for gate, search, pattern in self._checks:
            if gate is not None and gate not in data:
                continue
            if search(lowered if pattern.lowered else data) is not None and pattern not in hits:
                hits.append(pattern)
        for pattern in self._functions:
            if pattern.prefilter(data):  # type: ignore[misc]
                hits.append(pattern)
        if self._user:
            joined = None
            for pattern in self._user:
                if pattern.anchored:
                    hits.append(pattern)
                    continue
                if joined is None:
                    joined = _joined_text(doc, data)
                if pattern.search.search(joined) is not None:  # type: ignore[union-attr]
                    hits.append(pattern)
        return tuple(hits)

    def scrub(self, text: str, patterns: tuple[Pattern, ...] | None = None) -> tuple[str, int]:
        total = 0
        for pattern in self.patterns if patterns is None else patterns:
            if pattern.may_match(text):
                text, count = pattern.substitute(text)
                total += count
        return text, total

    def redact(self, doc: dict[str, Any], patterns: tuple[Pattern, ...]) -> tuple[dict[str, Any], int]:
        """``doc`` with ``patterns`` applied everywhere, and the number of replacements."""
        walker = _Walker(self, patterns)
        new = walker.node(doc, 0)
        return (new if new is not None else doc), walker.count


class _Walker:
    def __init__(self, redactor: Redactor, patterns: tuple[Pattern, ...]) -> None:
        self.scrub = redactor.scrub
        self.patterns = patterns
        self.ints = any(p.kind == "card" for p in patterns)
        self.secret_keys = any(p.secret_keys for p in patterns)
        self.count = 0

    def text(self, text: str) -> str | None:
        new, count = self.scrub(text, self.patterns)
        if count:
            self.count += count
            return new
        return None

    def value(self, value: Any, depth: int) -> Any:
        """The new value, or None when unchanged."""
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is dict:
            return self.node(value, depth + 1)
        if kind is list or kind is tuple:
            return self.sequence(value, depth + 1)
        if kind is int and self.ints and abs(value) >= 10 ** 12:
            return self.text(str(value))
        if isinstance(value, _SCALARS):
            return None
        # Written by orjson's default=str (or natively, e.g. a dataclass): scrub its text and,
        # if that redacts anything, write the scrubbed text instead.
        try:
            text = str(value)
        except Exception:
            return None
        return self.text(text)

    def node(self, node: dict[str, Any], depth: int) -> dict[str, Any] | None:
        if depth > MAX_DEPTH:
            return {"value": DEPTH_MARKER}
        copy = None
        for key, value in node.items():
            new_key = self.text(key) if type(key) is str else None
            if self.secret_keys and type(key) is str and value is not None \
                    and not isinstance(value, (dict, list, tuple, bool)) and SECRET_KEY.search(key):
                new = marker("secret") if value != marker("secret") else None
                if new is not None:
                    self.count += 1
            else:
                new = self.value(value, depth)
            if new is None and new_key is None:
                continue
            if copy is None:
                copy = dict(node)
            if new_key is not None:
                del copy[key]
                while new_key in copy:  # two keys redacted alike: keep both values
                    new_key += "_"
                copy[new_key] = value if new is None else new
            else:
                copy[key] = new
        return copy

    def sequence(self, items: Any, depth: int) -> list[Any] | None:
        if depth > MAX_DEPTH:
            return [DEPTH_MARKER]
        copy = None
        for index, item in enumerate(items):
            new = self.value(item, depth)
            if new is not None:
                if copy is None:
                    copy = list(items)
                copy[index] = new
        return copy


def _joined_text(doc: dict[str, Any], data: bytes) -> str:
    """A text holding every string of ``doc`` intact, for the user patterns' prefilter.

    Without a backslash the JSON text is that (orjson escapes nothing else);
    otherwise the strings are gathered by a walk.
    """
    if b"\\" not in data:
        return data.decode("utf-8", "replace")
    strings: list[str] = []
    _strings(doc, strings, 0)
    return "\x00".join(strings)


def _strings(node: Any, out: list[str], depth: int) -> None:
    """Every string (keys included) of a document, for the user patterns' prefilter."""
    if depth > MAX_DEPTH:
        return
    if type(node) is dict:
        for key, value in node.items():
            if type(key) is str:
                out.append(key)
            if type(value) is str:
                out.append(value)
            elif not isinstance(value, _SCALARS):
                _strings(value, out, depth + 1)
    elif type(node) in (list, tuple):
        for value in node:
            if type(value) is str:
                out.append(value)
            elif not isinstance(value, _SCALARS):
                _strings(value, out, depth + 1)
    elif not isinstance(node, (str, *_SCALARS)):
        out.append(str(node))


# -- the hash key ----------------------------------------------------------

def load_or_create_hash_key(state_dir: str | os.PathLike[str]) -> Secret:
    """STATE_DIR/hash_key, created once (32 random bytes, hex) with mode 0600.

    Creation is atomic and race-free: the key is written and fsynced to a
    temporary file, then hard-linked into place, which fails if another
    process got there first (then its key is used). Losing the file changes
    every hash, so a damaged one is an error, never silently replaced.
    """
    directory = Path(state_dir)
    path = directory / HASH_KEY_FILE
    if not path.exists():
        _create_key(directory, path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise StateError(f"cannot read the hash key {path}: {error}") from error
    # (strip() keeps NULs: a file a crash left as zeros passed as a key known
    # to everyone, and every pseudonym changed, silently.)
    if len(text) < 32 or not text.isprintable():
        why = "shorter than 32 characters" if len(text) < 32 else "it holds control characters (NUL bytes?)"
        raise StateError(f"hash key {path} is damaged ({why}); restore it, or delete it to start a new key "
                         "(hashes will then no longer join with earlier ones)")
    if mode & 0o077:
        log.warning("hash key is readable by other users", path=str(path), mode=oct(mode & 0o777))
    return Secret(text)


def _create_key(directory: Path, path: Path) -> None:
    temp = None
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".hash_key.", suffix=".tmp")  # 0600
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return
        except OSError:  # a file system without hard links: exclusive create, same content
            with open(temp, encoding="ascii") as source:
                content = source.read()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        fsync_directory(directory)
    except OSError as error:
        raise StateError(f"cannot create the hash key {path}: {error}") from error
    finally:
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass
