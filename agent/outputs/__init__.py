"""Outputs: where documents go. Every output implements ``base.Output`` and
goes through the same delivery path (``sender``): a batch is acknowledged
only after the output confirmed it, which is what lets the registry commit."""

from __future__ import annotations

from agent.config import Config
from agent.outputs.base import Output


def build_output(config: Config) -> Output:
    """The output named by --output."""
    from agent.outputs.console import ConsoleOutput
    from agent.outputs.elasticsearch import ElasticsearchOutput
    from agent.outputs.file import FileOutput
    from agent.outputs.null import NullOutput

    if config.output == "null":
        return NullOutput()
    if config.output == "console":
        return ConsoleOutput()
    if config.output.startswith("file:"):
        return FileOutput(config.output[5:])
    return ElasticsearchOutput(config)
