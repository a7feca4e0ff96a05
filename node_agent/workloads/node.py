"""Wires workloads into the daemon as one unit: store, Docker adapter, service, outbox
deliverer and routes; the daemon calls ``attach``, ``start`` (after GPU grants are rebuilt)
and ``stop``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from node_agent.api.context import NodeContext
from node_agent.containers.manager import ContainerManager
from node_agent.containers.service_client import ServiceClient
from node_agent.gpu.assign import GpuAllocator
from node_agent.gpu.model import GpuState
from node_agent.jobs.service import JobService
from node_agent.pulls import PullBoard
from node_agent.workloads.api import WorkloadHandlers
from node_agent.workloads.callbacks import OutboxDeliverer, Sender
from node_agent.workloads.config import WorkloadsConfig
from node_agent.workloads.destinations import guarded_session
from node_agent.workloads.docker_adapter import WorkloadDocker
from node_agent.workloads.service import WorkloadService
from node_agent.workloads.services import InfernetServiceBridge
from node_agent.workloads.store import WorkloadStore


def node_tag(state_dir: Path) -> str:
    """Stable per state directory: the node a workload container belongs to."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]


def _docker_client() -> Any:
    import docker

    # Long enough for a large image's layer to start arriving; pulls have their own deadline.
    return docker.from_env(timeout=120)


class WorkloadNode:
    def __init__(
        self,
        config: WorkloadsConfig,
        state_dir: Path,
        *,
        allocator: GpuAllocator,
        inventory: Callable[[], Sequence[GpuState]],
        prices: Callable[[], Mapping[str, float]],
        docker_factory: Callable[[], Any] = _docker_client,
        pulls: PullBoard | None = None,
    ) -> None:
        self.config = config
        self.store = WorkloadStore(state_dir / "workloads.sqlite")
        self.service = WorkloadService(
            config,
            store=self.store,
            docker=WorkloadDocker(docker_factory),
            allocator=allocator,
            inventory=inventory,
            prices=prices,
            log_dir=state_dir / "workload-logs",
            node_tag=node_tag(state_dir),
            pulls=pulls,
        )
        self._session: aiohttp.ClientSession | None = None
        self.deliverer: OutboxDeliverer | None = None
        self.grid_sender: Sender | None = None
        self.services: InfernetServiceBridge | None = None

    async def open(self) -> None:
        """Before the server listens: routes need an open store."""
        await self.store.open()
        self._session = guarded_session(lambda: self.config.callbacks.blocked)
        self.deliverer = OutboxDeliverer(
            self.store, self.config.callbacks, session=self._session, grid_sender=self.grid_sender
        )
        self.service.listeners.append(lambda _job: self._wake())

    def _wake(self) -> None:
        if self.deliverer is not None:
            self.deliverer.wake()

    def attach(self, ctx: NodeContext) -> None:
        ctx.route_extensions.append(WorkloadHandlers(self.service).register)
        ctx.health_checks["workloads"] = self.health

    def serve_as_containers(
        self,
        manager: ContainerManager,
        jobs: JobService,
        client: ServiceClient,
        spawn: Callable[..., Any],
    ) -> None:
        """Inference workloads with ``infernet_service`` are callable through /api/jobs."""
        self.services = InfernetServiceBridge(manager, jobs, client, spawn)
        self.service.listeners.append(self.services.on_change)

    def reconfigure(self, config: WorkloadsConfig) -> None:
        """A reload: limits, images, registries and callback settings apply to what comes
        next (a running job keeps the container it was given)."""
        self.config = config
        self.service.config = config
        if self.deliverer is not None:
            self.deliverer.settings = config.callbacks

    def reapply_services(self) -> None:
        if self.services is not None:
            self.services.reapply()

    def metrics(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        deliverer = self.deliverer
        outbox = {
            "delivered": deliverer.delivered if deliverer else 0,
            "failed": deliverer.failed if deliverer else 0,
        }
        return self.service.counts(), dict(self.service.finished), outbox

    def health(self) -> dict[str, Any]:
        counts = self.service.counts()
        deliverer = self.deliverer
        return {
            "status": "ok",
            **counts,
            "callbacks_delivered": deliverer.delivered if deliverer else 0,
            "callbacks_failed": deliverer.failed if deliverer else 0,
        }

    async def start(self, spawn: Callable[..., Any]) -> None:
        """After GPU grants of service containers are rebuilt: re-attach and schedule."""
        assert self.deliverer is not None
        if self.grid_sender is not None:
            self.deliverer.grid_sender = self.grid_sender
        await self.service.start()
        spawn(self.deliverer.run(), name="workloads-outbox")

    async def stop(self) -> None:
        await self.service.stop()
        await self.store.close()
        if self._session is not None:
            await self._session.close()
