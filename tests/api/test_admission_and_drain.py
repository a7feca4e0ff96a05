"""Back-pressure and graceful stop, against a real agent and a real slow service."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from node_agent.daemon import Daemon
from tests.conftest import unmanaged_config
from tests.support.agent import make_config, running_agent
from tests.support.service import ProtocolService

SLOW = {"containers": ["first"], "data": {"mode": "sleep", "seconds": 0.6}}


async def test_full_queue_refuses_with_503_and_retry_after(
    services: dict[str, tuple[ProtocolService, str]],
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    raw = unmanaged_config(services)
    raw["containers"][0].update(max_concurrency=2, queue_size=1)
    async with running_agent(raw, tmp_path / "s") as (_, url):
        accepted = []
        for _ in range(3):
            async with http.post(f"{url}/api/jobs", json=SLOW) as resp:
                assert resp.status == 200
                accepted.append((await resp.json())["id"])
        async with http.post(f"{url}/api/jobs", json=SLOW) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            body = await resp.json()
            assert body["error"] == "Container busy, retry later"
            assert body["params"]["container"] == "first"
        # Other containers are unaffected; the refused job was never stored.
        async with http.post(
            f"{url}/api/jobs", json={"containers": ["second"], "data": {}}
        ) as resp:
            assert resp.status == 200
        query = "&".join(f"id={i}" for i in accepted)
        async with http.get(f"{url}/api/jobs?{query}&wait=10") as resp:
            jobs = await resp.json()
        assert [j["status"] for j in jobs] == ["success"] * 3
        async with http.get(f"{url}/api/jobs") as resp:
            assert len(await resp.json()) == 4
        # Room again once the queue drained.
        async with http.post(f"{url}/api/jobs", json=SLOW) as resp:
            assert resp.status == 200


async def test_long_poll_until_any_returns_with_the_first_final_job(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession
) -> None:
    _, url = agent
    quick = {"containers": ["second"], "data": {"mode": "sleep", "seconds": 0.1}}
    ids = []
    for body in (SLOW, quick):
        async with http.post(f"{url}/api/jobs", json=body) as resp:
            ids.append((await resp.json())["id"])
    query = "&".join(f"id={i}" for i in ids)
    began = asyncio.get_running_loop().time()
    async with http.get(f"{url}/api/jobs?{query}&wait=10&until=any") as resp:
        jobs = await resp.json()
    assert asyncio.get_running_loop().time() - began < 0.5
    assert [j["status"] for j in jobs] == ["running", "success"]  # request order kept
    # pending=false / true: only the listed jobs that are final / still running.
    async with http.get(f"{url}/api/jobs?{query}&pending=false") as resp:
        assert [(j["id"], j["status"]) for j in await resp.json()] == [(ids[1], "success")]
    async with http.get(f"{url}/api/jobs?{query}&pending=true") as resp:
        assert [(j["id"], j["status"]) for j in await resp.json()] == [(ids[0], "running")]
    async with http.get(f"{url}/api/jobs?{query}&wait=10") as resp:  # until=all
        assert [j["status"] for j in await resp.json()] == ["success", "success"]
    async with http.get(f"{url}/api/jobs?{query}&wait=1&until=some") as resp:
        assert resp.status == 400
        body = await resp.json()
        assert body["params"] == {"param": "until", "value": "some", "allowed": ["all", "any"]}


async def test_failed_commit_answers_json_error_and_frees_the_admission(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession
) -> None:
    """The job starts while its record commits; when the commit fails the client gets the
    store's error, the job is cancelled and its admission slot freed; the node recovers."""
    daemon, url = agent
    with sqlite3.connect(daemon.store.path) as db:  # a real SQLite failure, as a full disk
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
    async with http.post(f"{url}/api/jobs", json=SLOW) as resp:
        assert resp.status == 500
        body = await resp.json()
        assert body["error"].startswith("job store write failed")
    gate = daemon.jobs.admission.gates["first"]
    assert gate.admitted == 0
    await asyncio.sleep(0.7)  # the cancelled job never completes behind the error
    assert len(daemon.jobs.tasks) == 0 and daemon.store.running_count() == 0
    with sqlite3.connect(daemon.store.path) as db:
        db.execute("DROP TRIGGER refuse")
    async with http.post(f"{url}/api/jobs", json={"containers": ["second"], "data": {}}) as resp:
        assert resp.status == 200
        job_id = (await resp.json())["id"]
    async with http.get(f"{url}/api/jobs?id={job_id}&wait=5") as resp:
        assert (await resp.json())[0]["status"] == "success"
    async with http.get(f"{url}/api/jobs") as resp:
        assert await resp.json() == [job_id]


