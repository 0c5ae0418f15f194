"""Transforms: enrichment, privacy and volume rules applied to each document
before it is serialised, i.e. before anything touches disk or the network.

The seam (used by ``agent.enrich.Enricher``)::

    validate(settings)                           # ValueError naming the option, at start-up
    host = gather(config.host_name)              # once
    transforms = Transforms(settings, host)
    data = transforms.process(doc, path, doc_id) # bytes to write, or None: sampled out
    doc = transforms.apply(doc, path, doc_id)    # the same, as the final dict (serialises once
                                                 # internally: prefer process)
    transforms.template_literals()               # what a document template may rely on (agent.enrich)
    transforms.may_redact(data)                  # the redaction prefilter alone, for a template's value
    key = load_or_create_hash_key(state_dir)     # when --hash-field has no key
    parse_assignment("team=search", "--label")   # -> ("team", "search"), for the CLI values

Order, per document (each step is skipped when its options are off):

1. sampling (decided on the line's own fields and the document id);
2. payload fields removed (unless --keep-payloads);
3. --redact-field / --hash-field (hashes see the original value);
4. ``model.sample_rate`` on sampled events;
5. defaults merged where the document has no value: path template fields,
   then Kubernetes path fields, then --field / --label / --service-name and
   host metadata (the log line wins over all of them);
6. serialisation, with pattern redaction (``[REDACTED:<kind>]``, tag
   ``redacted``) and truncation of oversized fields (tag
   ``field_truncated``) done only when the serialised bytes show they are
   needed: a document with nothing to redact and no long field is
   serialised exactly once and never walked. The agent and host objects,
   the same in nearly every document, are appended as bytes serialised at
   start-up (so ``agent`` then ``host`` are the last keys).

Cost per typical document (~15 fields, ~800 bytes; measured on the 2-vCPU
development VM, beyond the one ``orjson.dumps`` the agent needs anyway):
~1.1 us with no pattern, ~2.8 us with the default patterns, ~3.3 us with
e-mail, bearer and card; a user regex ~11 us (it searches the whole text);
``secret`` ~60 us on LLM documents (its prefilter fires on "tokens").

Guarantees: ``process``/``apply`` never raise on any document (a value
orjson cannot write is repaired, see ``truncate.sanitise``); with payloads
stripped no payload text is written; no enabled pattern matches any string
of the result; the sampling decision depends on the document id only.
The caller's top-level dict may be changed in place; nested containers are
never changed in place (the parser's record may share them), and the result
may share nested containers with other results, so it is read-only: serialise
it, do not edit it. One instance per reader thread (the path cache is not
locked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import orjson

from agent.selflog import Secret
from agent.transforms import patterns as _patterns
from agent.transforms import schema
from agent.transforms.model_path import PathFields, compile_templates
from agent.transforms.patterns import DEFAULT_PATTERNS
from agent.transforms.payloads import has_body, strip_payloads
from agent.transforms.redact import FieldRules, Redactor, load_or_create_hash_key
from agent.transforms.sample import Sampler
from agent.transforms.static import HostInfo, HostMerge, build_tree, convert, gather, merge_defaults
from agent.transforms.truncate import key_path_problem, sanitise, truncate_fields

__all__ = [
    "DEFAULT_MAX_FIELD_BYTES", "DEFAULT_PATTERNS", "HostInfo", "TAG_FIELD_TRUNCATED",
    "TAG_PAYLOAD_REMOVED", "TAG_REDACTED", "TransformSettings", "Transforms", "gather",
    "load_or_create_hash_key", "parse_assignment", "validate",
]

TAG_REDACTED = "redacted"  # a pattern matched and was replaced
TAG_FIELD_TRUNCATED = "field_truncated"  # a string field was cut to --max-field-bytes
TAG_PAYLOAD_REMOVED = "payload_removed"  # payload fields were stripped

DEFAULT_MAX_FIELD_BYTES = 32000
MIN_HASH_KEY_CHARS = 16


@dataclass(frozen=True)
class TransformSettings:
    fields: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    service_name: str | None = None
    model_from_path: tuple[str, ...] = ()
    kubernetes_paths: bool = True
    host_metadata: bool = True
    keep_payloads: bool = False
    redact_fields: tuple[str, ...] = ()
    redact_patterns: tuple[str, ...] = ()
    redact_defaults: bool = True
    hash_fields: tuple[str, ...] = ()
    hash_key: Secret | None = None
    sample_rate: float = 1.0
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES


def parse_assignment(text: str, flag: str) -> tuple[str, str]:
    """``"service.environment=prod"`` -> ``("service.environment", "prod")`` for --field / --label."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"{flag} {text!r}: expected NAME=VALUE")
    return name.strip(), value


