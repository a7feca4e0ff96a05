"""A Docker engine that stops answering (dockerd deadlocks happen: 20.10's libnetwork did it on
this project's CI machine) must not hold the GPU monitor: one read of its facts at a time, the
refreshes go on without it, and the facts come back once the engine answers again.

The engine is the one fake here: a hung dockerd cannot be produced on demand."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import docker

from node_agent.gpu.config import GpusConfig
from node_agent.gpu.monitor import GpuMonitor
from tests.gpu.fake_nvml import FakeNvml, board


class HangingEngine:
    """Answers ``version`` and blocks ``info`` until released, like a deadlocked dockerd
    (``docker version`` still answered while ``docker info`` hung)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.waiting = 0
        self.calls = 0
        self.real = docker.from_env(timeout=10)

    def version(self) -> Any:
        return self.real.version()

    def info(self) -> Any:
        self.calls += 1
        self.waiting += 1
        try:
            self.released.wait(60)
            return self.real.info()
        finally:
            self.waiting -= 1


async def test_a_hung_engine_holds_one_thread_and_the_facts_return_when_it_answers() -> None:
    engine = HangingEngine()
    monitor = GpuMonitor.from_config(
        GpusConfig(watch_xid_events=False), library=FakeNvml([board("l4")]), docker_client=engine
    )
    monitor._facts_timeout = 0.3  # the read is given up quickly; the thread stays in Docker
    try:
        for _ in range(4):
            snapshot = await monitor.refresh()
            assert snapshot.gpus and snapshot.node.docker.error, snapshot.node.docker
        assert engine.calls == 1 and engine.waiting == 1  # one thread held, not one per refresh
        engine.released.set()

        async def facts_back() -> bool:
            snapshot = await monitor.refresh()
            return snapshot.node.docker.version is not None

        deadline = asyncio.get_running_loop().time() + 30
        while not await facts_back():
            assert asyncio.get_running_loop().time() < deadline, "facts never came back"
            await asyncio.sleep(0.05)
        assert engine.calls == 1  # the first read's answer was kept: no second read needed
    finally:
        engine.released.set()
        await monitor.stop()
        engine.real.close()
