"""Privacy: payloads stripped, secrets redacted wherever they sit, fields redacted and
hashed, the hash key file."""

from __future__ import annotations

import os
import stat
import threading

import orjson
import pytest

from agent.errors import StateError
from agent.selflog import Secret
from agent.transforms import (TAG_PAYLOAD_REMOVED, TAG_REDACTED, HostInfo, Transforms, TransformSettings,
                              load_or_create_hash_key)
from agent.transforms.patterns import BUILTINS, luhn
from agent.transforms.redact import keyed_hash

HOST = HostInfo(name="node-1")
KEY = Secret("0123456789abcdef0123456789abcdef")

EMAIL = "jane.doe+ml@example.com"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
API_KEY = "sk-proj-4fQ9xT2mLr8ZpK3vW7nB1cYs6dHj0gEa"
HF_TOKEN = "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
CARD = "4111 1111 1111 1111"
SECRETS = (EMAIL, BEARER, API_KEY, HF_TOKEN, CARD, CARD.replace(" ", ""))
ALL = ("email", "bearer", "api_key", "card")

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/handler.py", line 41, in predict\n'
    "    client.call(headers={'Authorization': 'Bearer " + BEARER + "'})\n"
    "requests.exceptions.HTTPError: 401 for user " + EMAIL + " key=" + API_KEY + " card " + CARD
)


def _transforms(**settings) -> Transforms:
    return Transforms(TransformSettings(**settings), HOST)


def _doc(**fields):
    doc = {"@timestamp": "2026-11-27T12:00:00.000Z", "message": "m", "host": {"name": "node-1"},
           "log": {"file": {"path": "/var/log/a.log"}, "offset": 0}}
    doc.update(fields)
    return doc


def _assert_clean(data: bytes) -> None:
    for secret in SECRETS + (BEARER[:40], API_KEY[8:]):
        assert secret.encode() not in data, secret


def _llm_doc():
    prompt = f"My e-mail is {EMAIL}, card {CARD}. Use key {API_KEY} and Bearer {BEARER} please"
    return _doc(
        message=f"Received request cmpl-8f2a: prompt: {prompt!r}, params: SamplingParams(n=1)",
        gen_ai={"system": "vllm", "prompt": prompt, "completion": f"Sure {EMAIL}"},
        http={"request": {"method": "POST", "body": {"content": orjson.dumps({"prompt": prompt}).decode()}},
              "response": {"status_code": 200, "body": {"content": f"token {HF_TOKEN}"}}},
        event={"original": orjson.dumps({"msg": "Received request", "prompt": prompt}).decode()},
        error={"message": f"auth failed for {EMAIL}", "stack_trace": TRACEBACK},
        url={"query": f"api_key={API_KEY}&user={EMAIL}", "original": f"/v1/completions?token={BEARER}"},
        extra={"nested": [{"owner": EMAIL}, f"Bearer {BEARER}", {"deep": {"k": API_KEY}}], EMAIL: "key"},
        labels={"contact": EMAIL},
    )


@pytest.mark.parametrize("keep_payloads", [False, True])
def test_secrets_never_reach_the_serialised_document(keep_payloads):
    transforms = _transforms(keep_payloads=keep_payloads, redact_patterns=ALL)
    data = transforms.process(_llm_doc(), "/var/log/vllm.log", "id-1")
    _assert_clean(data)
    doc = orjson.loads(data)
    assert TAG_REDACTED in doc["tags"]
    assert "[REDACTED:email]" in doc["error"]["message"]
    assert "[REDACTED:bearer]" in doc["error"]["stack_trace"] and "[REDACTED:card]" in doc["error"]["stack_trace"]
    assert doc["labels"] == {"contact": "[REDACTED:email]"}
    assert doc["extra"]["[REDACTED:email]"] == "key"  # keys too
    if keep_payloads:
        assert "[REDACTED:api_key]" in doc["gen_ai"]["prompt"]
        assert doc["gen_ai"]["completion"] == "Sure [REDACTED:email]"
        assert TAG_PAYLOAD_REMOVED not in doc["tags"]
    else:
        assert doc["gen_ai"] == {"system": "vllm"}
        assert doc["http"] == {"request": {"method": "POST", "body": {}}, "response": {"status_code": 200, "body": {}}}
        assert TAG_PAYLOAD_REMOVED in doc["tags"]


def test_apply_returns_the_same_redacted_document():
    transforms = _transforms(redact_patterns=ALL)
    doc = transforms.apply(_llm_doc(), "/var/log/vllm.log", "id-1")
    _assert_clean(orjson.dumps(doc))


