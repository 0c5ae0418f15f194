"""What the Elasticsearch output needs to know, and nothing more.

``ConnectionSettings`` is the small frozen settings object the output is
given instead of the whole ``Config`` (dozens of fields, most of them about
reading files), so its dependencies are visible in one place. Built once,
from a resolved (already validated) ``Config``, by ``from_config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.selflog import Secret

if TYPE_CHECKING:
    from agent.config import Config


@dataclass(frozen=True)
class ConnectionSettings:
    es_urls: tuple[str, ...]
    target: str                    # the index or data stream documents go to
    api_key: Secret | None = None
    api_key_file: str | None = None
    api_key_origin: str = "the API key"  # where the key came from, for a 401's message
    username: str | None = None
    password: Secret | None = None
    password_file: str | None = None
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_verify: bool = True
    request_timeout: float = 30.0
    gzip: bool = False
    connections_per_node: int = 4  # the output workers, plus requests of setup and dead letters

    @classmethod
    def from_config(cls, config: "Config") -> "ConnectionSettings":
        return cls(es_urls=tuple(config.es_urls), target=config.target, api_key=config.api_key,
                   api_key_file=config.api_key_file,
                   api_key_origin=config.origins.get("api_key", "the API key"), username=config.username,
                   password=config.password, password_file=config.password_file, ca_cert=config.ca_cert,
                   client_cert=config.client_cert, client_key=config.client_key, tls_verify=config.tls_verify,
                   request_timeout=config.request_timeout, gzip=config.gzip,
                   connections_per_node=config.workers + 2)
