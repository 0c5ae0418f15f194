"""Properties over arbitrary documents: the transforms never raise, never leave a
string an enabled pattern still matches, and never let a planted secret through."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.selflog import Secret
from agent.transforms import HostInfo, Transforms, TransformSettings
from agent.transforms.patterns import BUILTINS, SECRET_KEY, marker

HOST = HostInfo(name="node-1", ips=("10.0.0.1",), os_name="Linux")
ALL_BUILTINS = ("email", "bearer", "api_key", "card", "secret")

PLANTED = [
    "jane.doe@example.com", "ops-team+alerts@corp.example.org",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.QUJDREVGR0hJSktMTU5PUA",
    "Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "sk-proj-Zx8Qw2Er4Ty6Ui8Op0As2Df4Gh6Jk8L", "sk-ant-api03-AbCdEf0123456789GhIjKl",
    "hf_QwErTyUiOpAsDfGhJkLzXcVbNm0123456789", "AIzaSyB-1a2b3c4d5e6f7g8h9i0jklmnopqrstu",
    "4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005",
    "password=Tr0ub4dor&3", "api_key: 'c0ffee-beef-cafe'",
]
# What must not survive of each planted secret (the part after a scheme word).
CORES = {secret: secret.split(" ", 1)[1] if secret.startswith("Bearer ") else
         secret.split("=", 1)[1].split("&")[0] if secret.startswith("password=") else
         "c0ffee-beef-cafe" if secret.startswith("api_key") else secret for secret in PLANTED}

KEYS = st.one_of(st.sampled_from(["message", "error", "stack_trace", "prompt", "extra", "labels", "url",
                                  "query", "gen_ai", "http", "body", "content", "password", "tags",
                                  "log", "level", "event", "original", "model", "client", "ip"]),
                 st.text(max_size=12))
TEXT = st.one_of(st.text(max_size=30), st.sampled_from(["", "Bearer", "sk-", "@", "4111", "eyJ", "token="]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), TEXT)


def _planted_text() -> st.SearchStrategy[str]:
    return st.builds(lambda before, secret, after: f"{before} {secret} {after}",
                     st.text(max_size=10), st.sampled_from(PLANTED), st.text(max_size=10))


VALUES = st.recursive(
    st.one_of(SCALARS, _planted_text(), st.just(4111111111111111)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=25)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=8)
SETTINGS = st.builds(
    lambda keep, rate, fields, hashed, cap, template: TransformSettings(
        keep_payloads=keep, sample_rate=rate, redact_patterns=ALL_BUILTINS, redact_fields=fields,
        hash_fields=hashed, hash_key=Secret("k" * 32), max_field_bytes=cap,
        model_from_path=(template,) if template else (), labels=(("team", "search"),)),
    st.booleans(), st.sampled_from([1.0, 0.5]),
    st.sampled_from([(), ("message",), ("extra.password", "url.query")]),
    st.sampled_from([(), ("client.ip",), ("extra.user", "error.message")]),
    st.sampled_from([64, 1024, 32000]),
    st.sampled_from(["", "/var/log/{model.name}/**"]))
PATHS = st.sampled_from(["/var/log/resnet/a.log", "/home/jane.doe@example.com/x.log",
                         "/var/log/pods/ns_p_7d3f2b1c-5a4e-4c3b-9f1e-2d6a8b0c4e1f/c/0.log"])


def _strings(value: Any, out: list[tuple[Any, Any]], key: Any = None) -> None:
    if isinstance(value, dict):
        for child_key, child in value.items():
            out.append((None, child_key))
            _strings(child, out, child_key)
    elif isinstance(value, list):
        for child in value:
            _strings(child, out, None)
    else:
        out.append((key, value))


def _leaves_are_clean(doc: dict[str, Any]) -> None:
    leaves: list[tuple[Any, Any]] = []
    _strings(doc, leaves)
    for key, value in leaves:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            continue
        for name in ALL_BUILTINS:
            new, count = BUILTINS[name].substitute(value)
            assert count == 0, (name, value, new)
        if isinstance(key, str) and SECRET_KEY.search(key) and value:
            assert value == marker("secret") or value == "[REDACTED]", (key, value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=DOCUMENTS, transform_settings=SETTINGS, path=PATHS, doc_id=st.text(max_size=20))
def test_never_raises_and_never_leaks(doc, transform_settings, path, doc_id):
    transforms = Transforms(transform_settings, HOST)
    data = transforms.process(doc, path, doc_id)
    if data is None:
        return
    for secret in PLANTED:
        assert CORES[secret].encode() not in data, secret
    assert b"jane.doe@example.com" not in data
    _leaves_are_clean(orjson.loads(data))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=DOCUMENTS, doc_id=st.text(max_size=20))
def test_apply_and_process_agree(doc, doc_id):
    transforms = Transforms(TransformSettings(redact_patterns=ALL_BUILTINS, sample_rate=0.5), HOST)
    data = transforms.process(copy.deepcopy(doc), "/a.log", doc_id)
    applied = transforms.apply(copy.deepcopy(doc), "/a.log", doc_id)
    assert (data is None) == (applied is None)
    if data is not None:
        assert orjson.loads(data) == orjson.loads(orjson.dumps(applied, default=str))


USER_SECRET = "EMP-483920"
USER_VALUES = st.recursive(
    st.one_of(SCALARS, st.builds(lambda a, b: f"{a}{USER_SECRET}{b}", st.text(max_size=6), st.text(max_size=6))),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(KEYS, children, max_size=4)),
    max_leaves=15)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(KEYS, USER_VALUES, max_size=6),
       pattern=st.sampled_from([r"EMP-\d{6}", r"(?P<employee>EMP-\d+)", r"\bEMP-[0-9]+", r"(?<![A-Z])EMP-\d+"]))
def test_user_patterns_redact_wherever_the_value_sits(doc, pattern):
    data = Transforms(TransformSettings(redact_patterns=(pattern,)), HOST).process(doc, "/a.log", "id")
    leaves: list[tuple[Any, Any]] = []
    _strings(orjson.loads(data), leaves)
    regex = re.compile(pattern)
    for _, value in leaves:
        assert not (isinstance(value, str) and regex.search(value)), value
