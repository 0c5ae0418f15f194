"""Static enrichment (--field, --label, --service-name, host metadata), tags, the
copy-on-write contract, and start-up validation of every setting."""

from __future__ import annotations

import ipaddress
import socket

import orjson
import pytest

from agent.selflog import Secret
from agent.transforms import (TAG_PAYLOAD_REMOVED, HostInfo, Transforms, TransformSettings, gather,
                              parse_assignment, validate)

HOST = HostInfo(name="node-1", ips=("10.0.0.5", "fd00::5"), os_name="Ubuntu", os_version="22.04",
                architecture="x86_64", os_kernel="6.8.0", os_type="linux")


def _doc(**fields):
    doc = {"@timestamp": "2026-11-27T12:00:00.000Z", "message": "hello", "host": {"name": "node-1"}}
    doc.update(fields)
    return doc


def _out(settings: TransformSettings, doc=None, host: HostInfo = HOST) -> dict:
    data = Transforms(settings, host).process(doc if doc is not None else _doc(), "/var/log/a.log", "id")
    return orjson.loads(data)


def test_fields_are_typed_by_the_schema():
    out = _out(TransformSettings(fields=(("service.environment", "prod"), ("service.version", "1.2"),
                                         ("model.batch_size", "32"), ("model.stats.gpu_util", "0.5"),
                                         ("extra.shard", "7"), ("cloud.region", "eu-west-1"))))
    assert out["service"] == {"environment": "prod", "version": "1.2"}
    assert out["model"] == {"batch_size": 32, "stats": {"gpu_util": 0.5}}
    assert out["extra"] == {"shard": "7"}
    assert out["cloud"] == {"region": "eu-west-1"}


def test_labels_and_service_name_fill_gaps_only():
    settings = TransformSettings(labels=(("team", "search"), ("tier", "gold")), service_name="ranker")
    out = _out(settings)
    assert out["labels"] == {"team": "search", "tier": "gold"}
    assert out["service"] == {"name": "ranker"}
    out = _out(settings, _doc(labels={"team": "from-line"}, service={"name": "line-svc", "version": "2"}))
    assert out["labels"] == {"team": "from-line", "tier": "gold"}
    assert out["service"] == {"name": "line-svc", "version": "2"}


def test_host_metadata_is_added_once_gathered():
    out = _out(TransformSettings())
    assert out["host"] == {"name": "node-1", "ip": ["10.0.0.5", "fd00::5"], "architecture": "x86_64",
                           "os": {"name": "Ubuntu", "version": "22.04", "kernel": "6.8.0", "type": "linux"}}
    # a host object from the line keeps its values
    out = _out(TransformSettings(), _doc(host={"name": "node-1", "ip": ["1.2.3.4"]}))
    assert out["host"]["ip"] == ["1.2.3.4"] and out["host"]["os"]["name"] == "Ubuntu"
    out = _out(TransformSettings(), _doc(host={"name": "other"}))
    assert out["host"]["name"] == "other" and out["host"]["architecture"] == "x86_64"
    assert _out(TransformSettings(host_metadata=False))["host"] == {"name": "node-1"}


def test_gather_describes_this_machine_without_raising():
    info = gather(None)
    assert info.name == socket.gethostname()
    assert gather("given-name").name == "given-name"
    for address in info.ips:
        parsed = ipaddress.ip_address(address)
        assert not parsed.is_loopback and not parsed.is_link_local
    assert info.architecture and info.os_type


def test_input_dicts_are_never_changed_in_place():
    shared_model = {"server": "vllm"}
    gen_ai = {"system": "vllm", "prompt": "a prompt long enough to be cut from text"}
    doc = _doc(model=shared_model, gen_ai=gen_ai, tags=["x"], labels={"a": "1"})
    tags = doc["tags"]
    settings = TransformSettings(labels=(("team", "search"),), model_from_path=("/m/{model.name}/*.log",),
                                 redact_fields=("labels.a",), sample_rate=0.999999)
    Transforms(settings, HOST).apply(doc, "/m/bert/x.log", "id")
    assert shared_model == {"server": "vllm"}
    assert gen_ai == {"system": "vllm", "prompt": "a prompt long enough to be cut from text"}
    assert tags == ["x"]


