"""File identity: which file, and which *content* of that file, a line came from.

A log file is identified by ``(dev, inode)`` plus a fingerprint of its first
bytes, plus a generation counter:

* the fingerprint is a hash of the first ``fp_len`` bytes, where ``fp_len`` is
  ``min(first newline position + 1, fingerprint_bytes)`` (or the length of a
  first line emitted without its newline). It tells a reused inode, or a file
  truncated and rewritten, from the content the registry remembers;
* the generation separates contents that share dev, inode *and* fingerprint
  (a log truncated and rewritten with the same header line, or an inode reused
  for a new file that starts the same). It is one more than the highest
  generation the registry remembers for that dev/inode/fingerprint, else 0;
* ``source_key`` hashes the four together. It seeds document ids downstream, so
  it is a pure function: the same content at the same dev/inode/generation has
  the same key after a crash whether or not the registry was saved.

Guarantee: ``source_key`` and the fingerprint arithmetic are pure; the few
readers (``read_fingerprint``, ``prefix_hasher``) use ``pread`` and never move
a file position, and ``names_file`` only stats.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The hash of the first ``length`` bytes of a file."""

    length: int
    digest: str


def hash_prefix(data: bytes) -> str:
    """The fingerprint hash of ``data`` (32 hex chars of blake2b)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def fingerprint_length(head: bytes, fingerprint_bytes: int) -> int:
    """How many of the file's first bytes the fingerprint covers.

    ``head`` is the file's beginning; if it holds no newline within
    ``fingerprint_bytes`` the whole of it (capped) is used, which is the case
    of a first line emitted as a partial line.
    """
    newline = head.find(b"\n", 0, fingerprint_bytes)
    if newline >= 0:
        return newline + 1
    return min(len(head), fingerprint_bytes)


def read_prefix(fd: int, length: int) -> bytes:
    """The first ``length`` bytes of the open file (fewer if it is shorter)."""
    parts = []
    got = 0
    while got < length:
        data = os.pread(fd, length - got, got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def read_fingerprint(fd: int, fingerprint_bytes: int) -> Fingerprint:
    """Fingerprint of an open file's first line (as it is on disk now)."""
    head = read_prefix(fd, fingerprint_bytes)
    length = fingerprint_length(head, fingerprint_bytes)
    return Fingerprint(length, hash_prefix(head[:length]))


def prefix_hasher(fd: int):
    """``fingerprint_of(n)`` for ``Registry.lookup``: the hash of the first n bytes."""
    def fingerprint_of(length: int) -> str:
        return hash_prefix(read_prefix(fd, length))
    return fingerprint_of


def next_generation(known: Iterable[tuple[str, int]], fp_hash: str) -> int:
    """The generation for a new content with ``fp_hash``.

    ``known`` holds ``(fp_hash, generation)`` of every registry entry (live or
    gone) with the same dev/inode.
    """
    generations = [generation for digest, generation in known if digest == fp_hash]
    return max(generations) + 1 if generations else 0


def source_key(dev: int, inode: int, generation: int, fp_hash: str) -> str:
    """The stable key of one content of one file: 16 hex chars."""
    material = f"{dev}:{inode}:{generation}:{fp_hash}".encode()
    return hashlib.blake2b(material, digest_size=8).hexdigest()


def names_file(path: str, dev: int, inode: int) -> bool:
    """Does ``path`` (still) name the file dev/inode? (rename/rotation check)"""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # cannot tell (EACCES on a directory...): assume nothing moved
    return (info.st_dev, info.st_ino) == (dev, inode)
