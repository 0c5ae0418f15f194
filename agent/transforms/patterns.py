"""Secret patterns: what --redact-pattern finds and what replaces it.

Each pattern has a *kind* (the ``<kind>`` of ``[REDACTED:<kind>]``), a
``substitute(text) -> (text, count)`` and a cheap prefilter: literal bytes
without which the pattern cannot match. The literals are searched in the
serialised document (orjson escapes none of them and writes keys and values
alike), so a document with no literal costs one substring search per literal
and is never walked. Built-ins:

    name      on by default   finds                                        prefilter
    bearer    yes             ``Bearer <token>`` (RFC 6750 token, >= 8      ``earer``, ``eyJ``
                              chars, with a digit or >= 24 chars) and
                              JSON Web Tokens anywhere (``eyJ...``)
    api_key   yes             ``sk-...`` (OpenAI, Anthropic, DeepSeek...),  ``sk-``, ``hf_``, ``AIza``
                              ``hf_...`` (Hugging Face), ``AIza...``
                              (Google / Gemini)
    email     no              addresses (local part <= 64 chars)            ``@``
    card      no              13-19 digits, contiguous or grouped as        a 13-digit run once
                              printed (4-4-4-4, 4-6-5...), issuer digit     spaces and dashes are removed
                              2-6, Luhn-valid
    secret    no              ``password=``, ``api_key:``, ``token=``,      ``passw``, ``secret``, ``key``,
                              ``client_secret=``... assignments, and        ``token``, ``authorization``
                              values under keys with such names              (in the lower-cased document)

Why these defaults: a credential is never legitimate log content, the
built-in credential patterns have essentially no false positives and their
prefilters cost 5 substring searches per document. E-mail addresses and
card-like digit runs are off: e-mails are often the identifiers operators
search by (hash them with --hash-field instead), and digit runs are common in
ML logs (ids, epoch nanoseconds), where a Luhn check still passes one in ten.
``secret`` is off because ``token`` and ``key`` occur in most LLM documents
(``gen_ai.usage.input_tokens``), so its prefilter nearly always fires.

A user pattern (``--redact-pattern REGEX``, see ``parse``) has no literal
prefilter: its prefilter is one search of the serialised document's text
(when it holds no backslash, i.e. no escaped character; otherwise of the
document's strings gathered by a walk), or none when the regex looks at a
string's edges (``^``, ``$``, ``\\A``, ``\\Z``, look-arounds): then every
document is walked.

The built-in patterns repeat single character classes only (the e-mail local
part is bounded to 64), so a search stays linear in the text's length however
long the line; card numbers are checked in pure Python per digit group, about
2 s per MiB of nothing but digit groups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

REDACTED = "[REDACTED]"
# Gate bytes of literals that contain a byte rare in log documents.
GATES: dict[bytes, bytes] = {b"eyJ": b"J", b"AIza": b"I"}
DEFAULT_PATTERNS: tuple[str, ...] = ("bearer", "api_key")


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


@dataclass(frozen=True)
class Pattern:
    kind: str
    substitute: Callable[[str], tuple[str, int]]
    literals: tuple[str, ...] = ()     # any of them is in every text the pattern matches
    lowered: bool = False              # ... once the text is lower-cased
    prefilter: Callable[[bytes], bool] | None = None  # replaces the literals' document check
    search: re.Pattern[str] | None = None  # user patterns: the prefilter is the regex itself
    anchored: bool = False             # a user pattern with ^, $, \\b...: no joined-text prefilter
    secret_keys: bool = False          # also redact values under keys with secret-looking names
    byte_literals: tuple[bytes, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "byte_literals", tuple(lit.encode() for lit in self.literals))

    def checks(self) -> tuple[tuple[bytes | None, Callable[[bytes], Any]], ...]:
        """(gate, search) pairs for the document prefilter.

        ``search`` is a compiled literal regex: CPython's regex engine finds a
        multi-byte literal about twice as fast as ``bytes.__contains__``. A
        literal holding a byte rare in logs is searched only when that gate
        byte is present (one memchr).
        """
        return tuple((GATES.get(literal), re.compile(re.escape(literal)).search)
                     for literal in self.byte_literals)

    def may_match(self, text: str) -> bool:
        """Cheap per-string check used while walking a document."""
        if not self.literals:
            return True
        probe = text.lower() if self.lowered else text
        for literal in self.literals:
            if literal in probe:
                return True
        return False


def _regex_substitute(regex: re.Pattern[str], kind: str, group: int = 0,
                      accept: Callable[[str], bool] | None = None) -> Callable[[str], tuple[str, int]]:
    replacement = marker(kind)

    def substitute(text: str) -> tuple[str, int]:
        count = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal count
            secret = match.group(group)
            if not secret or (accept is not None and not accept(secret)):
                return match.group(0)
            count += 1
            if group == 0:
                return replacement
            start, end = match.start(group) - match.start(0), match.end(group) - match.start(0)
            whole = match.group(0)
            return whole[:start] + replacement + whole[end:]

        new = regex.sub(replace, text)
        return (new, count) if count else (text, 0)

    return substitute


# -- built-ins -------------------------------------------------------------

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24}"
                    r"(?![A-Za-z0-9\-])")
# RFC 6750 b64token after the scheme name; "%20" and "+" for URL-encoded headers.
_BEARER = re.compile(r"(?<![A-Za-z0-9])[Bb]earer(?:[ \t]+|%20|\+)([A-Za-z0-9\-._~+/]{8,}=*)")
# A JSON Web Token anywhere: base64url('{"') is "eyJ" for both header and payload.
_JWT = re.compile(r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}")
_API_KEY = re.compile(r"(?<![A-Za-z0-9])(?:sk-[A-Za-z0-9_\-]{20,}|hf_[A-Za-z0-9]{30,}"
                      r"|AIza[0-9A-Za-z_\-]{35})(?![A-Za-z0-9])")
_GROUP = re.compile(r"[0-9]+")
_CARD = re.compile(r"(?<![0-9A-Za-z])[0-9](?:[ \-]?[0-9]){12,}(?![0-9A-Za-z])")
_SECRET_NAMES = (r"(?:api[_\-]?key|x-api-key|apikey|access[_\-]?token|refresh[_\-]?token|auth[_\-]?token"
                 r"|id[_\-]?token|token|client[_\-]?secret|secret[_\-]?key|secret|passw(?:or)?d|pwd"
                 r"|authorization)")
_SECRET = re.compile(r"(?i)(?<![A-Za-z0-9])" + _SECRET_NAMES
                     + r"""(["']?[ \t]{0,4}[:=][ \t]{0,4}["']?)(?!\[REDACTED)"""
                     + r"""((?:[Bb]asic |[Bb]earer )?[^\s"'&,;}\]]{4,})""")
SECRET_KEY = re.compile(r"(?i)(?:\A|[_\-.])" + _SECRET_NAMES + r"\Z")


def _chain(*steps: Callable[[str], tuple[str, int]]) -> Callable[[str], tuple[str, int]]:
    def substitute(text: str) -> tuple[str, int]:
        total = 0
        for step in steps:
            text, count = step(text)
            total += count
        return text, total
    return substitute


def _bearer_token(token: str) -> bool:
    return len(token) >= 24 or any(c.isdigit() for c in token)


def _api_key(token: str) -> bool:
    # sk- slugs of words ("sk-learn-...") have no digit; real keys always do.
    return not token.startswith("sk-") or any(c.isdigit() for c in token)


def luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_number(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn(digits)


def _card_spans(sizes: list[int], first: int) -> list[int]:
    """Last-group indexes of the card shapes starting at group ``first``, longest first.

    Shapes as printed: one run of 13-19 digits; groups of four with a last
    group of one to four (4-4-4-4, 4-4-4-4-3...); Amex 4-6-5 and Diners 4-6-4.
    Anything else (a space-separated array of small numbers) is not a card.
    """
    size = sizes[first]
    if size >= 13:
        return [first] if size <= 19 else []
    if size != 4:
        return []
    found = []
    if first + 2 < len(sizes) and sizes[first + 1] == 6 and sizes[first + 2] in (4, 5):
        found.append(first + 2)
    total, last = 4, first
    while last + 1 < len(sizes) and total < 16 and sizes[last + 1] == 4:
        last += 1
        total += 4
    if last + 1 < len(sizes) and 1 <= sizes[last + 1] <= 4 and total + sizes[last + 1] <= 19:
        found.append(last + 1)
    if total >= 13:
        found.append(last)
    return sorted(found, reverse=True)


def _redact_card_run(run: str) -> tuple[str, int]:
    """Redact the card numbers in one run of digit groups (several may share a run)."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    digits = [run[start:end] for start, end in groups]
    sizes = [len(group) for group in digits]
    out, cursor, count, first = [], 0, 0, 0
    while first < len(groups):
        found = None
        if digits[first][0] in "23456":
            found = next((last for last in _card_spans(sizes, first)
                          if _card_number("".join(digits[first:last + 1]))), None)
        if found is None:
            first += 1
            continue
        out.append(run[cursor:groups[first][0]])
        out.append(marker("card"))
        cursor = groups[found][1]
        count += 1
        first = found + 1
    if not count:
        return run, 0
    out.append(run[cursor:])
    return "".join(out), count


def _card_substitute(text: str) -> tuple[str, int]:
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        new, found = _redact_card_run(match.group(0))
        count += found
        return new

    new = _CARD.sub(replace, text)
    return (new, count) if count else (text, 0)


_DIGITS = bytes(ord("0") if chr(i).isdigit() and i < 128 else ord("x") for i in range(256))
_THIRTEEN = b"0" * 13


_STAMP_KEY = b'{"@timestamp":'


def email_prefilter(data: bytes) -> bool:
    """An '@' other than the one of the leading ``"@timestamp"`` key every document has."""
    return data.find(b"@", len(_STAMP_KEY) if data.startswith(_STAMP_KEY) else 0) >= 0


def card_prefilter(data: bytes) -> bool:
    """A run of >= 13 digits once spaces and dashes are removed: one translate, one search."""
    return _THIRTEEN in data.translate(_DIGITS, b" -")


BUILTINS: dict[str, Pattern] = {
    "bearer": Pattern("bearer", _chain(_regex_substitute(_BEARER, "bearer", 1, _bearer_token),
                                       _regex_substitute(_JWT, "bearer")), ("earer", "eyJ")),
    "api_key": Pattern("api_key", _regex_substitute(_API_KEY, "api_key", 0, _api_key),
                       ("sk-", "hf_", "AIza")),
    "email": Pattern("email", _regex_substitute(_EMAIL, "email"), ("@",), prefilter=email_prefilter),
    "card": Pattern("card", _card_substitute, prefilter=card_prefilter),
    "secret": Pattern("secret", _regex_substitute(_SECRET, "secret", 2),
                      ("passw", "pwd", "secret", "key", "token", "authorization"), lowered=True,
                      secret_keys=True),
}

# Constructs that see a string's edges (the prefilter's text has quotes or NULs there).
_ANCHORS = re.compile(r"(?<!\\)[$^]|\\[AZ]|\(\?<?[=!]")


def parse(spec: str) -> Pattern:
    """A built-in name or a regular expression. ValueError says why one is unusable.

    A regex replaces its whole match with ``[REDACTED:pattern]``; with a named
    group, only that group is replaced and the group's name is the kind:
    ``password=(?P<password>\\S+)`` gives ``password=[REDACTED:password]``.
    """
    if spec in BUILTINS:
        return BUILTINS[spec]
    try:
        regex = re.compile(spec)
    except re.error as error:
        raise ValueError(f"not a valid regular expression: {error}") from None
    if regex.search("") is not None:
        raise ValueError("matches the empty string, so it would match everywhere")
    kind, group = "pattern", 0
    if regex.groupindex:
        kind, group = min(regex.groupindex.items(), key=lambda item: item[1])
    return Pattern(kind, _regex_substitute(regex, kind, group), search=regex,
                   anchored=bool(_ANCHORS.search(spec)))


def resolve(specs: tuple[str, ...], defaults: bool) -> tuple[Pattern, ...]:
    """The patterns in force: the defaults (when on) then ``specs``, each once."""
    chosen: list[Pattern] = []
    seen: set[str] = set()
    for spec in (DEFAULT_PATTERNS if defaults else ()) + tuple(specs):
        if spec in seen:
            continue
        seen.add(spec)
        try:
            chosen.append(parse(spec))
        except ValueError as error:
            raise ValueError(f"--redact-pattern {spec!r}: {error}") from None
    return tuple(chosen)