def test_prompt_text_is_cut_from_message_and_original():
    prompt = "What is the salary of Jane Doe in the HR database?"
    doc = _doc(message=f"Received request cmpl-1: prompt: {prompt!r}, params: SamplingParams(n=1)",
               gen_ai={"prompt": prompt, "request": {"id": "cmpl-1"}},
               event={"original": orjson.dumps({"msg": "Received request", "prompt": prompt}).decode()})
    out = orjson.loads(_transforms().process(doc, "/x.log", "1"))
    assert out["message"] == "Received request cmpl-1: prompt: [REMOVED:payload], params: SamplingParams(n=1)"
    assert out["event"]["original"] == '{"msg":"Received request","prompt":[REMOVED:payload]}'
    assert out["gen_ai"] == {"request": {"id": "cmpl-1"}}
    assert "salary" not in orjson.dumps(out).decode()


def test_prompts_with_quotes_and_newlines_are_cut_in_every_quoting():
    prompt = 'He said "hi"\nand \'left\''
    doc = _doc(message=f"prompt: {prompt!r}", gen_ai={"prompt": prompt},
               event={"original": orjson.dumps({"prompt": prompt}).decode()})
    out = orjson.loads(_transforms().process(doc, "/x.log", "1"))
    assert out["message"] == "prompt: [REMOVED:payload]"
    assert out["event"]["original"] == '{"prompt":[REMOVED:payload]}'


def test_short_prompts_are_cut_only_where_quoted():
    doc = _doc(message="the prompt 'hi' says hi", gen_ai={"prompt": "hi"})
    out = orjson.loads(_transforms().process(doc, "/x.log", "1"))
    assert out["message"] == "the prompt [REMOVED:payload] says hi"


@pytest.mark.parametrize("kind, text, expected", [
    ("email", f"contact {EMAIL}.", "contact [REDACTED:email]."),
    ("email", "torch@2.1.0 model@v2 @app.route", None),
    ("bearer", f"Authorization: Bearer {BEARER}", "Authorization: Bearer [REDACTED:bearer]"),
    ("bearer", "curl -H 'authorization: bearer 0a1b2c3d4e5f6a7b'", "curl -H 'authorization: bearer [REDACTED:bearer]'"),
    ("bearer", "GET /x?h=Bearer%20abcdef0123456789", "GET /x?h=Bearer%20[REDACTED:bearer]"),
    ("bearer", "the endpoint requires a Bearer token", None),
    ("bearer", f"GET /cb?id_token={BEARER}&state=1", "GET /cb?id_token=[REDACTED:bearer]&state=1"),
    ("api_key", f"OPENAI_API_KEY={API_KEY}", "OPENAI_API_KEY=[REDACTED:api_key]"),
    ("api_key", f"login with {HF_TOKEN} ok", "login with [REDACTED:api_key] ok"),
    ("api_key", "key AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q done", "key [REDACTED:api_key] done"),
    ("api_key", "disk-usage mask-rcnn sk-learn-pipeline-for-regression-tasks", None),
    ("card", f"paid with {CARD} exp 12/29", "paid with [REDACTED:card] exp 12/29"),
    ("card", "amex 3782-822463-10005 and 12 4111-1111-1111-1111", "amex [REDACTED:card] and 12 [REDACTED:card]"),
    ("card", "epoch 1700000000123456789 id 4111111111111112 x4111111111111111", None),
    ("secret", "password=hunter2x api_key: 'abcd1234' max_tokens=100", "password=[REDACTED:secret] "
     "api_key: '[REDACTED:secret]' max_tokens=100"),
])
def test_builtin_patterns(kind, text, expected):
    new, count = BUILTINS[kind].substitute(text)
    assert new == (expected if expected is not None else text)
    assert bool(count) == (expected is not None)
    again, more = BUILTINS[kind].substitute(new)
    assert (again, more) == (new, 0)


def test_luhn():
    assert luhn("4111111111111111") and luhn("378282246310005") and not luhn("4111111111111112")


def test_defaults_redact_credentials_but_not_emails():
    doc = _doc(message=f"Authorization: Bearer {BEARER} from {EMAIL} with {API_KEY}")
    out = orjson.loads(_transforms().process(doc, "/x.log", "1"))
    assert out["message"] == f"Authorization: Bearer [REDACTED:bearer] from {EMAIL} with [REDACTED:api_key]"
    out = orjson.loads(_transforms(redact_defaults=False).process(_doc(message=f"Bearer {BEARER}"), "/x", "1"))
    assert out["message"] == f"Bearer {BEARER}" and "tags" not in out


def test_card_numbers_as_integers_and_secret_keys():
    doc = _doc(extra={"card": 4111111111111111, "count": 12, "password": "hunter2", "db_password": 1234,
                      "tokens": 17})
    out = orjson.loads(_transforms(redact_patterns=("card", "secret")).process(doc, "/x", "1"))
    assert out["extra"] == {"card": "[REDACTED:card]", "count": 12, "password": "[REDACTED:secret]",
                            "db_password": "[REDACTED:secret]", "tokens": 17}


