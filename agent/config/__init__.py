"""Configuration: the option table (``options``), value converters
(``values``) and the single resolution step to a frozen ``Config``
(``resolve``)."""

from agent.config.resolve import Config, describe, resolve

__all__ = ["Config", "describe", "resolve"]
