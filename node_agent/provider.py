"""Provider-side services, wired into the daemon as one unit: GPU capacity (NVML), GPU
assignment for containers, orchestrator reporting, API keys and Prometheus metrics.

The daemon builds one :class:`ProviderServices`, hands ``gpu_planner`` to the container manager
and ``api_keys``/``metrics`` to the API context, calls :meth:`attach`, and then
:meth:`start` in the background before containers come up.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from node_agent import __version__
from node_agent.api.context import NodeContext
from node_agent.api.handlers import run_checks
from node_agent.auth.keys import ApiKeyAuthority, default_key_file
from node_agent.config import Config
from node_agent.containers.manager import ContainerManager
from node_agent.gpu.assign import GpuAllocator, GpuPlanner
from node_agent.gpu.model import CapacitySnapshot, to_jsonable
from node_agent.gpu.monitor import GpuMonitor
from node_agent.grid.client import OrchestratorClient
from node_agent.grid.identity import IdentityStore
from node_agent.grid.pull import StatusSender, WorkloadAssignments, workload_entry
from node_agent.grid.reporter import GridReporter
from node_agent.jobs.service import JobService
from node_agent.metrics import AgentMetrics, NodeReading

log = structlog.get_logger(__name__)


def _docker_or_none() -> Any | None:
    try:
        import docker

        return docker.from_env(timeout=10)
    except Exception as exc:  # no engine: node facts say so, nothing else depends on it
        log.warning("node_facts_without_docker", error=str(exc))
        return None


class ProviderServices:
    def __init__(
        self,
        config: Config,
        state_dir: Path,
        *,
        nvml_library: Any | None = None,
        docker_client_factory: Callable[[], Any | None] = _docker_or_none,
    ) -> None:
        self.config = config
        self._docker_client_factory = docker_client_factory
        self._nvml_library = nvml_library
        self.monitor: GpuMonitor | None = None
        self.allocator = GpuAllocator()
        self.gpu_planner = GpuPlanner(self.allocator, self.inventory)
        self._workloads: Any = None
        self._workload_finals: Counter[str] = Counter()
        self._ctx: NodeContext | None = None
        self.api_keys = ApiKeyAuthority(
            config.api_keys, default_key_file(config.api_keys, state_dir)
        )
        # Read at scrape time; the job service, pipeline and chain report events to it too.
        self.metrics = AgentMetrics(self._reading)
        self._hostname = socket.gethostname()
        self._identity_store = IdentityStore(state_dir)
        self.reporter: GridReporter | None = None
        self._started = False

    def inventory(self) -> Any:
        return self.monitor.snapshot().gpus if self.monitor is not None else ()

    def attach_workloads(self, workloads: Any) -> None:
        """Workloads count in the heartbeat's job counters and ``accepting_jobs``; with the
        grid enabled, :meth:`start` also wires pull dispatch into them."""
        self._workloads = workloads
        workloads.service.listeners.append(self._workload_changed)

    def _workload_changed(self, job: Any) -> None:
        if job.status.final:
            self._workload_finals[job.status.value] += 1
        entry = workload_entry(job)
        if entry is not None and self.reporter is not None:
            self.reporter.report_workload(entry)

    # --- wiring ---------------------------------------------------------------------------------

    def attach(self, ctx: NodeContext, jobs: JobService, manager: ContainerManager) -> None:
        """Register /info, /resources, /health sections and the /metrics renderer; the job
        service and its pipeline report their latencies to the metrics from here on."""
        self._jobs = jobs
        self._manager = manager
        self._ctx = ctx
        jobs.recorder = jobs.pipeline.recorder = self.metrics
        ctx.api_keys = self.api_keys
        ctx.metrics = self.metrics.scrape
        ctx.info_sections["gpus"] = self._gpus_section
        ctx.info_sections["node"] = self._node_section
        # "_node" cannot be a container id (ids start with a letter or digit).
        ctx.resources_sections["_node"] = self._resources_section
        ctx.health_checks["gpus"] = self._gpu_health
        ctx.health_checks["grid"] = self._grid_health

    async def start(self, spawn: Callable[..., Any]) -> None:
        """First capacity reading, GPU grants rebuilt from labels, then reporting starts."""
        config = self.config
        docker_client = await asyncio.to_thread(self._docker_client_factory)
        if config.gpus.enabled:
            self.monitor = GpuMonitor.from_config(
                config.gpus, docker_client=docker_client, library=self._nvml_library
            )
            await self.monitor.start()
        try:
            self.allocator.rebuild(await self._manager.labels_by_container())
        except Exception as exc:  # Docker down: containers will fail with their own reason
            log.warning("gpu_grants_not_rebuilt", error=str(exc))
        spawn(self.api_keys.watch(), name="api-keys-watch")
        grid = config.grid
        if grid.enabled and grid.url:
            client = OrchestratorClient(grid.url, grid.api_key, timeout=grid.request_timeout)
            reporter = self.reporter = GridReporter(
                grid,
                client=client,
                identity_store=self._identity_store,
                capacity=self._snapshot,
                job_counts=self.job_counts,
                containers=[c.id for c in config.containers],
                agent_version=__version__,
                accepting=self.accepting_jobs,
            )
            if self._workloads is not None:
                # Pull dispatch; set before the workloads start so their outbox has a sender.
                assignments = WorkloadAssignments(self._workloads.service, draining=self.draining)
                reporter.on_assignments = assignments
                reporter.on_cancellations = assignments.cancel
                self._workloads.grid_sender = StatusSender(
                    client, lambda: reporter.status().node_id
                )
            reporter.start()
        self._started = True

    async def stop(self) -> None:
        if self.reporter is not None:
            await self.reporter.stop()
        if self.monitor is not None:
            await self.monitor.stop()

    def reconfigured(self, config: Config) -> None:
        self.config = config
        self.allocator.retain(c.id for c in config.containers)

    # --- readers ----------------------------------------------------------------------------------

    def _snapshot(self) -> Any:
        if self.monitor is None:  # GPU monitoring off: a CPU node still reports and pulls
            return CapacitySnapshot(collected_at=time.time(), health="unknown")
        return self.monitor.snapshot()

    def job_counts(self) -> dict[str, int]:
        """Infernet jobs and workloads together; a workload pulling or starting holds its
        GPUs, so it counts as running."""
        jobs = self._jobs
        counts = {
            "running": jobs.store.running_count(),
            "queued": sum(jobs.admission.queue_depth().values()),
            "succeeded": jobs.counters["success"],
            "failed": jobs.counters["failed"],
        }
        if self._workloads is not None:
            workloads = self._workloads.service.counts()
            counts["running"] += workloads["active"]
            counts["queued"] += workloads["queued"]
            counts["succeeded"] += self._workload_finals["succeeded"]
            counts["failed"] += self._workload_finals["failed"]
        return counts

    def draining(self) -> bool:
        """The node is shutting down: running work finishes, nothing new is taken."""
        ctx_draining = self._ctx is not None and self._ctx.draining
        return ctx_draining or bool(
            self._workloads is not None and self._workloads.service.draining
        )

    def accepting_jobs(self) -> bool:
        """False while draining or while the workload queue is full."""
        if self.draining():
            return False
        if self._workloads is None:
            return True
        service = self._workloads.service
        return bool(service.counts()["queued"] < service.config.max_queued)

    def _gpus_section(self) -> list[dict[str, Any]]:
        if self.monitor is None:
            return []
        return [to_jsonable(g) for g in self.monitor.snapshot().gpus]

    def _node_section(self) -> dict[str, Any]:
        body: dict[str, Any] = {"gpu_monitoring": self.config.gpus.enabled}
        if self.monitor is not None:
            snapshot = self.monitor.snapshot()
            body.update(
                health=snapshot.health,
                reasons=list(snapshot.reasons),
                remedy=snapshot.remedy,
                nvml_available=snapshot.nvml_available,
                collected_at=snapshot.collected_at,
                facts=to_jsonable(snapshot.node),
            )
        if self.reporter is not None:
            body["grid"] = self.reporter.status().to_dict()
        return body

    def _resources_section(self) -> dict[str, Any]:
        if self.monitor is None:
            return {}
        snapshot = self.monitor.snapshot()
        return {"node": to_jsonable(snapshot.node), "gpus": self._gpus_section()}

    def _gpu_health(self) -> dict[str, Any]:
        if self.monitor is None:
            return {"status": "ok", "gpus": 0, "monitoring": False}
        snapshot = self.monitor.snapshot()
        status = {"healthy": "ok", "degraded": "degraded"}.get(snapshot.health, "unhealthy")
        if not self._started:
            status = "degraded"
        out: dict[str, Any] = {"status": status, "gpus": len(snapshot.gpus)}
        if snapshot.reasons:
            out["reasons"] = list(snapshot.reasons)
        if snapshot.remedy:
            out["remedy"] = snapshot.remedy
        return out

    def _grid_health(self) -> dict[str, Any]:
        if self.reporter is None:
            return {"status": "ok", "enabled": False}
        status = self.reporter.status()
        verdict = {"registered": "ok", "auth_failed": "unhealthy"}.get(status.state, "degraded")
        return {"status": verdict, **status.to_dict()}

    def _reading(self) -> NodeReading:
        """The node's state for one scrape (in-memory reads only: it runs on the loop)."""
        ctx, jobs = self._ctx, self._jobs
        assert ctx is not None
        chain = ctx.chain
        return NodeReading(
            capacity=self.monitor.snapshot() if self.monitor is not None else None,
            jobs_finished=dict(jobs.counters),
            jobs_running=jobs.store.running_count(),
            queues=dict(jobs.admission.gates),
            containers=self._manager.describe(),
            workloads=self._workloads.metrics() if self._workloads is not None else None,
            grid=self.reporter.status() if self.reporter is not None else None,
            chain=chain.status() if chain is not None else None,
            health={name: str(c.get("status")) for name, c in run_checks(ctx).items()},
            draining=self.draining(),
            hostname=self._hostname,
        )
