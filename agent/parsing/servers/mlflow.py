"""MLflow model serving logs (format ``mlflow``): ``mlflow models serve``.

``mlflow models serve`` logs a few lines through MLflow's own logger, then
runs the scoring server under uvicorn (MLflow 2.x and later:
``uvicorn ... mlflow.pyfunc.scoring_server.app:app``) or, in older releases,
gunicorn (``gunicorn ... mlflow.pyfunc.scoring_server.wsgi:app``)::

    2024/05/01 10:00:00 INFO mlflow.models.flavor_backend_registry: Selected backend for flavor 'python_function'
    2024/05/01 10:00:00 INFO mlflow.pyfunc.backend: === Running command 'exec uvicorn --host 0.0.0.0 --port 5000 ...'
    INFO:     Started server process [50]
    INFO:     127.0.0.1:51310 - "POST /invocations HTTP/1.1" 200 OK
    [2024-05-01 10:00:00 +0000] [12] [INFO] Booting worker with pid: 13          (gunicorn releases)

MLflow's logger (``%(asctime)s %(levelname)s %(name)s: %(message)s``, date
``%Y/%m/%d %H:%M:%S``, host local time) gives ``@timestamp``,
``log.level``, ``log.logger`` and the message after ``logger: ``; the
uvicorn and gunicorn lines are read as
the ``uvicorn`` and ``gunicorn`` formats read them. The scoring server's
routes map through ``access.model_route``: ``/invocations`` ->
``model.operation`` predict, ``/ping`` and ``/health`` -> health. Every
record has ``model.server`` = mlflow.

Guarantee: never raises; other lines are plain text (tagged
``parse_failure`` when the format was forced).
"""

from __future__ import annotations

import re
from typing import ClassVar

from agent.parsing import timestamps
from agent.parsing.base import TextInfo
from agent.parsing.formats import register_format
from agent.parsing.parse_text import PlainFormat
from agent.parsing.servers.access import LEVELS, fallback
from agent.parsing.servers.gunicorn import gunicorn_info
from agent.parsing.servers.uvicorn import uvicorn_info

_MLFLOW = re.compile(r"(\d{4})/(\d\d)/(\d\d) (\d\d:\d\d:\d\d) (" + LEVELS + r") ([A-Za-z_][\w.]*): ")


def mlflow_info(text: str) -> TextInfo | None:
    """TextInfo of an MLflow, uvicorn or gunicorn line of a scoring server, else None."""
    first = text[:1]
    if first.isdigit():
        match = _MLFLOW.match(text)
        if match is not None:
            year, month, day, clock, level, logger = match.groups()
            fields = {"model": {"server": "mlflow"}, "log": {"level": level.lower(), "logger": logger}}
            return TextInfo(timestamps.parse_string(f"{year}-{month}-{day} {clock}"), fields, (), None,
                            text[match.end():])
    info = uvicorn_info(text, "mlflow") if first != "[" else None
    return info if info is not None else gunicorn_info(text, "mlflow")


@register_format
class MlflowFormat(PlainFormat):
    """``--format mlflow``: ``mlflow models serve`` output; tracebacks joined."""

    name = "mlflow"
    detect_priority: ClassVar[int] = 20

    @classmethod
    def detect(cls, text: str) -> bool:
        match = _MLFLOW.match(text)
        return match is not None and match.group(6).startswith("mlflow")

    def head(self, text: str) -> TextInfo:
        info = mlflow_info(text)
        return info if info is not None else fallback(text, "mlflow", getattr(self, "strict", True))