def validate(settings: TransformSettings) -> None:
    """Raise ValueError naming the option and the reason for the first bad setting."""
    seen: dict[str, str] = {}
    for name, raw in settings.fields:
        _check_settable(name, "--field")
        try:
            convert(name, raw)
        except ValueError as error:
            raise ValueError(f"--field {name}={raw}: {error}") from None
        if name in seen and seen[name] != raw:
            raise ValueError(f"--field {name}: given twice with different values")
        seen[name] = raw
    for name in seen:
        for other in seen:
            if other.startswith(name + "."):
                raise ValueError(f"--field {name} and --field {other}: {name} cannot be both a value "
                                 "and an object")
    if settings.service_name is not None:
        if not settings.service_name.strip():
            raise ValueError("--service-name: empty")
        if "service.name" in seen and seen["service.name"] != settings.service_name:
            raise ValueError("--service-name and --field service.name=...: choose one")
    labels: dict[str, str] = {}
    for key, value in settings.labels:
        if not key or not schema.valid_name(key) or "." in key:
            raise ValueError(f"--label {key}={value}: a label key is letters, digits, '_', '-' or '@' "
                             "(no dots: they would turn the label into an object)")
        problem = key_path_problem("labels." + key)
        if problem is not None:
            raise ValueError(f"--label {key[:40]}...: {problem}")
        if key in labels and labels[key] != value:
            raise ValueError(f"--label {key}: given twice with different values")
        labels[key] = value
    compile_templates(settings.model_from_path)
    _patterns.resolve(settings.redact_patterns, settings.redact_defaults)
    redacted = set()
    for name in settings.redact_fields:
        _check_target(name, "--redact-field")
        redacted.add(name)
    for name in settings.hash_fields:
        _check_target(name, "--hash-field")
        if name in redacted:
            raise ValueError(f"--hash-field {name}: also given to --redact-field; choose one")
        kind = schema.field_type(name)
        if kind == schema.IP and name != "client.ip":
            raise ValueError(f"--hash-field {name}: an ip field cannot hold a hash")
        if kind == schema.OBJECT:
            raise ValueError(f"--hash-field {name}: names an object; name one of its fields")
        if kind in (schema.LONG, schema.DOUBLE, schema.DATE):
            raise ValueError(f"--hash-field {name}: a {kind} field cannot hold a hash "
                             "(use --redact-field to remove it)")
    if settings.hash_fields:
        if settings.hash_key is None:
            raise ValueError("--hash-field needs a key: --hash-key-file, MODELSCRIBE_HASH_KEY "
                             "or the one generated in the state directory")
        if len(settings.hash_key.reveal()) < MIN_HASH_KEY_CHARS:
            raise ValueError(f"--hash-key-file / MODELSCRIBE_HASH_KEY: the key must be at least "
                             f"{MIN_HASH_KEY_CHARS} characters")
    rate = settings.sample_rate
    if not isinstance(rate, (int, float)) or not math.isfinite(rate) or not 0 < rate <= 1:
        raise ValueError(f"--sample {rate}: the rate must be in (0, 1], e.g. 0.1 keeps one in ten")
    if not isinstance(settings.max_field_bytes, int) or settings.max_field_bytes < 64:
        raise ValueError(f"--max-field-bytes {settings.max_field_bytes}: at least 64")


def _check_known_root(name: str, flag: str) -> None:
    if not schema.known_root(name):
        raise ValueError(f"{flag} {name}: {name.split('.', 1)[0]} is not an ECS or model field set "
                         "(use extra.<name> or --label)")


def _check_settable(name: str, flag: str) -> None:
    if not schema.valid_name(name):
        raise ValueError(f"{flag} {name}: not a dotted field name")
    problem = key_path_problem(name)
    if problem is not None:
        raise ValueError(f"{flag} {name[:60]}...: {problem}")
    _check_known_root(name, flag)
    if schema.is_protected(name):
        raise ValueError(f"{flag} {name}: set by the agent itself")
    if name.split(".", 1)[0] in ("labels",):
        raise ValueError(f"{flag} {name}: use --label for labels")
    clash = schema.clashes(name)
    if clash is not None:
        raise ValueError(f"{flag} {name}: {clash} is a value, not an object")
    if schema.field_type(name) == schema.OBJECT:
        raise ValueError(f"{flag} {name}: names an object; name one of its fields")


def _check_target(name: str, flag: str) -> None:
    if not schema.valid_name(name):
        raise ValueError(f"{flag} {name}: not a dotted field name")
    _check_known_root(name, flag)
    if schema.is_unredactable(name):
        raise ValueError(f"{flag} {name}: the agent needs this field as it is")
    if schema.clashes(name) is not None:
        raise ValueError(f"{flag} {name}: {schema.clashes(name)} is a value, not an object")


