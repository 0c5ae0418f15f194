"""Extra Elasticsearch nodes for the fault tests (the session node of
tests/conftest.py is shared by everything else and must stay up)."""

from __future__ import annotations

import pytest

import elasticsearch_local


@pytest.fixture(scope="session")
def outage_node(tmp_path_factory):
    """A node the tests stop and restart."""
    work = tmp_path_factory.mktemp("es-outage")
    node = elasticsearch_local.start_node(work)
    try:
        yield node
    finally:
        elasticsearch_local.remove_node(work)


@pytest.fixture(scope="session")
def busy_node(tmp_path_factory):
    """A node whose write thread pool has one thread and a one-slot queue: bulk items get 429."""
    work = tmp_path_factory.mktemp("es-busy")
    node = elasticsearch_local.start_node(work, settings={"thread_pool.write.size": 1,
                                                          "thread_pool.write.queue_size": 1})
    try:
        yield node
    finally:
        elasticsearch_local.remove_node(work)
