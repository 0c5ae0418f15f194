"""Fields read from the path: model templates (globs, ``**``, first match wins) and
Kubernetes log layouts, with their precedence and cache."""

from __future__ import annotations

import orjson
import pytest

from agent.transforms import HostInfo, Transforms, TransformSettings, validate
from agent.transforms.model_path import PathFields, Template, compile_templates, kubernetes_fields

HOST = HostInfo(name="node-1")
POD_UID = "7d3f2b1c-5a4e-4c3b-9f1e-2d6a8b0c4e1f"
CONTAINER_ID = "3b8f0e2a9c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f"


def _doc(**fields):
    doc = {"@timestamp": "2026-11-27T12:00:00.000Z", "message": "ready", "host": {"name": "node-1"}}
    doc.update(fields)
    return doc


def _run(settings: TransformSettings, path: str, doc=None) -> dict:
    transforms = Transforms(settings, HOST)
    return orjson.loads(transforms.process(doc if doc is not None else _doc(), path, "id-1"))


@pytest.mark.parametrize("template, path, expected", [
    ("/var/log/models/{model.name}/{model.version}/*.log", "/var/log/models/resnet50/3/access.log",
     {"name": "resnet50", "version": "3"}),
    ("/var/log/models/{model.name}/**/*.log", "/var/log/models/bert/2024/05/01/app.log", {"name": "bert"}),
    ("/var/log/models/{model.name}/**/*.log", "/var/log/models/bert/app.log", {"name": "bert"}),
    ("/srv/**/{model.name}-{model.version}.log", "/srv/a/b/llama-3-8b-2.log",
     {"name": "llama-3-8b", "version": "2"}),
    ("/srv/{model.name}/v?/model.log", "/srv/xgb-churn/v7/model.log", {"name": "xgb-churn"}),
    ("/srv/[abc]*/{model.version}/x.log", "/srv/bert/12/x.log", {"version": "12"}),
    ("models/{model.name}/*.log", "/mnt/data/models/yolov8/run.log", {"name": "yolov8"}),
])
def test_templates_capture_model_identity(template, path, expected):
    doc = _run(TransformSettings(model_from_path=(template,)), path)
    assert doc["model"] == expected


@pytest.mark.parametrize("template, path", [
    ("/var/log/models/{model.name}/*.log", "/var/log/models/resnet/1/access.log"),  # * stays in a directory
    ("/var/log/models/{model.name}/*.log", "/var/log/other/resnet/access.log"),
    ("/srv/{model.name}/v?/model.log", "/srv/xgb/v10/model.log"),
    ("/srv/[!abc]*/{model.version}/x.log", "/srv/bert/12/x.log"),
    ("models/{model.name}/*.log", "/mnt/data/mymodels/yolov8/run.log"),  # only at a directory boundary
])
def test_templates_that_do_not_match_set_nothing(template, path):
    assert "model" not in _run(TransformSettings(model_from_path=(template,)), path)


def test_first_matching_template_wins_and_repeated_placeholder_must_agree():
    templates = ("/srv/{model.name}/{model.name}.log", "/srv/{model.name}/{model.version}.log",
                 "/srv/{service.name}/*.log")
    assert _run(TransformSettings(model_from_path=templates), "/srv/bert/bert.log")["model"] == {"name": "bert"}
    doc = _run(TransformSettings(model_from_path=templates), "/srv/bert/7.log")
    assert doc["model"] == {"name": "bert", "version": "7"} and "service" not in doc


def test_fields_of_the_line_win_over_the_path():
    doc = _doc(model={"name": "from-line", "server": "torchserve"})
    out = _run(TransformSettings(model_from_path=("/m/{model.name}/{model.version}/*.log",)), "/m/path-name/4/a.log",
               doc)
    assert out["model"] == {"name": "from-line", "server": "torchserve", "version": "4"}
    # A null from the line carries no information: the path fills it.
    out = _run(TransformSettings(model_from_path=("/m/{model.name}/*.log",)), "/m/bert/a.log",
               _doc(model={"name": None}))
    assert out["model"] == {"name": "bert"}


def test_labels_and_service_from_path():
    out = _run(TransformSettings(model_from_path=("/logs/{labels.team}/{service.name}/*.log",)),
               "/logs/search/ranker/x.log")
    assert out["labels"] == {"team": "search"} and out["service"] == {"name": "ranker"}


