"""Inference workloads that speak the Infernet service protocol become service containers of
this node while they run: an orchestrator deploys a model as a workload, then sends it Infernet
jobs through ``/api/jobs`` with the workload's job id as the container id.

The bridge only adds and removes entries (manager endpoint, guardian policy, admission gate);
jobs already admitted to a service that ends fail with the container's own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from node_agent.config import ContainerConfig
from node_agent.containers.admission import ContainerGate
from node_agent.containers.manager import ContainerManager
from node_agent.containers.service_client import ServiceClient
from node_agent.jobs.guardian import ContainerPolicy
from node_agent.jobs.service import JobService
from node_agent.workloads.model import Workload, WorkloadStatus

log = structlog.get_logger(__name__)

READY_BUDGET = 120.0  # seconds a model server may take to load before it is served


def service_config(job: Workload) -> ContainerConfig | None:
    """The container entry for a running inference workload, or None when it is not one."""
    draft = job.draft
    ports = draft.get("ports") or []
    if not draft.get("infernet_service") or not ports:
        return None
    host_port = job.ports.get(str(ports[0]))
    if host_port is None:
        return None
    # The owner's model, on the owner's bill: only the owner's key may send it jobs, unless
    # the draft opens it to every client this node admits.
    owner_key = job.owner.removeprefix("key:") if job.owner.startswith("key:") else None
    allowed = () if draft.get("infernet_public") or owner_key is None else (owner_key,)
    return ContainerConfig(
        id=job.id,
        allowed_keys=allowed,
        url=f"http://127.0.0.1:{host_port}",
        description=f"workload {draft.get('name') or job.id}",
        max_concurrency=8,
        queue_size=256,
    )


class InfernetServiceBridge:
    def __init__(
        self,
        manager: ContainerManager,
        jobs: JobService,
        client: ServiceClient,
        spawn: Callable[..., Any],
    ) -> None:
        self._manager = manager
        self._jobs = jobs
        self._client = client
        self._spawn = spawn
        self._served: dict[str, ContainerConfig] = {}
        self._pending: set[str] = set()
        # Gates kept after their service ended because jobs still held them.
        self._retired: set[str] = set()

    def on_change(self, job: Workload) -> None:
        """A workload listener: serve when it runs, stop serving when it ends."""
        if job.status is WorkloadStatus.RUNNING and job.id not in self._served:
            config = service_config(job)
            if config is not None and job.id not in self._pending:
                self._pending.add(job.id)
                self._spawn(self._serve_when_ready(job, config), name=f"serve-{job.id}")
        elif job.status.final:
            self._pending.discard(job.id)
            self._withdraw(job.id)

    async def _serve_when_ready(self, job: Workload, config: ContainerConfig) -> None:
        """Served only once it answers HTTP, so the first Infernet job does not fail."""
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + READY_BUDGET
            while job.id in self._pending and not job.status.final:
                if await self._client.probe(config.url, timeout=1.0):
                    self._add(config)
                    return
                if loop.time() > deadline:
                    log.warning("workload_service_not_ready", job_id=job.id, url=config.url)
                    return
                await asyncio.sleep(0.2)
        finally:
            self._pending.discard(job.id)

    def _add(self, config: ContainerConfig) -> None:
        self._served[config.id] = config
        self._install(config)
        log.info("workload_served_as_container", job_id=config.id, url=config.url)

    def _install(self, config: ContainerConfig) -> None:
        self._manager.add_dynamic(config)
        self._jobs.policies[config.id] = ContainerPolicy.from_config(config)
        gates = self._jobs.admission.gates
        if config.id not in gates:
            gates[config.id] = ContainerGate(config.id, config.max_concurrency, config.queue_size)

    def _withdraw(self, job_id: str) -> None:
        if self._served.pop(job_id, None) is None:
            return
        self._manager.remove_dynamic(job_id)
        self._jobs.policies.pop(job_id, None)
        self._retired.add(job_id)
        gates = self._jobs.admission.gates
        for retired in list(self._retired):
            gate = gates.get(retired)
            if gate is None or gate.admitted == 0:
                gates.pop(retired, None)
                self._retired.discard(retired)
        log.info("workload_service_withdrawn", job_id=job_id)

    def reapply(self) -> None:
        """After a config reload replaced policies and admission: put the served ones back."""
        for config in self._served.values():
            self._install(config)

    def served(self) -> list[str]:
        return sorted(self._served)
