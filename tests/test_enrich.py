"""Enrichment: the final document and its deterministic id."""

import logging
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import __version__
from agent.enrich import Enricher, _DocumentIds, _Timestamps, agent_id, document_id, format_timestamp
from agent.errors import EXIT_CONFIG, ConfigError
from agent.events import Line, LineRun, Record, Source


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


def test_a_damaged_agent_id_is_replaced_with_a_warning(tmp_path, caplog):
    (tmp_path / "agent_id").write_bytes(b"\0" * 37)  # (documents carried "agent.id": "\u0000...")
    with caplog.at_level(logging.WARNING, logger="modelscribe"):
        new = agent_id(str(tmp_path))
    assert new.isprintable() and len(new) == 36 and agent_id(str(tmp_path)) == new
    assert "the agent id file is damaged; a new id is made" in caplog.text


@pytest.mark.parametrize("garbage, why", [(b"\xff\xfe\x00id\n", "not ASCII"), (b"\n", "empty"),
                                          (b"a" * 129, "longer than 128 characters")])
def test_a_garbage_agent_id_is_replaced_and_said_once(tmp_path, caplog, garbage, why):
    # Audit 11 (finding 3): a non-ASCII agent_id was replaced without a word.
    (tmp_path / "agent_id").write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="modelscribe"):
        ids = {agent_id(str(tmp_path)) for _ in range(3)}  # (run asks three times: enricher, health, self-metrics)
    said = [r for r in caplog.records if r.getMessage() == "the agent id file is damaged; a new id is made"]
    assert len(ids) == 1 and len(said) == 1
    assert said[0].kv["error"] == why and said[0].kv["agent_id"] == ids.pop()
    assert said[0].kv["path"] == str(tmp_path / "agent_id")


def test_an_agent_id_this_user_cannot_read_stops_run_and_is_kept(tmp_path, monkeypatch):
    # Audit 11 (finding 3): root-owned after a ``sudo modelscribe run``, it was
    # silently replaced by a new uuid, and every document named a new agent.
    # (The tests run as root: the PermissionError is injected; tests/
    # test_unreadable_state_files.py has the real one, as another user.)
    path = tmp_path / "agent_id"
    path.write_text("e09d3a20-8452-42f4-80ac-68568cf96b68\n")
    real = Path.read_bytes

    def denied(self):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ConfigError) as caught:
        agent_id(str(tmp_path))
    assert caught.value.exit_code == EXIT_CONFIG
    assert str(caught.value).startswith(f"cannot read the agent id {path}: Permission denied (")
    assert "the file is left as it is" in str(caught.value)
    monkeypatch.undo()
    assert path.read_text() == "e09d3a20-8452-42f4-80ac-68568cf96b68\n"


def test_an_agent_id_that_is_a_directory_is_exit_code_2_naming_it(tmp_path):
    # Audit 11 (finding 4): "cannot write .../agent_id: Is a directory", exit
    # code 1, which the packaged unit restarts every 5 s for ever.
    (tmp_path / "agent_id").mkdir()
    with pytest.raises(ConfigError) as caught:
        agent_id(str(tmp_path))
    assert caught.value.exit_code == EXIT_CONFIG
    assert str(caught.value) == (f"cannot read the agent id {tmp_path / 'agent_id'}: it is a directory, not a file "
                                 "(move it away: the agent then makes a new id)")
    assert (tmp_path / "agent_id").is_dir()


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


# -- raw records' documents joined from a template (_Templates) --------------------------------------------

_SECRETS = ["Authorization: Bearer abc.def-ghi", "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "key=sk-abcdefghijklmnopqrstuvwx", "hf_abcdefghijklmnopqrstuvwxyzABCD",
            "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "AIzaSyA1234567890abcdefghijklmnopqrstu",
            "mail bob@example.com card 4111 1111 1111 1111", "lone \ud800 surrogate", '{"q": "\\u0073k-x"}']
_PATHS = ["/var/log/m/a.log", '/srv/"quoted" dir/ü.log', "/models/resnet50/serve.log", "/var/log/m/sk-1/a.log",
          "/var/log/hf_abcdefghijklmnopqrstuvwxyzABCD/a.log"]
_TEMPLATE_SETTINGS = [
    {}, {"redact_defaults": False}, {"model_from_path": ("/models/{model.name}/*.log",)},
    {"fields": (("service.environment", "prod"),), "labels": (("team", "search"),)},
    {"max_field_bytes": 64}, {"host_metadata": False}, {"redact_patterns": ("email", "card")},
    {"sample_rate": 0.5}, {"redact_fields": ("message",)}, {"keep_payloads": True}, {"labels": (("team", "sk-1"),)},
]


def _raw_fields(name="json"):
    shared = {"raw": {"format": name}}  # a new top level each time; agent.parsing.raw._Fields shares one
    return lambda: {"modelscribe": shared}


