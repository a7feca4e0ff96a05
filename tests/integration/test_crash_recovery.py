"""``kill -9`` of a real agent process with jobs in flight, then a restart."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from node_agent.jobs.store import INTERRUPTED_ERROR
from tests.support.agent import start_agent_process
from tests.support.net import free_port
from tests.support.service import running_service

SLOW = {"containers": ["slow"], "data": {"mode": "sleep", "seconds": 2}}


async def wait_healthy(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        try:
            async with http.get(f"{url}/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("agent did not come up")


@pytest.mark.parametrize("policy", ["fail", "rerun"])
async def test_kill_9_then_every_accepted_job_ends(tmp_path: Path, policy: str) -> None:
    port = free_port()
    async with running_service("slow") as (service, service_url):
        config = tmp_path / "config.yaml"
        raw: dict[str, Any] = {
            "manage_containers": False,
            "server": {"port": port, "rate_limit_enabled": False},
            "containers": [{"id": "slow", "url": service_url}],
            "jobs": {"on_restart": policy},
        }
        config.write_text(yaml.safe_dump(raw))
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            proc = await start_agent_process(config, tmp_path / "state")
            try:
                await wait_healthy(http, url)
                ids = []
                for _ in range(5):
                    async with http.post(f"{url}/api/jobs", json=SLOW) as resp:
                        ids.append((await resp.json())["id"])
                async with http.post(f"{url}/api/jobs/batch", json=[SLOW] * 5) as resp:
                    ids += [item["id"] for item in await resp.json()]
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
                proc = await start_agent_process(config, tmp_path / "state")
                await wait_healthy(http, url)
                query = "&".join(f"id={i}" for i in ids)
                async with http.get(f"{url}/api/jobs?{query}&wait=10") as resp:
                    jobs = await resp.json()
            finally:
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert sorted(j["id"] for j in jobs) == sorted(ids)
    if policy == "fail":
        assert {j["status"] for j in jobs} == {"failed"}
        assert {j["result"]["error"] for j in jobs} == {INTERRUPTED_ERROR}
    else:
        assert {j["status"] for j in jobs} == {"success"}
        assert len(service.requests) > 10  # every job ran again after the restart