async def test_stop_drains_running_jobs_and_refuses_new_ones(
    services: dict[str, tuple[ProtocolService, str]],
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    # Started by hand: the test stops it itself while a job runs.
    daemon = Daemon(make_config(unmanaged_config(services)), tmp_path / "s")
    await daemon.start()
    url = f"http://127.0.0.1:{daemon.port}"
    async with http.post(f"{url}/api/jobs", json=SLOW) as resp:
        job_id = (await resp.json())["id"]
    stopping = asyncio.create_task(daemon.stop())
    await asyncio.sleep(0.1)
    async with http.post(f"{url}/api/jobs", json=SLOW) as resp:
        assert resp.status == 503
        assert (await resp.json())["error"] == "Node is shutting down"
    async with http.get(f"{url}/health") as resp:
        assert resp.status == 503 and (await resp.json())["status"] == "stopping"
    await stopping
    # The drained job finished and was persisted: a new daemon on the same state sees it.
    async with running_agent(unmanaged_config(services), tmp_path / "s") as (daemon, _):
        [job] = await daemon.store.get_many("127.0.0.1", [job_id])
        assert job.status.value == "success"


async def test_intermediate_results_visible_while_chain_runs(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession
) -> None:
    _, url = agent
    slow_second = {"mode": "relay", "relay": {"mode": "sleep", "seconds": 0.5}}
    chain = {"containers": ["first", "second"], "data": slow_second}
    async with http.post(f"{url}/api/jobs", json=chain) as resp:
        job_id = (await resp.json())["id"]
    seen = None
    for _ in range(100):
        async with http.get(f"{url}/api/jobs?id={job_id}&intermediate=true") as resp:
            [job] = await resp.json()
        if job["status"] == "running" and job["result"] is not None:
            seen = job
            break
        await asyncio.sleep(0.02)
    assert seen is not None, "the first container's result was not stored on arrival"
    assert seen["result"]["container"] == "first"


async def test_remote_container_gets_bearer_token(
    services: dict[str, tuple[ProtocolService, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    http: aiohttp.ClientSession,
) -> None:
    monkeypatch.setenv("SERVICE_TOKEN", "t0ken")
    raw = unmanaged_config(services)
    raw["containers"][0]["bearer"] = {"env": "SERVICE_TOKEN"}
    async with running_agent(raw, tmp_path / "s") as (_, url):
        async with http.post(f"{url}/api/jobs", json={"containers": ["first"], "data": {}}) as resp:
            job_id = (await resp.json())["id"]
        async with http.get(f"{url}/api/jobs?id={job_id}&wait=5") as resp:
            assert (await resp.json())[0]["status"] == "success"
    assert services["first"][0].authorizations == ["Bearer t0ken"]


async def test_a_part_that_fails_to_stop_does_not_keep_the_others_open(
    services: dict[str, tuple[ProtocolService, str]], tmp_path: Path
) -> None:
    """Stopping goes on past a part that fails (here the provider services): the job store
    still closes, the HTTP session too, and the failure is raised at the end."""
    daemon = Daemon(make_config(unmanaged_config(services)), tmp_path / "state")
    await daemon.start()
    await daemon.containers_ready.wait()

    async def broken_stop() -> None:
        raise RuntimeError("provider stop failed")

    daemon.provider.stop = broken_stop  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="provider stop failed"):
        await daemon.stop()
    assert daemon._session.closed
    assert not daemon.store._writer.is_alive()
    assert daemon._runner is not None and not daemon._runner.sites  # the port is given back