def _enrichers(changes, host_name="h1"):
    from agent.transforms import TransformSettings, Transforms
    from agent.transforms.static import HostInfo

    host = HostInfo(name="h1", ips=("10.0.0.2",), os_name="Debian")
    made = []
    for templates in (True, False):
        transforms = Transforms(TransformSettings(**changes), host)
        made.append(Enricher(host_name, "agent-1", keep_original=False, transforms=transforms, templates=templates))
    return made


@settings(max_examples=150, deadline=None)
@given(changes=st.sampled_from(_TEMPLATE_SETTINGS), host_name=st.sampled_from(["h1", "other"]),
       records=st.lists(st.tuples(st.sampled_from(_PATHS), st.integers(0, 2**53),
                                  st.sampled_from([1_764_000_000.25, 1_764_000_000.25, 0.0, 4_102_444_800.777])
                                  | st.floats(0, 4e9), st.text(max_size=100) | st.sampled_from(_SECRETS),
                                  st.sampled_from([(), ("partial_line",)]), st.sampled_from(["json", "plain"])),
                        min_size=1, max_size=12))
def test_a_templated_document_is_the_general_paths_byte_for_byte(changes, host_name, records):
    templated, general = _enrichers(changes, host_name)
    shapes = {name: _raw_fields(name) for name in ("json", "plain")}
    sources = {path: Source(f"key-{i}", path) for i, path in enumerate(_PATHS)}
    for path, offset, read_time, message, tags, name in records:
        record = Record(sources[path], offset, offset + len(message) + 1, message, read_time,
                        fields=shapes[name](), tags=tags)
        assert templated.build(record) == general.build(record)


@settings(max_examples=150, deadline=None)
@given(changes=st.sampled_from(_TEMPLATE_SETTINGS),
       messages=st.lists(st.text(max_size=100) | st.sampled_from(_SECRETS) | st.sampled_from(["served", "ok"]),
                         min_size=1, max_size=12),
       others=st.lists(st.text(max_size=60) | st.sampled_from(_SECRETS), max_size=3))
def test_the_literals_found_in_a_whole_read_give_the_general_paths_documents(changes, messages, others):
    """The sink's batch prefilter (``Enricher.scan`` over one read's lines,
    joined, the record's among them): what it finds, or does not, changes no
    document."""
    templated, general = _enrichers(changes)
    fields = _raw_fields()
    source = Source("k", "/var/log/m/a.log")
    joined = "\n".join(messages + others).encode("utf-8", "surrogatepass")
    present = templated.scan(joined) if templated.scan is not None else None
    assert (templated.scan is None) == (templated._templates is None) and general.scan is None
    offset = 0
    for message in messages:
        record = Record(source, offset, offset + len(message) + 1, message, 1_764_000_000.5, fields=fields())
        assert templated.build(record, present) == general.build(record)
        offset += len(message.encode("utf-8", "surrogatepass")) + 1


@settings(max_examples=200, deadline=None)
@given(changes=st.sampled_from(_TEMPLATE_SETTINGS),
       records=st.lists(st.tuples(st.sampled_from(_PATHS[:2]), st.sampled_from([1_764_000_000.25, 1_764_000_001.5]),
                                  st.text(max_size=60) | st.sampled_from(_SECRETS) | st.just("served"),
                                  st.sampled_from([(), (), ("partial_line",)]), st.sampled_from(["json", "plain"]),
                                  st.sampled_from([True, True, False])),
                        min_size=1, max_size=16),
       scanned_from=st.integers(0, 16), same_lines=st.booleans())
def test_a_batch_gives_the_documents_of_one_by_one(changes, records, scanned_from, same_lines):
    """``build_all`` (the sink's hot path: one loop over a read's records,
    which share their fields dict and read time in runs) equals the general
    path record by record, sampled-out records left out, with ``present``
    found in the lines of the records from ``first`` on."""
    templated, general = _enrichers(changes)
    shapes = {name: _raw_fields(name) for name in ("json", "plain")}
    shared = {name: make() for name, make in shapes.items()}
    sources = {path: Source(f"key-{i}", path) for i, path in enumerate(_PATHS)}
    made, offset = [], 0
    for path, read_time, message, tags, name, same in records:
        made.append(Record(sources[path], offset, offset + 7, message, read_time,
                           fields=shared[name] if same else shapes[name](), tags=tags))
        offset += 7
    first = scanned_from * 7
    present = None
    if templated.scan is not None:
        present = templated.scan("\n".join(record.message for record in made if record.offset >= first)
                                 .encode("utf-8", "surrogatepass"))
    expected = [event for event in map(general.build, made) if event is not None]
    assert templated.build_all(made, present, first) == expected
    assert general.build_all(made) == expected
    # The same records as the raw parser's runs give them: lines, and the fields they share.
    as_runs, index = [], 0
    while index < len(made):
        record = made[index]
        stop = index + 1
        while (stop < len(made) and made[stop].fields is record.fields and made[stop].source is record.source
               and made[stop].read_time == record.read_time):
            stop += 1
        lines = [Line(each.source, each.offset, each.end, each.message, each.read_time, each.tags)
                 for each in made[index:stop]]
        as_runs.append(LineRun([lines[0], *lines], 1, stop - index + 1, record.fields) if same_lines
                       else LineRun(lines, 0, len(lines), record.fields))
        index = stop
    assert templated.build_all(as_runs, present, first) == expected
    assert general.build_all(as_runs) == expected


