"""The provider services inside a real daemon: real HTTP, real Docker, fake NVML boundary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from node_agent.auth.keys import hash_key
from node_agent.daemon import Daemon
from tests.gpu.fake_nvml import FakeNvml, board
from tests.grid.orchestrator import API_KEY, Orchestrator, running
from tests.support.agent import make_config
from tests.support.docker_env import docker_client, ensure_images, remove_containers, unique

pytestmark = pytest.mark.docker

READ_KEY = "na_aaaaaaaaaaaa_" + "r" * 43
WRITE_KEY = "na_bbbbbbbbbbbb_" + "w" * 43
H100 = "GPU-5c3a1e2f-8b7d-4c1a-9e21-0a1b2c3d4e5f"


@pytest.fixture(scope="module", autouse=True)
def images() -> Iterator[None]:
    ensure_images()
    yield


@pytest.fixture
def ids() -> Iterator[dict[str, str]]:
    names = {k: unique(f"gpu-{k}") for k in ("gpu", "cpu", "clash")}
    yield names
    remove_containers(list(names.values()))


def raw_config(ids: dict[str, str], grid_url: str) -> dict[str, Any]:
    return {
        "startup_wait": 10,
        "containers": [
            {"id": ids["gpu"], "image": "node-agent/echo:latest", "gpu": 1},
            {"id": ids["cpu"], "image": "node-agent/echo:latest"},
            {
                "id": ids["clash"],
                "image": "node-agent/echo:latest",
                "gpu": {"count": 2, "family": "l4"},
            },
        ],
        "runtime": {"pull": False},
        "gpus": {"poll_interval": 0.2, "watch_xid_events": False},
        "api_keys": {
            "required": True,
            "keys": [
                {"id": "aaaaaaaaaaaa", "hash": hash_key(READ_KEY), "scopes": ["jobs:read"]},
                {
                    "id": "bbbbbbbbbbbb",
                    "hash": hash_key(WRITE_KEY),
                    "scopes": ["jobs:read", "jobs:write"],
                },
            ],
        },
        "grid": {
            "enabled": True,
            "url": grid_url,
            "api_key": API_KEY,
            "heartbeat_interval": 0.2,
            "startup_delay_max": 0,
            "region": "eu-west",
        },
    }


async def start(raw: dict[str, Any], state_dir: Path) -> tuple[Daemon, str]:
    daemon = Daemon(
        make_config(raw),
        state_dir,
        provider_options={"nvml_library": FakeNvml([board("h100-sxm"), board("l4")])},
    )
    await daemon.start()
    await asyncio.wait_for(daemon.containers_ready.wait(), 60)
    return daemon, f"http://127.0.0.1:{daemon.port}"


async def until(predicate: Any, limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - state lives in the daemon and test server
            await asyncio.sleep(0.05)


@pytest.fixture
async def orchestrator() -> AsyncIterator[Orchestrator]:
    async with running(Orchestrator(heartbeat_interval=0.2)) as server:
        yield server


async def test_gpu_node_end_to_end(
    ids: dict[str, str], orchestrator: Orchestrator, tmp_path: Path
) -> None:
    raw = raw_config(ids, orchestrator.url)
    daemon, url = await start(raw, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            info = await (await http.get(f"{url}/info")).json()
            assert [g["inventory"]["family"] for g in info["gpus"]] == ["h100", "l4"]
            assert info["node"]["nvml_available"] is True
            assert info["node"]["facts"]["driver_version"] == "570.86.15"
            assert info["version"]  # the Infernet keys are still there
            resources = await (await http.get(f"{url}/resources")).json()
            assert resources["_node"]["gpus"][0]["inventory"]["uuid"] == H100
            health = await (await http.get(f"{url}/health")).json()
            assert health["checks"]["gpus"] == {"status": "ok", "gpus": 2}
            metrics = await http.get(f"{url}/metrics")
            text = await metrics.text()
            assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            scraped = {
                s.name: s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if not s.labels
            }
            assert scraped["node_agent_gpus"] == 2 and scraped["node_agent_jobs_running"] == 0

            # API keys: checked before the handlers, JSON errors.
            job = {"containers": [ids["cpu"]], "data": {"x": 1}}
            no_key = await http.post(f"{url}/api/jobs", json=job)
            assert no_key.status == 401
            assert (await no_key.json())["error"] == "API key required"
            read_only = await http.post(
                f"{url}/api/jobs", json=job, headers={"Authorization": f"Bearer {READ_KEY}"}
            )
            assert read_only.status == 403
            listed = await http.get(
                f"{url}/api/jobs", headers={"Authorization": f"Bearer {READ_KEY}"}
            )
            assert listed.status == 200
            created = await http.post(
                f"{url}/api/jobs", json=job, headers={"Authorization": f"Bearer {WRITE_KEY}"}
            )
            assert created.status == 200 and "id" in await created.json()
            assert (await http.get(f"{url}/health")).status == 200  # public route

        # GPU assignment on the real engine.
        def clash_reason() -> str:
            return str(daemon.manager.containers[ids["clash"]].reason)

        # A clear error for that container only (the manager keeps retrying with backoff, and
        # says "restarting" in between).
        await until(lambda: "asked for 2 l4 GPU(s), 1 free" in clash_reason())
        assert daemon.manager.containers[ids["cpu"]].state.value == "running"
        client = docker_client()
        gpu_container = client.api.inspect_container(ids["gpu"])
        cpu_container = client.api.inspect_container(ids["cpu"])
        client.close()
        assert gpu_container["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == [H100]
        assert f"NVIDIA_VISIBLE_DEVICES={H100}" in gpu_container["Config"]["Env"]
        assert gpu_container["Config"]["Labels"]["node-agent.gpus"] == H100
        assert gpu_container["HostConfig"]["Privileged"] is False
        assert "NVIDIA_VISIBLE_DEVICES=void" in cpu_container["Config"]["Env"]
        assert not cpu_container["HostConfig"]["DeviceRequests"]

        # The orchestrator heard about the node.
        await until(lambda: len(orchestrator.heartbeats) >= 2)
        register = orchestrator.registers[0]
        assert register["region"] == "eu-west" and len(register["gpus"]) == 2
        assert set(register["containers"]) == set(ids.values())
        assert daemon.provider.reporter is not None
        assert daemon.provider.reporter.status().state == "registered"
    finally:
        await daemon.stop()

    # Restart: grants come back from the labels, the node keeps its node_id.
    again, _ = await start(raw, tmp_path)
    try:
        assert again.provider.allocator.grants()[ids["gpu"]].uuids == (H100,)
        await until(lambda: len(orchestrator.heartbeats) >= 4)
        assert len(orchestrator.registers) == 1
        assert {h["_node_id"] for h in orchestrator.heartbeats} == {"node-1"}
    finally:
        await again.stop()
