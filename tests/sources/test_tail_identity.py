"""File identity: fingerprints, generations and keys."""

from __future__ import annotations

import os

from agent.sources.identity import (fingerprint_length, hash_prefix, next_generation,
                                    read_fingerprint, source_key)


def test_fingerprint_covers_the_first_line_capped():
    assert fingerprint_length(b"abc\ndef\n", 1024) == 4
    assert fingerprint_length(b"abcdef", 1024) == 6
    assert fingerprint_length(b"x" * 2000 + b"\n", 1024) == 1024
    assert fingerprint_length(b"", 1024) == 0


def test_read_fingerprint_uses_pread_and_keeps_the_position(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"first line\nsecond\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        fingerprint = read_fingerprint(fd, 1024)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
    finally:
        os.close(fd)
    assert fingerprint.length == 11 and fingerprint.digest == hash_prefix(b"first line\n")


def test_key_is_deterministic_and_separates_every_component():
    key = source_key(1, 2, 0, "aa")
    assert key == source_key(1, 2, 0, "aa") and len(key) == 16
    int(key, 16)
    others = {source_key(9, 2, 0, "aa"), source_key(1, 9, 0, "aa"), source_key(1, 2, 1, "aa"),
              source_key(1, 2, 0, "ab")}
    assert key not in others and len(others) == 4
    assert source_key(12, 3, 0, "x") != source_key(1, 23, 0, "x")


def test_next_generation_counts_only_the_same_fingerprint():
    assert next_generation([], "a") == 0
    assert next_generation([("b", 4)], "a") == 0
    assert next_generation([("a", 0), ("a", 2), ("b", 7)], "a") == 3