def test_user_patterns_named_and_anchored():
    doc = _doc(message="ssn 123-45-6789 ok, employee=E-7731 left", extra={"ref": "INV-0001"})
    patterns = (r"\d{3}-\d{2}-\d{4}", r"employee=(?P<employee>E-\d+)", r"^INV-\d+$")
    out = orjson.loads(_transforms(redact_patterns=patterns).process(doc, "/x", "1"))
    assert out["message"] == "ssn [REDACTED:pattern] ok, employee=[REDACTED:employee] left"
    assert out["extra"] == {"ref": "[REDACTED:pattern]"}


def test_nothing_to_redact_leaves_the_document_untouched():
    doc = _doc(message="GET /ping 200", http={"response": {"status_code": 200}})
    expected = dict(doc)
    out = _transforms(redact_patterns=ALL, host_metadata=False).process(doc, "/x", "1")
    assert orjson.loads(out) == expected


# -- --redact-field and --hash-field -----------------------------------------

def test_redact_fields_keep_the_mapping_valid():
    doc = _doc(user_agent={"original": "curl/8"}, client={"ip": "10.1.2.3", "port": 5123},
               extra={"user.email": EMAIL, "user": {"email": EMAIL}, "people": [{"email": "a"}, {"x": 1}]})
    settings = dict(redact_fields=("user_agent.original", "client.ip", "client.port", "extra.user.email",
                                   "extra.people.email", "user.not_there"))
    out = orjson.loads(_transforms(**settings).process(doc, "/x", "1"))
    assert out["user_agent"] == {"original": "[REDACTED]"}
    assert out["client"] == {}  # an ip and a long cannot hold "[REDACTED]": removed
    assert out["extra"] == {"user.email": "[REDACTED]", "user": {"email": "[REDACTED]"},
                            "people": [{"email": "[REDACTED]"}, {"x": 1}]}


def test_hashes_are_stable_keyed_and_joinable():
    settings = dict(hash_fields=("extra.user_id", "client.ip"), hash_key=KEY)
    one = orjson.loads(_transforms(**settings).process(
        _doc(extra={"user_id": "u-42"}, client={"ip": "10.1.2.3"}), "/x", "1"))
    two = orjson.loads(_transforms(**settings).process(
        _doc(extra={"user_id": "u-42"}, client={"ip": "10.1.2.3", "address": "10.1.2.3"}), "/y", "2"))
    other_key = orjson.loads(_transforms(hash_fields=("extra.user_id",), hash_key=Secret("f" * 32)).process(
        _doc(extra={"user_id": "u-42"}), "/x", "1"))
    assert one["extra"]["user_id"] == two["extra"]["user_id"] == keyed_hash(KEY.reveal().encode(), "u-42")
    assert len(one["extra"]["user_id"]) == 32 and int(one["extra"]["user_id"], 16) >= 0
    assert other_key["extra"]["user_id"] != one["extra"]["user_id"]
    assert one["client"] == two["client"] == {"address": keyed_hash(KEY.reveal().encode(), "10.1.2.3")}
    assert keyed_hash(b"k" * 16, 42) == keyed_hash(b"k" * 16, "42")


def test_hash_sees_the_value_before_pattern_redaction():
    settings = dict(hash_fields=("extra.email",), hash_key=KEY, redact_patterns=("email",))
    out = orjson.loads(_transforms(**settings).process(_doc(extra={"email": EMAIL}), "/x", "1"))
    assert out["extra"]["email"] == keyed_hash(KEY.reveal().encode(), EMAIL)


# -- the hash key file -------------------------------------------------------

def test_hash_key_is_created_once_private_and_reused(tmp_path):
    state = tmp_path / "state"
    first = load_or_create_hash_key(state)
    path = state / "hash_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.reveal()) == 64 and repr(first) == "Secret('***')"
    assert load_or_create_hash_key(state) == first
    assert [name for name in os.listdir(state)] == ["hash_key"]  # no temporary file left


def test_concurrent_creation_yields_one_key(tmp_path):
    keys = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_hash_key(tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({key.reveal() for key in keys}) == 1


@pytest.mark.parametrize("damage, why", [
    (b"short\n", "shorter than 32 characters"),
    # Found by audit 4: 65 NULs (a crash's zero-filled block) passed as a key, the same on
    # every machine, and every pseudonym changed without a word.
    (b"\0" * 65, "it holds control characters"),
    (b"0123456789abcdef" * 2 + b"\0" * 33, "it holds control characters"),
])
def test_damaged_hash_key_is_an_error_not_replaced(tmp_path, damage, why):
    (tmp_path / "hash_key").write_bytes(damage)
    with pytest.raises(StateError, match=f"damaged \\({why}"):
        load_or_create_hash_key(tmp_path)
    assert (tmp_path / "hash_key").read_bytes() == damage
