"""Glob patterns as text: which paths ``glob.glob(pattern, recursive=True)``
could return, decided without the file system.

``translate`` (a regex of the paths a glob can return: the watcher's hints
are checked with it), ``base_dir`` (the directory to watch), ``below`` (can
a glob reach inside a directory: the agent's own files) and ``overlap`` (can
two globs match the same path: ``inputs:`` entries). All follow glob's rules:
a segment's wildcard does not match a leading dot, and ``**`` (a whole
segment) matches any number of directories, none of them hidden.
"""

from __future__ import annotations

import functools
import re

MAGIC = re.compile(r"[*?[]")


def _segment_regex(segment: str) -> str:
    out = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            close = _bracket_end(segment, i)
            if close < 0:
                out.append(re.escape(char))
            else:
                out.append(_bracket(segment[i + 1:close]))
                i = close
        else:
            out.append(re.escape(char))
        i += 1
    regex = "".join(out)
    # glob's wildcards do not match a leading dot; mirror that.
    return ("(?!\\.)" + regex) if segment[:1] in ("*", "?", "[") else regex


def _bracket_end(segment: str, start: int) -> int:
    """Where the set opened by the ``[`` at ``start`` closes (-1: it does not)."""
    return segment.find("]", start + 2 if segment[start + 1:start + 2] in ("!", "]") else start + 1)


def _bracket(body: str) -> str:
    """The regex of a glob set ``[body]`` (``[!...]`` negates)."""
    if body.startswith("!"):
        body = "^" + body[1:]
    return "[" + body.replace("\\", "\\\\") + "]"


def translate(pattern: str) -> re.Pattern[str]:
    """A regex matching the paths ``glob.glob(pattern, recursive=True)`` could return."""
    segments = pattern.split("/")
    parts = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append("(?:(?!\\.)[^/]+(?:/(?!\\.)[^/]+)*)?" if last else "(?:(?!\\.)[^/]+/)*")
        else:
            parts.append(_segment_regex(segment) + ("" if last else "/"))
    return re.compile("".join(parts) + r"\Z")


def below(pattern: str, directory: str) -> bool:
    """Can the glob ``pattern`` match a path strictly inside ``directory``
    (both absolute and normalised)? Decided on the text, as glob would walk:
    ``**`` passes through no hidden directory."""
    return _below(tuple(pattern.split("/")), tuple(directory.split("/")))


def _below(globs: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not parts:
        return bool(globs)  # any segment left can name something inside
    if not globs:
        return False
    if globs[0] == "**":
        return _below(globs[1:], parts) or (not parts[0].startswith(".") and _below(globs, parts[1:]))
    return bool(re.fullmatch(_segment_regex(globs[0]), parts[0])) and _below(globs[1:], parts[1:])


def overlap(first: str, second: str) -> bool:
    """Could the globs ``first`` and ``second`` (absolute, normalised) match
    the same path? Exact for ``*``, ``?``, ``[...]`` and ``**``, except that
    two bracket sets are compared on ASCII and the characters they name."""
    a = [None if segment == "**" else _tokens(segment) for segment in first.split("/")]
    b = [None if segment == "**" else _tokens(segment) for segment in second.split("/")]

    @functools.cache
    def meet(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        # A ``**`` matches no further segment, or also the other glob's next
        # one (never a hidden one: glob's ``**`` does not enter them).
        if i < len(a) and a[i] is None:
            return meet(i + 1, j) or (j < len(b) and _passable(b[j]) and meet(i, j + 1))
        if j < len(b) and b[j] is None:
            return meet(i, j + 1) or (i < len(a) and _passable(a[i]) and meet(i + 1, j))
        if i == len(a) or j == len(b):
            return False
        return _segments_meet(a[i], b[j]) and meet(i + 1, j + 1)  # type: ignore[arg-type]

    return meet(0, 0)


# A segment as tokens: "*", or a one-character class (a literal, "?" or a set's regex).
_Token = tuple[str, str]
_PROBE = "".join(chr(code) for code in range(32, 127) if chr(code) != "/")


def _tokens(segment: str) -> tuple[_Token, ...]:
    tokens: list[_Token] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            tokens.append(("*", ""))
        elif char == "?":
            tokens.append(("class", "[^/]"))
        elif char == "[" and _bracket_end(segment, i) >= 0:
            close = _bracket_end(segment, i)
            tokens.append(("class", _bracket(segment[i + 1:close])))
            i = close
        else:
            tokens.append(("char", char))
        i += 1
    return tuple(tokens)


def _passable(tokens: tuple[_Token, ...] | None) -> bool:
    return tokens is None or not _hidden(tokens)


def _hidden(tokens: tuple[_Token, ...]) -> bool:
    """Only names starting with a dot match (which a wildcard at the start never does)."""
    return bool(tokens) and tokens[0] == ("char", ".")


def _wild_start(tokens: tuple[_Token, ...]) -> bool:
    return bool(tokens) and tokens[0][0] != "char"


def _segments_meet(x: tuple[_Token, ...], y: tuple[_Token, ...]) -> bool:
    if (_wild_start(x) and _hidden(y)) or (_wild_start(y) and _hidden(x)):
        return False

    @functools.cache
    def meet(i: int, j: int) -> bool:
        if i == len(x) and j == len(y):
            return True
        if i < len(x) and x[i][0] == "*":  # matches nothing more, or one more character of y
            return meet(i + 1, j) or (j < len(y) and meet(i, j + 1))
        if j < len(y) and y[j][0] == "*":
            return meet(i, j + 1) or (i < len(x) and meet(i + 1, j))
        if i == len(x) or j == len(y):
            return False
        return _chars_meet(x[i], y[j]) and meet(i + 1, j + 1)

    return meet(0, 0)


def _chars_meet(x: _Token, y: _Token) -> bool:
    if x[0] == "char" and y[0] == "char":
        return x[1] == y[1]
    if x[0] == "char" or y[0] == "char":
        char, other = (x[1], y[1]) if x[0] == "char" else (y[1], x[1])
        return bool(re.fullmatch(other, char))
    probe = _PROBE + x[1] + y[1]
    return any(re.fullmatch(x[1], char) and re.fullmatch(y[1], char) for char in set(probe) if char != "/")


def base_dir(pattern: str) -> tuple[str, bool]:
    """The deepest directory without wildcards, and whether matches lie deeper."""
    segments = pattern.split("/")
    fixed = []
    for segment in segments[:-1]:
        if MAGIC.search(segment):
            return "/".join(fixed) or "/", True
        fixed.append(segment)
    return "/".join(fixed) or "/", False
