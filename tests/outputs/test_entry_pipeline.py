"""``--parse-at elasticsearch`` refuses a target whose documents would go
through no ingest pipeline (audit 3, finding 1: they were stored unparsed,
with exit code 0 and no word). On the real nodes: Elasticsearch 9.2.8 (the
integ-test node: no ingest processors, but index templates, their simulation
and data streams work, and the check needs no pipeline to exist) and
OpenSearch 2.19.1."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from agent.errors import EXIT_OUTPUT
from agent.events import Event
from agent.outputs.connection import ConnectionSettings
from agent.outputs.elasticsearch import ElasticsearchOutput
from agent.outputs.entry_pipeline import NoEntryPipeline, entry_pipeline
from agent.outputs.opensearch import OpenSearchOutput
from agent.selflog import Secret

ENTRY = entry_pipeline()


def _es_output(node: Any, target: str, raw: bool = True, **credentials: Any) -> ElasticsearchOutput:
    credentials = credentials or {"api_key": Secret(_read(node.api_key_file))}
    return ElasticsearchOutput(ConnectionSettings(es_urls=(node.url,), target=target, ca_cert=node.ca_cert,
                                                  raw_documents=raw, **credentials))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def _template(request: Any, name: str, pipeline: str | None, data_stream: bool = True) -> None:
    settings = {"number_of_replicas": 0, **({"index.default_pipeline": pipeline} if pipeline else {})}
    status, body = request("PUT", f"/_index_template/{name}", {
        "index_patterns": [f"{name}-*"], "priority": 900, **({"data_stream": {}} if data_stream else {}),
        "template": {"settings": settings}})
    assert status == 200, body


def _warnings(agent_log: list) -> list[Any]:
    return [record for record in agent_log if record.levelname == "WARNING"]


def _refused(output: ElasticsearchOutput) -> str:
    with pytest.raises(NoEntryPipeline) as raised:
        output.preflight()
    assert raised.value.exit_code == EXIT_OUTPUT
    return str(raised.value)


@pytest.mark.elasticsearch
def test_a_target_no_template_sends_through_a_pipeline_is_refused(es_node, es, agent_log):
    output = _es_output(es_node, "entrycheck-none-x")
    try:
        message = _refused(output)
    finally:
        output.close()
    assert message.startswith("--parse-at elasticsearch: the documents would be stored unparsed in "
                              "entrycheck-none-x: no index template gives it an ingest pipeline "
                              "(index.default_pipeline)")
    assert "modelscribe setup pipelines" in message and f"index.default_pipeline: {ENTRY}" in message
    assert message.endswith("; or use --parse-at agent")
    assert es.count("entrycheck-none-x") == 0


@pytest.mark.elasticsearch
def test_a_template_naming_the_entry_pipeline_passes_and_other_modes_ask_nothing(es_node, es, agent_log):
    _template(es.request, "entrycheck-wired", ENTRY)
    try:
        for target, raw in (("entrycheck-wired-a", True), ("entrycheck-none-y", False)):
            output = _es_output(es_node, target, raw=raw)
            try:
                output.preflight()
            finally:
                output.close()
        assert not _warnings(agent_log)
    finally:
        es.request("DELETE", "/_index_template/entrycheck-wired")


@pytest.mark.elasticsearch
def test_an_existing_data_stream_is_judged_by_its_write_index(es_node, es, agent_log):
    """A template wired after the data stream was made reaches it at its next rollover only."""
    _template(es.request, "entrycheck-ds", None)
    stream = "entrycheck-ds-default"
    try:
        es.ok("POST", f"/{stream}/_doc", {"@timestamp": "2026-12-05T10:00:00Z", "message": "made unwired"})
        _template(es.request, "entrycheck-ds", ENTRY)  # `modelscribe setup` after the first start
        output = _es_output(es_node, stream)
        try:
            message = _refused(output)
            assert f"in {stream}: its write index .ds-{stream}-" in message
            assert f"then roll it over (POST /{stream}/_rollover" in message
            es.ok("POST", f"/{stream}/_rollover")
            output.preflight()  # the new write index has the template's settings
        finally:
            output.close()
        assert not _warnings(agent_log)
    finally:
        es.delete_index(stream)
        es.request("DELETE", "/_index_template/entrycheck-ds")


@pytest.mark.elasticsearch
def test_plain_indices_with_and_without_a_default_pipeline(es_node, es, agent_log):
    es.ok("PUT", "/entrycheck-plain", {"settings": {"number_of_replicas": 0}})
    es.ok("PUT", "/entrycheck-own", {"settings": {"number_of_replicas": 0, "index.default_pipeline": "mine"}})
    try:
        output = _es_output(es_node, "entrycheck-plain")
        try:
            message = _refused(output)
        finally:
            output.close()
        assert "in entrycheck-plain: the index has no ingest pipeline" in message
        assert "PUT /entrycheck-plain/_settings" in message
        output = _es_output(es_node, "entrycheck-own")
        try:
            output.preflight()  # another pipeline may call ours: said, not refused
        finally:
            output.close()
        [warning] = _warnings(agent_log)
        assert "not modelscribe's entry pipeline" in warning.getMessage()
        assert warning.kv == {"target": "entrycheck-own", "pipeline": "mine", "expected": ENTRY}
    finally:
        es.delete_index("entrycheck-plain")
        es.delete_index("entrycheck-own")


@pytest.mark.elasticsearch
def test_credentials_that_may_not_ask_get_a_warning_and_ship(es_node, es, agent_log):
    """The shipping role (create_doc, auto_configure) reads neither settings nor templates: HTTP 403."""
    es.ok("PUT", "/_security/role/entrycheck-shipper", {
        "cluster": ["monitor"], "indices": [{"names": ["entrycheck-*"], "privileges": ["create_doc",
                                                                                         "auto_configure"]}]})
    es.ok("PUT", "/_security/user/entrycheck-shipper", {"password": "entrycheck-pass", "roles":
                                                        ["entrycheck-shipper"]})
    output = _es_output(es_node, "entrycheck-none-z", username="entrycheck-shipper",
                        password=Secret("entrycheck-pass"))
    try:
        output.preflight()
    finally:
        output.close()
        es.request("DELETE", "/_security/user/entrycheck-shipper")
        es.request("DELETE", "/_security/role/entrycheck-shipper")
    [warning] = _warnings(agent_log)
    assert warning.getMessage().startswith("cannot check that the target's documents go through the entry "
                                           "pipeline")
    assert warning.kv["error"].startswith("GET /entrycheck-none-z/_settings: HTTP 403 (action "
                                          "[indices:monitor/settings/get] is unauthorized")


@pytest.mark.elasticsearch
def test_without_the_start_up_check_the_first_bulk_request_checks(es_node, es):
    """The daemon starts when the cluster is down (no check then): the check
    runs before its first bulk request, and a refusal sends nothing."""
    output = _es_output(es_node, "entrycheck-none-w")
    event = Event("src", 0, 1, "ec-1", orjson.dumps({"@timestamp": "2026-12-05T10:00:00Z", "message": "x"}))
    try:
        with pytest.raises(NoEntryPipeline):
            output.send([event])
    finally:
        output.close()
    assert es.count("entrycheck-none-w") == 0


def test_on_opensearch_a_wired_template_passes_and_none_is_refused(os_node, os, agent_log):
    def output(target: str) -> OpenSearchOutput:
        return OpenSearchOutput(ConnectionSettings(
            es_urls=(os_node.url,), target=target, ca_cert=os_node.ca_cert, username=os_node.username,
            password=Secret(_read(os_node.password_file)), raw_documents=True))

    _template(os.request, "entrycheck-wired", ENTRY)
    try:
        wired, unwired = output("entrycheck-wired-a"), output("entrycheck-none-x")
        try:
            wired.preflight()
            assert "no index template gives it an ingest pipeline" in _refused(unwired)
        finally:
            wired.close()
            unwired.close()
        assert not _warnings(agent_log)
    finally:
        os.request("DELETE", "/_index_template/entrycheck-wired")
