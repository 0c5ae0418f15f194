"""Allow ``python -m agent`` as an alias of the ``modelscribe`` command
(through the same entry point, agent.launch: the daemon's signals are caught
before the command line is imported)."""

from agent.launch import main

main()
