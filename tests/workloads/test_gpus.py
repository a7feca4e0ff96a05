"""GPU workloads against fake NVML boards (the only fake: the NVML adapter boundary) and the
real Docker engine: estimate, placement by UUID, Docker device requests, release on failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import docker
import pytest

from node_agent.daemon import Daemon
from tests.gpu.fake_nvml import FakeNvml, board
from tests.support.agent import make_config
from tests.workloads.support import (
    FINAL,
    Key,
    draft,
    eventually,
    make_key,
    node_config,
    wait_status,
)

pytestmark = pytest.mark.docker

H100 = "GPU-5c3a1e2f-8b7d-4c1a-9e21-0a1b2c3d4e5f"
L4 = "GPU-14000000-0000-4000-8000-000000000004"
PRICES = {"h100": 2.5, "l4": 0.5}


class CreateSpy:
    """The real Docker client; records what each workload container was created with, as
    Docker itself reports it (HostConfig), before the node removes it."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def factory(self) -> Any:
        client = docker.from_env(timeout=60)
        api = client.api
        real_create = api.create_container

        def create(*args: Any, **kwargs: Any) -> Any:
            answer = real_create(*args, **kwargs)
            self.created.append(api.inspect_container(answer["Id"]))
            return answer

        api.create_container = create
        return client


@pytest.fixture
async def gpu_node(tmp_path: Path) -> AsyncIterator[tuple[Daemon, str, Key, CreateSpy]]:
    key = make_key()
    spy = CreateSpy()
    raw = node_config([key])
    raw["gpus"] = {"enabled": True, "poll_interval": 0.2, "watch_xid_events": False}
    raw["grid"] = {"price_per_gpu_hour": PRICES}
    daemon = Daemon(
        make_config(raw),
        tmp_path / "state",
        docker_factory=spy.factory,
        provider_options={"nvml_library": FakeNvml([board("h100-sxm"), board("l4")])},
    )
    await daemon.start()
    try:
        await asyncio.wait_for(daemon.containers_ready.wait(), 60)
        yield daemon, f"http://127.0.0.1:{daemon.port}", key, spy
    finally:
        await daemon.stop()


async def estimate(
    http: aiohttp.ClientSession, url: str, key: Key, body: dict[str, Any]
) -> dict[str, Any]:
    async with http.post(f"{url}/v1/jobs/estimate", json=body, headers=key.headers) as r:
        assert r.status == 200, await r.text()
        answer: dict[str, Any] = await r.json()
    return answer


async def test_estimate_fits_does_not_fit_and_relaxes(
    gpu_node: tuple[Daemon, str, Key, CreateSpy], http: aiohttp.ClientSession
) -> None:
    daemon, url, key, _ = gpu_node
    fits = await estimate(http, url, key, draft("true", gpus=1, max_runtime=3600))
    assert fits["fits"] is True and fits["gpus"][0]["uuid"] == L4  # the cheaper family
    assert fits["estimated_hourly_rate_usd"] == 0.5
    assert fits["estimated_queue_wait_min_sec"] == fits["estimated_queue_wait_max_sec"] == 0
    assert fits["estimated_cost_max_usd"] == 0.5 and fits["constraints_relaxed"] == []

    # 70 GB × 1.2 needs 84 GB: only the 80 GB H100 … no: 2 L4s (48 GB) are not enough either.
    too_big = await estimate(http, url, key, draft("true", model_size_gb=70))
    assert too_big["fits"] is False and "needs" in too_big["reason"]
    capped = await estimate(
        http, url, key, draft("true", gpus=1, constraints={"max_price_per_hour": 0.1})
    )
    assert capped["fits"] is False and "max_price_per_hour" in capped["reason"]

    preferred = {"gpus": 1, "constraints": {"preferred_gpu_family": "h100"}}
    assert (await estimate(http, url, key, draft("true", **preferred)))["gpus"][0]["uuid"] == H100
    daemon.provider.allocator.grant("workload:someone-else", [H100])  # the H100 is taken
    relaxed = await estimate(http, url, key, draft("true", **preferred))
    assert relaxed["gpus"][0]["uuid"] == L4
    assert relaxed["constraints_relaxed"] == ["preferred_gpu_family"]

    # Asking for more GPUs than the node has is refused at submit, with the reason.
    async with http.post(f"{url}/v1/jobs", json=draft("true", gpus=3), headers=key.headers) as r:
        assert r.status == 422
        assert "the node has" in (await r.json())["params"]["reason"]


async def test_gpu_job_gets_docker_device_requests_by_uuid_and_releases_them(
    gpu_node: tuple[Daemon, str, Key, CreateSpy], http: aiohttp.ClientSession
) -> None:
    daemon, url, key, spy = gpu_node
    body = draft("nvidia-smi", gpus=1, constraints={"preferred_gpu_family": "h100"})
    async with http.post(f"{url}/v1/jobs", json=body, headers=key.headers) as r:
        job_id = (await r.json())["job_id"]
    final = await wait_status(http, url, key, job_id, FINAL)
    (created,) = spy.created
    host = created["HostConfig"]
    assert host["DeviceRequests"] == [
        {"Driver": "", "Count": 0, "DeviceIDs": [H100], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert f"NVIDIA_VISIBLE_DEVICES={H100}" in created["Config"]["Env"]
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False
    assert final["gpus"] == [{"uuid": H100, "family": "h100", "index": 0}]
    # This machine has no NVIDIA runtime: Docker refuses to start it, and the job says so.
    assert final["status"] == "failed" and "device driver" in final["error"]

    def released() -> Callable[[], Any]:
        async def probe() -> bool:
            return not daemon.provider.allocator.grants()

        return probe

    await eventually(released(), what="the GPU grant released")
