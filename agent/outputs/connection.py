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
    # Some file is shipped as raw text (--parse-at elasticsearch): the target
    # must send it through the entry pipeline (agent.outputs.entry_pipeline).
    raw_documents: bool = False

    @classmethod
    def from_config(cls, config: "Config") -> "ConnectionSettings":
        return cls(es_urls=tuple(config.es_urls), target=config.target, api_key=config.api_key,
                   api_key_file=config.api_key_file,
                   api_key_origin=config.origins.get("api_key", "the API key"), username=config.username,
                   password=config.password, password_file=config.password_file, ca_cert=config.ca_cert,
                   client_cert=config.client_cert, client_key=config.client_key, tls_verify=config.tls_verify,
                   request_timeout=config.request_timeout, gzip=config.gzip,
                   connections_per_node=config.workers + 2, raw_documents=ships_raw(config))


def ships_raw(config: "Config") -> bool:
    """Whether some file's lines may go out as raw documents: an input says
    ``parse_at: elasticsearch``, or the global setting does and some glob
    (``--path``, or an input without its own ``parse_at``) follows it."""
    if any(spec.parse_at == "elasticsearch" for spec in config.inputs):
        return True
    return config.parse_at == "elasticsearch" and (bool(config.paths)
                                                   or any(spec.parse_at is None for spec in config.inputs))
