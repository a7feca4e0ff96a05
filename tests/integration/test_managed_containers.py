"""Managed containers on the real Docker engine, driven through the real client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node_agent.containers.manager import LABEL_MANAGED, ContainerState
from node_agent.daemon import Daemon
from tests.support.agent import running_agent
from tests.support.docker_env import docker_client, remove_containers, unique
from tests.support.infernet_client import load_node_client
from tests.support.net import free_port

pytestmark = pytest.mark.docker


def managed_config(ids: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "manage_containers": True,
        "startup_wait": 20,
        "runtime": {"pull": False, "watch_interval": 0.5, "stop_timeout": 1},
        "containers": [
            {
                "id": ids["echo"],
                "image": "node-agent/echo:latest",
                "port": free_port(),
                "description": "echo",
            },
            {
                "id": ids["transform"],
                "image": "node-agent/transform:latest",
                "port": free_port(),
                "external": False,
            },
            {
                "id": ids["faulty"],
                "image": "node-agent/faulty:latest",
                "port": free_port(),
                "timeout": 1.5,
            },
        ],
        **extra,
    }


@pytest.fixture
async def ids() -> AsyncIterator[dict[str, str]]:
    names = {k: unique(f"na-test-{k}") for k in ("echo", "transform", "faulty")}
    yield names
    await asyncio.to_thread(remove_containers, list(names.values()))


@pytest.fixture
async def managed(ids: dict[str, str], tmp_path: Path) -> AsyncIterator[tuple[Daemon, str]]:
    async with running_agent(managed_config(ids), tmp_path / "state") as running:
        yield running


async def wait_final(client: Any, job_id: str, seconds: float = 15) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        [job] = await client.get_job_results([job_id], intermediate=True)
        if job["status"] != "running" or asyncio.get_running_loop().time() > deadline:
            return dict(job)
        await asyncio.sleep(0.05)


async def test_single_chain_batch_and_stream(
    managed: tuple[Daemon, str], ids: dict[str, str]
) -> None:
    _daemon, url = managed
    client = load_node_client()(url)
    info = await client.get_info()
    assert {c["id"] for c in info["containers"]} == set(ids.values())

    job_id = await client.request_job({"containers": [ids["echo"]], "data": {"text": "hi"}})
    job = await wait_final(client, job_id)
    assert job["status"] == "success"
    assert job["result"] == {"container": ids["echo"], "output": {"output": {"text": "hi"}}}

    chain = [ids["echo"], ids["transform"], ids["transform"]]
    job = await wait_final(
        client, await client.request_job({"containers": chain, "data": {"text": "hi"}})
    )
    assert job["status"] == "success"
    assert [r["container"] for r in job["intermediate_results"]] == chain[:2]
    assert job["result"]["container"] == ids["transform"]
    assert job["result"]["output"] != job["intermediate_results"][1]["output"]

    answers = await client.request_jobs(
        [
            {"containers": [ids["echo"]], "data": {"n": 1}},
            {"containers": [ids["transform"]], "data": {}},
            {"containers": ["not-configured"], "data": {}},
        ]
    )
    assert "id" in answers[0]
    assert answers[1]["error"] == "First container must be external"
    assert answers[2]["error"] == "Container not supported"

    chunks = [
        c
        async for c in client.request_stream(
            {"containers": [ids["echo"]], "data": {"prompt": "one two three"}}
        )
    ]
    assert isinstance(chunks[0], str)
    assert b"".join(chunks[1:]).split() == [b"one", b"two", b"three"]


async def test_ports_published_on_loopback_and_labelled(
    managed: tuple[Daemon, str], ids: dict[str, str]
) -> None:
    def inspect() -> list[Any]:
        client = docker_client()
        try:
            return [client.containers.get(name).attrs for name in ids.values()]
        finally:
            client.close()

    for attrs in await asyncio.to_thread(inspect):
        bindings = attrs["HostConfig"]["PortBindings"]["3000/tcp"]
        assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
        assert attrs["Config"]["Labels"][LABEL_MANAGED] == "true"
        assert "NVIDIA_VISIBLE_DEVICES=void" in attrs["Config"]["Env"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"mode": "non_json"}, "not JSON"),
        ({"mode": "json500"}, "answered HTTP 500"),
        ({"sleep": 5}, "did not answer within 1.5 s"),
    ],
)
async def test_container_failures_fail_the_job_clearly(
    managed: tuple[Daemon, str], ids: dict[str, str], data: dict[str, Any], expected: str
) -> None:
    client = load_node_client()(managed[1])
    job = await wait_final(
        client, await client.request_job({"containers": [ids["faulty"]], "data": data})
    )
    assert job["status"] == "failed"
    assert expected in job["result"]["error"]
    assert await client.health()


async def test_crash_then_restart(managed: tuple[Daemon, str], ids: dict[str, str]) -> None:
    daemon, url = managed
    client = load_node_client()(url)
    job = await wait_final(
        client, await client.request_job({"containers": [ids["faulty"]], "data": {"mode": "crash"}})
    )
    assert job["status"] == "failed"
    assert ids["faulty"] in job["result"]["error"]
    faulty = daemon.manager.containers[ids["faulty"]]
    for _ in range(200):
        if faulty.restarts >= 1 and faulty.state is ContainerState.RUNNING:
            break
        await asyncio.sleep(0.1)
    assert faulty.restarts >= 1 and faulty.state is ContainerState.RUNNING
    job = await wait_final(
        client, await client.request_job({"containers": [ids["faulty"]], "data": {"mode": "ok"}})
    )
    assert job["status"] == "success"


async def test_container_removed_behind_the_nodes_back(ids: dict[str, str], tmp_path: Path) -> None:
    """The job fails clearly; the failed call (not the slow periodic check) triggers repair."""
    config = managed_config(ids)
    config["runtime"]["watch_interval"] = 120
    async with running_agent(config, tmp_path / "s") as (daemon, url):
        await _removed_behind_the_nodes_back(daemon, url, ids)


async def _removed_behind_the_nodes_back(daemon: Daemon, url: str, ids: dict[str, str]) -> None:
    await asyncio.to_thread(remove_containers, [ids["echo"]])
    client = load_node_client()(url)
    job = await wait_final(
        client, await client.request_job({"containers": [ids["echo"]], "data": {}})
    )
    assert job["status"] == "failed"
    assert "unreachable" in job["result"]["error"]
    echo = daemon.manager.containers[ids["echo"]]
    for _ in range(300):
        if echo.state is ContainerState.RUNNING and echo.restarts >= 1:
            break
        await asyncio.sleep(0.1)
    assert echo.state is ContainerState.RUNNING
    job = await wait_final(
        client, await client.request_job({"containers": [ids["echo"]], "data": {"again": True}})
    )
    assert job["status"] == "success"
    async with aiohttp.ClientSession() as http, http.get(f"{url}/info") as resp:
        info = await resp.json()
    [svc] = [s for s in info["services"] if s["id"] == ids["echo"]]
    assert svc["restarts"] >= 1


async def test_reconcile_adopts_unchanged_and_recreates_changed(
    ids: dict[str, str], tmp_path: Path
) -> None:
    config = managed_config(ids)
    config["runtime"]["stop_on_shutdown"] = False

    def container_id(name: str) -> str:
        client = docker_client()
        try:
            return str(client.containers.get(name).id)
        finally:
            client.close()

    async with running_agent(config, tmp_path / "a"):
        first = await asyncio.to_thread(container_id, ids["echo"])
    async with running_agent(config, tmp_path / "b"):
        assert await asyncio.to_thread(container_id, ids["echo"]) == first
    config["containers"][0]["env"] = {"CHANGED": "1"}
    async with running_agent(config, tmp_path / "c") as (daemon, _):
        assert await asyncio.to_thread(container_id, ids["echo"]) != first
        assert daemon.manager.containers[ids["echo"]].state is ContainerState.RUNNING


async def test_missing_image_disables_only_that_container(
    ids: dict[str, str], tmp_path: Path
) -> None:
    config = managed_config(ids)
    config["containers"].append(
        {
            "id": unique("na-test-missing"),
            "image": "node-agent/does-not-exist:never",
            "port": free_port(),
        }
    )
    async with running_agent(config, tmp_path / "s") as (daemon, url):
        missing = daemon.manager.containers[config["containers"][-1]["id"]]
        assert missing.state is ContainerState.DISABLED
        assert "not present locally" in (missing.reason or "")
        client = load_node_client()(url)
        job = await wait_final(
            client, await client.request_job({"containers": [ids["echo"]], "data": {}})
        )
        assert job["status"] == "success"


async def test_containers_stopped_on_shutdown(ids: dict[str, str], tmp_path: Path) -> None:
    async with running_agent(managed_config(ids), tmp_path / "s"):
        pass

    def states() -> list[str]:
        client = docker_client()
        try:
            return [client.containers.get(name).status for name in ids.values()]
        finally:
            client.close()

    assert set(await asyncio.to_thread(states)) == {"exited"}


async def test_node_calls_containers_on_their_network_address(
    managed: tuple[Daemon, str], ids: dict[str, str]
) -> None:
    echo = managed[0].manager.containers[ids["echo"]]
    assert echo.address is not None
    assert echo.endpoint.output_url.host == echo.address
    assert echo.endpoint.output_url.port == 3000


async def test_published_port_mode(ids: dict[str, str], tmp_path: Path) -> None:
    config = managed_config(ids)
    config["runtime"]["connect"] = "published"
    async with running_agent(config, tmp_path / "s") as (daemon, url):
        echo = daemon.manager.containers[ids["echo"]]
        assert echo.endpoint.output_url.host == "127.0.0.1"
        client = load_node_client()(url)
        job = await wait_final(
            client, await client.request_job({"containers": [ids["echo"]], "data": {}})
        )
        assert job["status"] == "success"
