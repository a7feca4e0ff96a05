"""An inference workload that speaks the Infernet service protocol is served as a container of
this node while it runs: deploy a model as a workload, then send it Infernet jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.agent import running_agent
from tests.support.docker_env import ensure_images
from tests.workloads.support import FINAL, eventually, make_key, node_config, wait_status

pytestmark = pytest.mark.docker


async def test_inference_workload_is_callable_through_api_jobs(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    ensure_images()
    key, other = make_key(), make_key()
    async with running_agent(node_config([key, other]), tmp_path / "state") as (daemon, url):
        body = {
            "name": "echo-model",
            "workload_type": "inference",
            "image": "node-agent/echo:latest",
            "ports": [3000],
            "infernet_service": True,
        }
        async with http.post(f"{url}/v1/jobs", json=body, headers=key.headers) as r:
            assert r.status == 201, await r.text()
            job_id = (await r.json())["job_id"]
        running = await wait_status(http, url, key, job_id, {"running"})
        host_port = running["ports"]["3000"]
        assert isinstance(host_port, int)

        async def served() -> list[dict[str, Any]] | None:
            async with http.get(f"{url}/info") as r:
                info = await r.json()
            return [c for c in info["containers"] if c["id"] == job_id] or None

        await eventually(served, timeout=60, what="the workload served as a container")
        job = {"containers": [job_id], "data": {"prompt": "hi"}}
        # the owner's model: neither an anonymous client nor another key may use it
        for headers in ({}, other.headers):
            async with http.post(f"{url}/api/jobs", json=job, headers=headers) as r:
                assert r.status == 403, await r.text()
                assert (await r.json())["error"] == "Container not allowed for this API key"
        async with http.post(f"{url}/api/jobs", json=job, headers=key.headers) as r:
            assert r.status == 200, await r.text()
            infernet_id = (await r.json())["id"]
        async with http.get(f"{url}/api/jobs?id={infernet_id}&wait=10", headers=key.headers) as r:
            (result,) = await r.json()
        assert result["status"] == "success", result
        assert result["result"]["output"] is not None

        async with http.post(f"{url}/v1/jobs/{job_id}/cancel", headers=key.headers) as r:
            assert r.status == 202
        final = await wait_status(http, url, key, job_id, FINAL)
        assert final["status"] == "cancelled"
        async with http.post(f"{url}/api/jobs", json=job, headers=key.headers) as r:
            assert r.status == 400  # no longer a container of this node
        assert job_id not in daemon.jobs.admission.gates


def test_a_served_workload_is_its_owners_unless_public() -> None:
    from node_agent.workloads.model import Workload, WorkloadStatus
    from node_agent.workloads.services import service_config

    def served(owner: str, **draft: Any) -> tuple[str, ...]:
        body = {"ports": [3000], "infernet_service": True, **draft}
        job = Workload(
            id="j1",
            owner=owner,
            draft=body,
            status=WorkloadStatus.RUNNING,
            created_at=0.0,
            updated_at=0.0,
            ports={"3000": 41000},
        )
        config = service_config(job)
        assert config is not None
        return config.allowed_keys

    assert served("key:k1") == ("k1",)
    assert served("key:k1", infernet_public=True) == ()
    assert served("grid") == ()  # pulled from the orchestrator: it decides who reaches the node
