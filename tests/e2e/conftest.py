"""Extra Elasticsearch nodes for the fault tests (the session node of
tests/conftest.py is shared by everything else and must stay up)."""

from __future__ import annotations

import pytest

import elasticsearch_local
from node_helper import running_node


@pytest.fixture(scope="session")
def outage_node(tmp_path_factory):
    """A node the tests stop and restart."""
    with running_node(elasticsearch_local, tmp_path_factory.mktemp("es-outage")) as node:
        yield node


@pytest.fixture(scope="session")
def busy_node(tmp_path_factory):
    """A node whose write thread pool has one thread and a one-slot queue: bulk items get 429."""
    with running_node(elasticsearch_local, tmp_path_factory.mktemp("es-busy"),
                      settings={"thread_pool.write.size": 1,
                                "thread_pool.write.queue_size": 1}) as node:
        yield node
