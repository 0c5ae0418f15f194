"""modelscribe: a log shipping agent for machine-learning model deployments.

The package is laid out along the data path:

    sources (tailing) -> parsing -> enrich -> outputs
                 \\-> registry (offsets, advanced only on acknowledgement)

plus ``config`` (flags/env/file resolution), ``cli`` and ``pipeline`` (the
daemon that wires the stages together with bounded queues).
"""

__version__ = "0.1.0"
AGENT_NAME = "modelscribe"
