"""Allow ``python -m agent`` as an alias of the ``modelscribe`` command."""

from agent.cli import entry

entry()
