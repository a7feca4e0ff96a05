"""Batch workloads end to end on a real Docker engine: exit codes, logs, failures."""

from __future__ import annotations

import aiohttp
import pytest

from node_agent.daemon import Daemon
from tests.workloads.support import FINAL, Key, draft, wait_status

pytestmark = pytest.mark.docker


async def test_batch_job_runs_to_completion_with_exit_code_and_logs(
    node: tuple[Daemon, str], keys: dict[str, Key], http: aiohttp.ClientSession
) -> None:
    _, url = node
    alice = keys["alice"]
    async with http.post(
        f"{url}/v1/jobs", json=draft("echo hello; echo oops >&2; exit 3"), headers=alice.headers
    ) as r:
        assert r.status == 201, await r.text()
        created = await r.json()
    assert created["status"] == "queued"
    job = await wait_status(http, url, alice, created["job_id"], FINAL)
    assert job["status"] == "failed"
    assert job["exit_code"] == 3
    assert job["error"] == "command exited with code 3"
    assert job["started_at"] and job["finished_at"]
    async with http.get(f"{url}/v1/jobs/{created['job_id']}/runtime", headers=alice.headers) as r:
        runtime = await r.json()
    assert "hello\n" in runtime["log_tail"] and "oops\n" in runtime["log_tail"]
    assert runtime["exit_code"] == 3


async def test_successful_job_and_principals_are_isolated(
    node: tuple[Daemon, str], keys: dict[str, Key], http: aiohttp.ClientSession
) -> None:
    _, url = node
    alice, bob = keys["alice"], keys["bob"]
    async with http.post(f"{url}/v1/jobs", json=draft("echo 42"), headers=alice.headers) as r:
        job_id = (await r.json())["job_id"]
    job = await wait_status(http, url, alice, job_id, FINAL)
    assert job["status"] == "succeeded" and job["exit_code"] == 0
    async with http.get(f"{url}/v1/jobs/{job_id}", headers=bob.headers) as r:
        assert r.status == 404
        assert (await r.json())["error"] == "Job not found"
    async with http.post(f"{url}/v1/jobs/{job_id}/cancel", headers=bob.headers) as r:
        assert r.status == 404
    async with http.get(f"{url}/v1/jobs", headers=bob.headers) as r:
        assert (await r.json())["jobs"] == []
    async with http.get(f"{url}/v1/jobs", headers=alice.headers) as r:
        assert [j["job_id"] for j in (await r.json())["jobs"]] == [job_id]
