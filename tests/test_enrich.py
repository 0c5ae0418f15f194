"""Enrichment: the final document and its deterministic id."""

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import __version__
from agent.enrich import Enricher, _DocumentIds, _Timestamps, agent_id, document_id, format_timestamp
from agent.events import Record, Source


def _record(**changes):
    base = dict(source=Source("abc123", "/var/log/m/a.log"), offset=120, end=180, message="boom",
                read_time=1_700_000_000.5)
    base.update(changes)
    return Record(**base)


def test_document_carries_the_baseline_fields():
    event = Enricher("h1", "agent-1", keep_original=False).build(_record(tags=("partial_line",)))
    doc = orjson.loads(event.data)
    assert doc["@timestamp"] == "2023-11-14T22:13:20.500Z"
    assert doc["message"] == "boom"
    assert doc["log"] == {"file": {"path": "/var/log/m/a.log"}, "offset": 120}
    assert doc["host"] == {"name": "h1"}
    assert doc["agent"] == {"name": "modelscribe", "type": "modelscribe", "version": __version__, "id": "agent-1"}
    assert doc["tags"] == ["partial_line"]
    assert "event" not in doc
    assert (event.source_key, event.offset, event.end) == ("abc123", 120, 180)


def test_record_timestamp_fields_error_and_original():
    record = _record(timestamp=1_700_000_100.0, fields={"log": {"level": "error"}, "error": {"type": "ValueError"}},
                     error="bad json", original="raw text")
    doc = orjson.loads(Enricher("h", "a", keep_original=True).build(record).data)
    assert doc["@timestamp"] == "2023-11-14T22:15:00.000Z"
    assert doc["log"]["level"] == "error" and doc["log"]["offset"] == 120
    assert doc["error"] == {"type": "ValueError", "message": "bad json"}
    assert doc["event"] == {"original": "raw text"}
    assert record.fields == {"log": {"level": "error"}, "error": {"type": "ValueError"}}  # not mutated


def test_document_ids_are_deterministic_and_distinct():
    assert document_id("k", 10) == document_id("k", 10)
    assert len(document_id("k", 10)) == 20
    ids = {document_id(key, offset) for key in ("a", "b") for offset in range(1000)}
    assert len(ids) == 2000


def test_document_ids_never_change_across_versions():
    # A line re-sent by an upgraded agent must get the id the old agent gave it.
    assert document_id("abc123", 120) == "9H0WLiKTAW0uB5j5Zhqn"
    assert document_id("\u00fc/\u00df:9", 0) == "gJmPTY-VHao932pqzYRO"


@given(st.text(max_size=40), st.integers(min_value=0, max_value=2**63 - 1))
@settings(max_examples=300, deadline=None)
def test_the_enrichers_ids_are_document_id(key, offset):
    ids = _DocumentIds()
    assert ids(key, offset) == document_id(key, offset)
    assert ids(key, offset + 1) == document_id(key, offset + 1)  # the cached base is not consumed


def test_agent_id_is_stable(tmp_path):
    first = agent_id(str(tmp_path))
    assert first == agent_id(str(tmp_path))
    assert (tmp_path / "agent_id").read_text().strip() == first


def test_format_timestamp_millis():
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0, -0.0, 1.0005, 1.004, 1_764_000_000.999, 1_764_000_001.0, 59.9999999])
                | st.floats(min_value=-1e10, max_value=4e9, allow_nan=False), max_size=30))
def test_one_timestamp_formatter_answers_as_a_fresh_one_whatever_came_before(epochs):
    # The formatter remembers its last answer (a chunk's lines share their read time):
    # a repeat, an alternation or a value equal to the last (0.0 and -0.0) changes nothing.
    shared = _Timestamps()
    for epoch in epochs + epochs[::-1]:
        assert shared.format(epoch) == format_timestamp(epoch)


def test_a_document_without_host_gets_the_same_bytes_as_one_with_the_bare_host_name():
    # The enrichment leaves host out when the transforms append it as bytes
    # (Transforms.appends_host); the result must not differ from building
    # {"name": ...} first, which takes the transforms' general check.
    from agent.transforms import TransformSettings, Transforms
    from agent.transforms.static import HostInfo

    host = HostInfo(name="h1", ips=("10.0.0.2",), os_name="Debian", os_version="12", architecture="x86_64")
    for settings in (TransformSettings(), TransformSettings(redact_fields=("user.name",))):
        transforms = Transforms(settings, host)
        enricher = Enricher("h1", "agent-1", keep_original=False, transforms=transforms)
        assert enricher._host_appended is (not settings.redact_fields)
        for fields in ({}, {"log": {"level": "info"}, "model": {"name": "m"}}):
            bare = enricher.build(_record(fields=fields)).data
            named = enricher.build(_record(fields={**fields, "host": {"name": "h1"}})).data
            assert bare == named
            assert orjson.loads(bare)["host"]["ip"] == ["10.0.0.2"]
    other = Enricher("other-name", "agent-1", keep_original=False, transforms=Transforms(TransformSettings(), host))
    assert not other._host_appended
    assert orjson.loads(other.build(_record()).data)["host"]["name"] == "other-name"


def test_the_agent_object_appended_as_bytes_reads_back_the_same():
    from agent.transforms import TransformSettings, Transforms
    from agent.transforms.static import HostInfo

    host = HostInfo(name="h1", ips=("10.0.0.2",))
    spliced = Enricher("h1", "agent-1", keep_original=False, transforms=Transforms(TransformSettings(), host))
    plain = Transforms(TransformSettings(), host)  # never told about the agent: serialises it in place
    for fields in ({}, {"model": {"name": "m"}, "tags": ["x"]}):
        record = _record(fields=fields, tags=("partial_line",))
        data = spliced.build(record).data
        doc = orjson.loads(data)
        assert list(doc)[-2:] == ["agent", "host"]
        assert doc["agent"] == {"name": "modelscribe", "type": "modelscribe", "version": __version__, "id": "agent-1"}
        unspliced = Enricher("h1", "agent-1", keep_original=False, transforms=plain)
        unspliced._transforms._agent = None
        assert orjson.loads(unspliced.build(record).data) == doc
    # An agent object a pattern's prefilter fires on is never appended unchecked.
    refusing = Transforms(TransformSettings(), host)
    refusing.append_agent({"name": "sk-" + "a" * 40})
    assert refusing._agent is None
