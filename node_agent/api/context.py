"""What the HTTP layer needs from the rest of the node, as narrow interfaces."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from node_agent.auth.keys import ApiKeyAuthority, Principal
from node_agent.config import Config
from node_agent.containers.manager import ContainerManager
from node_agent.containers.service_client import ServiceClient
from node_agent.jobs.guardian import IpAddress
from node_agent.jobs.service import JobService


class ChainGateway(Protocol):
    """The on-chain side as the API sees it (``node_agent.chain``)."""

    @property
    def address(self) -> str: ...

    def pending_count(self) -> int: ...

    def status(self) -> dict[str, Any]: ...

    async def accept_delegated(self, body: dict[str, Any], client_ip: str) -> None: ...


HealthCheck = Callable[[], dict[str, Any]]


@dataclass
class NodeContext:
    config: Config
    jobs: JobService
    containers: ContainerManager
    service_client: ServiceClient
    chain: ChainGateway | None = None
    # name -> {"status": "ok"|"degraded"|"unhealthy", ...}; shown in /health and /info.
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    # extra top-level /info sections (e.g. "gpus", "node") added by optional components.
    info_sections: dict[str, Callable[[], Any]] = field(default_factory=dict)
    # extra /resources content (e.g. node hardware) keyed by a name no container can have.
    resources_sections: dict[str, Callable[[], Any]] = field(default_factory=dict)
    # API keys (node_agent.auth): checked before any handler when set.
    api_keys: ApiKeyAuthority | None = None
    # GET /metrics (node_agent.metrics), when set: the request's Accept header -> (body,
    # content type), so a scraper that asks for OpenMetrics gets it.
    metrics: Callable[[str], Awaitable[tuple[bytes, str]]] | None = None
    # More routes from optional components (workloads), given the route table to add to.
    route_extensions: list[Callable[[Any], None]] = field(default_factory=list)
    draining: bool = False

    def client_key(self, ip: IpAddress, principal: Principal | None = None) -> str:
        """The namespace a client's jobs live in: the API key's principal when the request
        carried one (so keys sharing an address never see each other's jobs), else the
        client's address (as in Infernet, for keyless clients)."""
        if principal is not None and principal.key_id is not None:
            return f"key:{principal.key_id}"
        return address_text(ip)


@functools.lru_cache(maxsize=4096)
def address_text(ip: IpAddress) -> str:
    """``str(ip)`` is surprisingly slow and clients repeat: format each address once."""
    return str(ip)