def test_pod_log_layout():
    path = f"/var/log/pods/ml-serving_resnet50-predictor-7d9f8-abcde_{POD_UID}/kserve-container/0.log"
    assert kubernetes_fields(path) == {"kubernetes": {
        "namespace": "ml-serving", "pod": {"name": "resnet50-predictor-7d9f8-abcde", "uid": POD_UID},
        "container": {"name": "kserve-container"}}}
    # rotated files keep their identity, and /var/log may be mounted elsewhere
    rotated = f"/host/var/log/pods/ml-serving_p_{POD_UID}/c/3.log.20261127-120000.gz"
    assert kubernetes_fields(rotated)["kubernetes"]["container"] == {"name": "c"}


def test_container_log_layout():
    path = f"/var/log/containers/vllm-llama-0_llm_vllm-server-{CONTAINER_ID}.log"
    assert kubernetes_fields(path) == {
        "kubernetes": {"namespace": "llm", "pod": {"name": "vllm-llama-0"}, "container": {"name": "vllm-server"}},
        "container": {"id": CONTAINER_ID}}


@pytest.mark.parametrize("path", [
    "/var/log/pods/not-a-pod-dir/c/0.log",
    f"/var/log/pods/ns_pod_{POD_UID}/c/app.log",
    "/var/log/containers/pod_ns_c-123.log",
    "/var/log/models/resnet/access.log",
])
def test_other_paths_are_not_kubernetes(path):
    assert kubernetes_fields(path) is None


def test_kubernetes_fields_in_documents_and_switch():
    path = f"/var/log/pods/ns1_pod-a_{POD_UID}/main/0.log"
    assert _run(TransformSettings(), path)["kubernetes"]["namespace"] == "ns1"
    assert "kubernetes" not in _run(TransformSettings(kubernetes_paths=False), path)


def test_template_wins_over_kubernetes_wins_over_static():
    path = f"/var/log/pods/ns1_pod-a_{POD_UID}/main/0.log"
    static = (("kubernetes.namespace", "static-ns"), ("kubernetes.pod.name", "static-pod"),
              ("service.environment", "prod"))
    settings = TransformSettings(fields=static, model_from_path=("/var/log/pods/*/{kubernetes.pod.name}/*.log",))
    out = _run(settings, path)
    assert out["kubernetes"]["pod"] == {"name": "main", "uid": POD_UID}  # template
    assert out["kubernetes"]["namespace"] == "ns1"  # Kubernetes layout over --field
    assert out["service"] == {"environment": "prod"}
    # A placeholder takes as much of its segment as it can.
    greedy = _run(TransformSettings(model_from_path=("/var/log/pods/{model.name}_*/**",)), path)
    assert greedy["model"] == {"name": "ns1_pod-a"}


def test_results_are_cached_per_path_and_shared_trees_stay_intact():
    fields = PathFields(compile_templates(("/m/{model.name}/*.log",)), True, {"labels": {"a": "b"}})
    first = fields.tree("/m/x/a.log")
    assert fields.tree("/m/x/a.log") is first
    transforms = Transforms(TransformSettings(model_from_path=("/m/{model.name}/*.log",)), HOST)
    one = transforms.apply(_doc(), "/m/x/a.log", "1")
    two = transforms.apply(_doc(model={"server": "bentoml"}), "/m/x/a.log", "2")
    three = transforms.apply(_doc(), "/m/x/a.log", "3")
    assert one["model"] == three["model"] == {"name": "x"}
    assert two["model"] == {"name": "x", "server": "bentoml"}


def test_values_from_paths_are_redacted_like_any_text():
    out = _run(TransformSettings(model_from_path=("/home/{labels.owner}/{model.name}/*.log",),
                                 redact_patterns=("email",)),
               "/home/alice@example.com/bert/x.log")
    assert out["labels"] == {"owner": "[REDACTED:email]"}


@pytest.mark.parametrize("template, reason", [
    ("/m/{model.nme}/*.log", "names no known field"),
    ("/m/{model.batch_size}/*.log", "long field"),
    ("/m/{gen_ai.prompt}/*.log", "text field"),
    ("/m/{message}/*.log", "text field"),
    ("/m/*.log", "names no field"),
    ("/m/{model.name/*.log", "unclosed"),
    ("/m/model.name}/*.log", "without"),
    ("/m/[abc/{model.name}", "unclosed"),
    ("/m/{a b}/x", "not a field name"),
])
def test_bad_templates_are_refused_at_start(template, reason):
    with pytest.raises(ValueError, match="--model-from-path") as error:
        validate(TransformSettings(model_from_path=(template,)))
    assert reason in str(error.value)


def test_template_regex_is_anchored():
    template = Template("/m/{model.name}.log")
    assert template.match("/m/a.log") == [("model.name", "a")]
    assert template.match("/m/a.log.1") is None
    assert template.match("/x/m/a.log") is None
