"""GpuMonitor: owns the NVML adapter, polls it, and keeps the latest capacity snapshot.

Readers (``/info``, ``/metrics``, the grid reporter, GPU assignment) call :meth:`snapshot`,
which never waits on the driver.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog

from node_agent.gpu.config import GpusConfig
from node_agent.gpu.health import assess_gpu, worst
from node_agent.gpu.model import CapacitySnapshot, DockerFacts, NodeFacts
from node_agent.gpu.node import docker_facts, host_facts
from node_agent.gpu.nvml import NvmlAdapter, NvmlUnavailable
from node_agent.tasks import cancel_and_wait

log = structlog.get_logger(__name__)


class GpuMonitor:
    def __init__(
        self,
        adapter: NvmlAdapter,
        *,
        config: GpusConfig | None = None,
        docker_client: Any | None = None,
        clock: Callable[[], float] = time.time,
        facts_timeout: float = 10.0,
    ) -> None:
        self._adapter = adapter
        self._config = config or GpusConfig()
        self._docker_client = docker_client
        self._clock = clock
        self._facts_timeout = facts_timeout
        self._snapshot = CapacitySnapshot(
            collected_at=clock(), health="unknown", reasons=("not_collected_yet",)
        )
        self._task: asyncio.Task[None] | None = None
        self._last_health: str | None = None
        self._docker_facts: tuple[float, DockerFacts] | None = None
        self._docker_facts_ttl = 60.0
        # At most one read of Docker's facts at a time: a hung dockerd holds one thread, not
        # one per refresh, and refreshes go on without waiting for it.
        self._docker_reading: asyncio.Future[DockerFacts] | None = None

    @classmethod
    def from_config(
        cls,
        config: GpusConfig,
        *,
        docker_client: Any | None = None,
        library: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> GpuMonitor:
        adapter = NvmlAdapter(
            library=library,
            call_timeout=config.call_timeout,
            init_retry_seconds=config.init_retry_seconds,
            lost_retry_seconds=config.lost_retry_seconds,
            watch_events=config.watch_xid_events,
            event_wait_ms=config.event_wait_ms,
            clock=clock,
        )
        return cls(adapter, config=config, docker_client=docker_client, clock=clock)

    def snapshot(self) -> CapacitySnapshot:
        return self._snapshot

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="gpu-monitor")
        self._task.add_done_callback(self._task_done)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        await self._adapter.close()

    async def refresh(self) -> CapacitySnapshot:
        node = await self._node_facts()
        now = self._clock()
        try:
            reading = await self._adapter.read()
        except NvmlUnavailable as exc:
            snapshot = CapacitySnapshot(
                collected_at=now,
                health="unhealthy",
                reasons=(f"nvml_unavailable: {exc.kind}: {exc.detail}",),
                remedy=exc.remedy,
                node=node,
                nvml_available=False,
            )
        else:
            gpus = tuple(
                assess_gpu(
                    gpu,
                    now=now,
                    ignored_xids=self._config.ignored_xids,
                    xid_hold_seconds=self._config.xid_hold_seconds,
                )
                for gpu in reading.gpus
            )
            reasons = tuple(
                f"gpu {g.inventory.index} ({g.inventory.uuid}): {r}"
                for g in gpus
                for r in g.reasons
            )
            health = worst([g.health for g in gpus])
            # One lost GPU degrades the node; the others keep working.
            if health in ("lost", "unhealthy") and any(g.allocatable for g in gpus):
                health = "degraded"
            snapshot = CapacitySnapshot(
                collected_at=now,
                health=health,
                reasons=reasons,
                remedy=None,
                gpus=gpus,
                node=replace(
                    node,
                    driver_version=reading.driver_version,
                    cuda_driver_version=reading.cuda_driver_version,
                    nvml_version=reading.nvml_version,
                ),
                nvml_available=True,
            )
        if snapshot.health != self._last_health:
            log.info("gpu.health_changed", health=snapshot.health, reasons=list(snapshot.reasons))
            self._last_health = snapshot.health
        self._snapshot = snapshot
        return snapshot

    async def _node_facts(self) -> NodeFacts:
        try:
            async with asyncio.timeout(self._facts_timeout):
                facts = await asyncio.to_thread(host_facts)
                docker = await self._docker_facts_cached()
        except TimeoutError:
            return NodeFacts(docker=DockerFacts(error="timed out reading host facts"))
        return replace(facts, docker=docker)

    async def _docker_facts_cached(self) -> DockerFacts:
        """Docker's version and runtimes change rarely: ask at most once a minute."""
        if self._docker_client is None:
            return DockerFacts()
        now = self._clock()
        if self._docker_facts is not None and now - self._docker_facts[0] < self._docker_facts_ttl:
            return self._docker_facts[1]
        if self._docker_reading is not None:  # the last read never came back: dockerd hangs
            return DockerFacts(error="the Docker engine does not answer (docker info hangs)")
        reading = asyncio.ensure_future(asyncio.to_thread(docker_facts, self._docker_client))
        self._docker_reading = reading

        def settle(done: asyncio.Future[DockerFacts]) -> None:  # also after a timeout above
            self._docker_reading = None
            if not done.cancelled() and done.exception() is None:
                self._docker_facts = (self._clock(), done.result())

        reading.add_done_callback(settle)
        return await asyncio.shield(reading)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._config.poll_interval)
            try:
                await self.refresh()
            except Exception:
                log.exception("gpu.refresh_failed")

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("gpu.monitor_died", error=repr(task.exception()))
