"""Formats of the model servers. Importing this package registers every one
of them in ``agent.parsing.formats.FORMATS`` (``--format NAME`` and the
per-file detection of ``--format auto``).

    torchserve  access, ts/model logs (per-thread traceback joining), metrics
    triton      glog default and ISO8601 layouts
    bentoml     HTTP server access lines, bentoml.monitor records
    uvicorn     uvicorn access and server lines
    kserve      KServe's logger, trace latencies, URL-encoded model paths
    gunicorn    access (common/combined + durations) and error logs
    rayserve    Ray Serve text and JSON logs
    vllm        engine metrics, request lines (prompts kept as payload fields)
    mlflow      MLflow scoring server
"""

from agent.parsing.servers import bentoml, gunicorn, kserve, mlflow, rayserve, torchserve, triton, uvicorn, vllm

__all__ = ["bentoml", "gunicorn", "kserve", "mlflow", "rayserve", "torchserve", "triton", "uvicorn", "vllm"]