def test_tags_are_added_without_duplicates():
    settings = TransformSettings()
    out = _out(settings, _doc(gen_ai={"prompt": "p"}, tags=["payload_removed", "partial_line"]))
    assert out["tags"] == ["payload_removed", "partial_line"]
    out = _out(settings, _doc(gen_ai={"prompt": "p"}, tags="single"))
    assert out["tags"] == ["single", TAG_PAYLOAD_REMOVED]
    out = _out(settings, _doc(gen_ai={"prompt": "p"}, tags={"odd": 1}))
    assert out["tags"] == [TAG_PAYLOAD_REMOVED] and out["extra"] == {"tags": {"odd": 1}}


@pytest.mark.parametrize("settings, message", [
    (TransformSettings(fields=(("model.batch_size", "many"),)), "--field model.batch_size=many"),
    (TransformSettings(fields=(("model.metric.value", "nan"),)), "finite"),
    (TransformSettings(fields=(("client.ip", "not-an-ip"),)), "--field client.ip"),
    (TransformSettings(fields=(("message", "x"),)), "set by the agent"),
    (TransformSettings(fields=(("agent.name", "x"),)), "set by the agent"),
    (TransformSettings(fields=(("@timestamp", "x"),)), "set by the agent"),
    (TransformSettings(fields=(("message.x", "x"),)), "message is a value"),
    (TransformSettings(fields=(("model", "x"),)), "names an object"),
    (TransformSettings(fields=(("labels.team", "x"),)), "use --label"),
    (TransformSettings(fields=(("bad name", "x"),)), "not a dotted field name"),
    (TransformSettings(fields=(("service.name", "a"), ("service.name", "b"))), "twice"),
    (TransformSettings(fields=(("user.team", "a"), ("user.team.lead", "b"))), "both a value and an object"),
    (TransformSettings(fields=(("servce.environment", "prod"),)), "servce is not an ECS"),
    (TransformSettings(redact_fields=("usr.email",)), "--redact-field usr.email"),
    (TransformSettings(fields=(("service.name", "a"),), service_name="b"), "choose one"),
    (TransformSettings(service_name=" "), "--service-name"),
    (TransformSettings(labels=(("a.b", "x"),)), "--label a.b=x"),
    (TransformSettings(labels=(("", "x"),)), "--label"),
    (TransformSettings(redact_patterns=("(",)), "--redact-pattern '('"),
    (TransformSettings(redact_patterns=("a*",)), "empty string"),
    (TransformSettings(redact_fields=("@timestamp",)), "--redact-field @timestamp"),
    (TransformSettings(redact_fields=("tags",)), "--redact-field tags"),
    (TransformSettings(hash_fields=("error",), hash_key=Secret("k" * 32)), "names an object"),
    (TransformSettings(hash_fields=("user.id",)), "needs a key"),
    (TransformSettings(hash_fields=("user.id",), hash_key=Secret("short")), "at least 16"),
    (TransformSettings(hash_fields=("client.port",), hash_key=Secret("k" * 32)), "long field"),
    (TransformSettings(hash_fields=("host.ip",), hash_key=Secret("k" * 32)), "ip field"),
    (TransformSettings(hash_fields=("user.id",), redact_fields=("user.id",), hash_key=Secret("k" * 32)),
     "choose one"),
    (TransformSettings(sample_rate=0.0), "--sample 0.0"),
    (TransformSettings(sample_rate=1.5), "--sample"),
    (TransformSettings(sample_rate=float("nan")), "--sample"),
    (TransformSettings(max_field_bytes=10), "--max-field-bytes"),
])
def test_validate_names_the_option(settings, message):
    with pytest.raises(ValueError) as error:
        validate(settings)
    assert message in str(error.value)
    with pytest.raises(ValueError):
        Transforms(settings, HOST)


def test_valid_settings_pass():
    validate(TransformSettings())
    validate(TransformSettings(fields=(("service.environment", "prod"), ("user.tier", "free")),
                               labels=(("team", "search"),), service_name="svc",
                               model_from_path=("/var/log/{model.name}/**",), redact_fields=("user.email",),
                               redact_patterns=("email", "card", "ssn=\\d{3}-\\d{2}-\\d{4}"),
                               hash_fields=("client.ip", "extra.user_id"), hash_key=Secret("k" * 32),
                               sample_rate=0.25, max_field_bytes=1024))


def test_parse_assignment():
    assert parse_assignment("service.environment=prod", "--field") == ("service.environment", "prod")
    assert parse_assignment("team=a=b", "--label") == ("team", "a=b")
    assert parse_assignment("empty=", "--label") == ("empty", "")
    for bad in ("novalue", "=x", " =x"):
        with pytest.raises(ValueError, match="--label"):
            parse_assignment(bad, "--label")