class _Tail(NamedTuple):
    """Objects appended to serialised documents as bytes: ``tail`` is
    ``,"key":{...}...``; ``closing`` ends a document with it, ``alone`` is a
    document of nothing else."""

    tail: bytes
    closing: bytes
    alone: bytes

    @classmethod
    def of(cls, tail: bytes) -> _Tail:
        return cls(tail, tail + b"}", b"{" + tail[1:] + b"}")


class Transforms:
    """The per-document rules of one agent (see the module docstring)."""

    def __init__(self, settings: TransformSettings, host: HostInfo) -> None:
        validate(settings)
        self.settings = settings
        self._sampler = Sampler(settings.sample_rate) if settings.sample_rate < 1 else None
        self.samples = self._sampler is not None  # process() may return None (sampled out)
        self._strip = not settings.keep_payloads
        self._rules = FieldRules(settings.redact_fields, settings.hash_fields, settings.hash_key)
        self._redactor = Redactor(_patterns.resolve(settings.redact_patterns, settings.redact_defaults))
        self._scrub_all = (lambda text: self._redactor.scrub(text)[0]) if self._redactor.patterns else None
        static = build_tree(settings.fields, settings.labels, settings.service_name,
                            host if settings.host_metadata else None)
        # Configured values go through the patterns once, here, so they cannot
        # set off the prefilter of every document.
        static = self._scrubbed(static)
        # host is merged on its own: its usual case is one dict look-up.
        self._host = HostMerge(static.pop("host")) if "host" in static else None
        self._host_tail = self._splice_bytes()
        # The enrichment's agent object, appended with the host (append_agent).
        self._agent: dict[str, Any] | None = None
        self._agent_tail: _Tail | None = None
        self._paths = PathFields(compile_templates(settings.model_from_path), settings.kubernetes_paths,
                                 static, self._scrub_all)
        self._static = static
        self._max = settings.max_field_bytes

    def appends_host(self, name: str) -> bool:
        """Whether a document without ``host`` gets this host object as bytes,
        exactly as one with ``host: {"name": name}`` does (so the enrichment
        need not build that object only for ``_run`` to remove it)."""
        return self._host_tail is not None and self._host.name == name and not self._rules.active  # type: ignore[union-attr]

    def template_literals(self) -> tuple[bytes, ...] | None:
        """For documents built from a template (``agent.enrich``): the
        literals of the redaction prefilter, when nothing but those literals
        occurring in a document's bytes can make these transforms treat two
        documents of the same shape differently (no sampling, no field rules,
        only literal prefilters); else None. Defaults, host, path fields and
        payload stripping depend on the document's keys and path only."""
        if self._sampler is not None or self._rules.active:
            return None
        return self._redactor.literals if self._redactor.patterns else ()

    def literal_checks(self) -> tuple[tuple[bytes, bytes | None, Callable[[bytes], Any]], ...]:
        """With ``template_literals``: each literal with its gate byte and its
        search, the way ``may_redact`` looks for it."""
        return self._redactor.literal_checks

    def may_redact(self, data: bytes) -> bool:
        """Whether the redaction prefilter fires on ``data`` (with ``template_literals``)."""
        return bool(self._redactor.patterns) and bool(self._redactor.triggered({}, data))

    def append_agent(self, agent: dict[str, Any]) -> None:
        """Documents whose ``agent`` is this very object (the enrichment's,
        read-only) get it appended as bytes together with the host object:
        ~110 bytes per document neither serialised nor prefilter-scanned again.
        Not done if no host is appended or a pattern's prefilter fires on it."""
        if self._host_tail is None:
            return
        alone = {"agent": agent}
        data = orjson.dumps(alone)
        if self._redactor.patterns and self._redactor.triggered(alone, data):
            return
        self._agent = agent
        self._agent_tail = _Tail.of(b"," + data[1:-1] + self._host_tail.tail)

    def _splice_bytes(self) -> _Tail | None:
        """``,"host":{...}`` when the host object may be appended to serialised documents.

        The host object is the same in nearly every document: serialising it
        once and appending its bytes saves dumping and prefilter-scanning ~200
        bytes per document. Only done if no pattern's prefilter fires on it.
        """
        if self._host is None:
            return None
        alone = {"host": self._host.full}
        data = orjson.dumps(alone)
        if self._redactor.patterns and self._redactor.triggered(alone, data):
            return None
        return _Tail.of(b"," + data[1:-1])

    def _scrubbed(self, tree: dict[str, Any]) -> dict[str, Any]:
        if not self._scrub_all:
            return tree
        return {key: self._scrubbed(value) if type(value) is dict
                else self._scrub_all(value) if type(value) is str
                else [self._scrub_all(v) if type(v) is str else v for v in value] if type(value) is list
                else value
                for key, value in tree.items()}

    # -- the seam ----------------------------------------------------------

    def process(self, doc: dict[str, Any], path: str, doc_id: str) -> bytes | None:
        """The serialised final document, or None when sampling drops it."""
        done = self._run(doc, path, doc_id)
        return None if done is None else done[1]

    def apply(self, doc: dict[str, Any], path: str, doc_id: str) -> dict[str, Any] | None:
        """The final document (read-only, see the module docstring), or None when sampled out."""
        done = self._run(doc, path, doc_id)
        return None if done is None else done[0]

    # -- the steps (kept in one function: calls cost on the hot path) --------

    def _run(self, doc: dict[str, Any], path: str, doc_id: str) -> tuple[dict[str, Any], bytes] | None:
        # 1. sampling
        sampled = None
        if self._sampler is not None:
            sampled = self._sampler.keep(doc, doc_id)
            if sampled is False:
                return None
        # 2. payloads (the checks inline: most documents have none)
        tags: list[str] | None = None
        if self._strip:
            gen_ai, http, extra = doc.get("gen_ai"), doc.get("http"), doc.get("extra")
            if ((type(gen_ai) is dict and ("prompt" in gen_ai or "completion" in gen_ai))
                    or (type(http) is dict and has_body(http))
                    or (type(extra) is dict and not schema.PAYLOAD_KEYS.isdisjoint(extra))) and strip_payloads(doc):
                tags = [TAG_PAYLOAD_REMOVED]
        # 3. field rules, 4. sample mark
        if self._rules.active:
            doc = self._rules.apply(doc)
        if sampled:
            self._sampler.mark(doc)  # type: ignore[union-attr]
        # 5. defaults; the host object is usually appended as bytes (see _splice_bytes)
        tree = self._paths.tree(path) if self._paths.active else self._static
        if tree:
            merge_defaults(doc, tree)
        spliced = False
        agent = None
        if self._host is not None:
            host = doc.get("host")
            if self._host_tail is not None and (host is None or (
                    type(host) is dict and len(host) == 1 and host.get("name") == self._host.name)):
                doc.pop("host", None)
                spliced = True
                if self._agent is not None and doc.get("agent") is self._agent:
                    agent = doc.pop("agent")
            else:
                self._host.merge(doc)
        if tags:
            _add_tags(doc, tags)
        # 6. serialise; redact and truncate only when the bytes say so
        try:
            data = orjson.dumps(doc, default=str)
        except TypeError:
            doc, data = _dumps(doc)
        if spliced:
            if agent is not None:
                doc["agent"] = agent
                tail = self._agent_tail
            else:
                tail = self._host_tail
            doc["host"] = self._host.full  # type: ignore[union-attr]
            if len(data) + len(tail.tail) <= self._max and not (  # type: ignore[union-attr]
                    self._redactor.patterns and self._redactor.triggered(doc, data)):
                return doc, (data[:-1] + tail.closing) if len(data) > 2 else tail.alone  # type: ignore[union-attr]
            doc, data = _dumps(doc)
        elif not (len(data) > self._max or (self._redactor.patterns and self._redactor.triggered(doc, data))):
            return doc, data
        return self._slow(doc, data)

    def _slow(self, doc: dict[str, Any], data: bytes) -> tuple[dict[str, Any], bytes]:
        """Redaction and truncation of a document whose bytes showed a need for either."""
        tags = []
        if self._redactor.patterns:
            hits = self._redactor.triggered(doc, data)
            if hits:
                doc, count = self._redactor.redact(doc, hits)
                if count:
                    tags.append(TAG_REDACTED)
                    doc, data = _dumps(doc)
        if len(data) > self._max:
            doc, cut = truncate_fields(doc, self._max)
            if cut:
                tags.append(TAG_FIELD_TRUNCATED)
        if tags:
            doc = dict(doc)
            _add_tags(doc, tags)
            doc, data = _dumps(doc)
        return doc, data


def _dumps(doc: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """``doc`` serialised; a document orjson refuses is repaired first (and returned repaired)."""
    try:
        return doc, orjson.dumps(doc, default=str)
    except TypeError:  # orjson.JSONEncodeError: surrogates, huge ints, non-str keys, depth, a bad __str__
        doc = sanitise(doc)
        return doc, orjson.dumps(doc, default=_text)


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _add_tags(doc: dict[str, Any], new: list[str]) -> None:
    """Add ``new`` to ``doc['tags']`` without duplicates (never changing the old list in place)."""
    current = doc.get("tags")
    if type(current) is list:
        tags = list(current)
    elif current is None:
        tags = []
    elif type(current) is str:
        tags = [current]
    else:  # not a list of tags: keep what it was under extra rather than lose it
        tags = []
        extra = doc.get("extra")
        if type(extra) is dict and "tags" not in extra:
            doc["extra"] = {**extra, "tags": current}
        elif extra is None:
            doc["extra"] = {"tags": current}
    for tag in new:
        if tag not in tags:
            tags.append(tag)
    doc["tags"] = tags