def test_raw_records_take_the_template_with_the_default_settings_and_not_when_a_rule_needs_the_document():
    templated, general = _enrichers({})
    fields = _raw_fields()
    source = Source("k", "/var/log/m/a.log")
    for offset in (0, 301, 602):
        record = Record(source, offset, offset + 300, '{"level": "info", "msg": "served"}', 1_764_000_000.5,
                        fields=fields())
        assert templated.build(record) == general.build(record)
    assert templated._templates is not None and templated._templates._template is not None
    assert general._templates is None
    # A secret in the message: the general path redacts it (and tags the document).
    secret = Record(source, 903, 960, "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", 1_764_000_000.5,
                    fields=fields())
    assert b"[REDACTED:bearer]" in templated.build(secret).data
    # A configured value equal to the probe's timestamp: where to cut is not certain, no template.
    odd, plain = _enrichers({"labels": (("note", "2100-01-01T00:00:00.777Z"),)})
    record = Record(source, 0, 10, "served", 1_764_000_000.5, fields=fields())
    assert odd.build(record) == plain.build(record) and odd._templates._template is None
    for changes in ({"sample_rate": 0.5}, {"redact_fields": ("message",)}, {"redact_patterns": ("email",)}):
        assert _enrichers(changes)[0]._templates is None, changes


# -- a time that cannot be written never raises (defence in depth) ------------

@given(st.floats() | st.integers(min_value=-(10 ** 20), max_value=10 ** 20))
def test_format_timestamp_is_total(epoch):
    text = format_timestamp(epoch)
    assert len(text) == 24 and text.endswith("Z")
    assert "0001-01-01T00:00:00.000Z" <= text <= "9999-12-31T23:59:59.999Z"


def test_an_out_of_range_time_is_written_as_the_nearest_end():
    assert format_timestamp(-9e10) == "0001-01-01T00:00:00.000Z"
    assert format_timestamp(253402300800.0) == "9999-12-31T23:59:59.999Z"
    assert format_timestamp(float("nan")) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(253402300799.999) == "9999-12-31T23:59:59.999Z"


@given(st.floats() | st.integers(min_value=-(10 ** 20), max_value=10 ** 20))
def test_a_parsers_time_that_cannot_be_written_gives_way_to_the_read_time(timestamp):
    # A parser missing a range check must not stop the reader (which would
    # read the same line again after a restart: a crash loop).
    doc = orjson.loads(Enricher("h", "a", keep_original=False).build(_record(timestamp=timestamp)).data)
    if -62135596800.0 <= timestamp <= 253402300799.999:
        assert doc["@timestamp"] == format_timestamp(timestamp) and "tags" not in doc
    else:
        assert doc["@timestamp"] == "2023-11-14T22:13:20.500Z"  # the read time ...
        assert doc["tags"] == ["timestamp_unusable"]  # ... said to be (health counts it as a bad time)


def test_the_read_time_is_tagged_only_where_the_line_had_a_time_of_its_own():
    build = Enricher("h", "a", keep_original=False).build
    plain = orjson.loads(build(_record(timestamp=None)).data)
    assert "tags" not in plain  # no time in the line: the read time is the best there is
    kept = orjson.loads(build(_record(timestamp=None, fields={"extra": {"ts": "soon"}})).data)
    assert kept["tags"] == ["timestamp_unusable"] and kept["extra"] == {"ts": "soon"}
    other = orjson.loads(build(_record(timestamp=None, fields={"extra": {"when": "soon"}})).data)
    assert "tags" not in other  # not one of the JSON mapping's time keys


def test_a_long_key_below_a_flattened_field_is_cut_and_tagged():
    key = "prompt: " + "why is the sky blue? " * 100  # 2,108 bytes
    fields = {"extra": {key: "x", "n": 1}, "labels": {"team": "a"}}
    line = orjson.dumps({"message": "m", key: "x", "n": 1}).decode()
    record = _record(offset=0, end=len(line) + 1, fields=fields, tags=("partial_line",))
    doc = orjson.loads(Enricher("h", "a", keep_original=False).build(record).data)
    (new, n) = doc["extra"]
    assert len(new.encode()) == 512 and new.startswith(key[:500]) and doc["extra"][new] == "x" and n == "n"
    assert doc["tags"] == ["partial_line", "key_truncated"]
    assert record.fields["extra"][key] == "x"  # the parser's record is not changed
