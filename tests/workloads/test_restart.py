"""The agent is not the workload: ``kill -9`` of a real agent process while a workload runs,
then a restart re-attaches it and reports its true exit code, with one callback per status."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import docker
import pytest
import yaml

from tests.support.agent import start_agent_process
from tests.support.net import free_port
from tests.workloads.support import (
    FINAL,
    Receiver,
    draft,
    eventually,
    make_key,
    node_config,
    running_receiver,
    wait_status,
)

pytestmark = pytest.mark.docker


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Receiver, str]]:
    async with running_receiver() as running:
        yield running


def outbox_settled(state: Path, job_id: str) -> bool:
    """Every callback row of the job delivered, read from the agent's own SQLite file: after
    this no further callback can come for it (a condition, not a waiting window)."""
    db = sqlite3.connect(f"file:{state / 'workloads.sqlite'}?mode=ro", uri=True)
    try:
        (pending,) = db.execute(
            "SELECT count(*) FROM outbox WHERE job_id = ? AND done_at IS NULL", (job_id,)
        ).fetchone()
    finally:
        db.close()
    return int(pending) == 0


async def test_kill_9_then_restart_reattaches_and_reports_the_true_exit_code(
    tmp_path: Path, http: aiohttp.ClientSession, hook: tuple[Receiver, str]
) -> None:
    receiver, hook_url = hook
    key = make_key()
    port = free_port()
    raw = node_config([key], max_running=1)
    raw["server"] = {"port": port, "host": "127.0.0.1", "rate_limit_enabled": False}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    state = tmp_path / "state"
    url = f"http://127.0.0.1:{port}"

    async def healthy() -> bool:
        try:
            async with http.get(f"{url}/health") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    agent = await start_agent_process(config, state, log=tmp_path / "agent.log")
    try:
        await eventually(healthy, what="agent up")
        long = draft("echo before; sleep 5; echo after; exit 7", callback_url=hook_url)
        async with http.post(f"{url}/v1/jobs", json=long, headers=key.headers) as r:
            job_id = (await r.json())["job_id"]
        # Queued behind it (max_running 1): accepted work survives the kill too.
        async with http.post(f"{url}/v1/jobs", json=draft("exit 0"), headers=key.headers) as r:
            queued_id = (await r.json())["job_id"]
        await wait_status(http, url, key, job_id, {"running"})

        async def running_callback_recorded() -> bool:
            # Received *and* marked delivered in the agent's outbox: a kill between the two
            # sends it again after the restart (at least once, by design), which is not what
            # this test is about.
            received = any(c["status"] == "running" for c in receiver.bodies)
            return received and outbox_settled(state, job_id)

        await eventually(running_callback_recorded, what="the running callback recorded")
        os.kill(agent.pid, signal.SIGKILL)
        await agent.wait()
        client = docker.from_env()
        (container,) = client.containers.list(filters={"label": f"io.node-agent.workload={job_id}"})
        assert container.status == "running"  # the workload outlived the agent

        agent = await start_agent_process(config, state, log=tmp_path / "agent.log")
        await eventually(healthy, what="agent back")
        final = await wait_status(http, url, key, job_id, FINAL, timeout=60)
        assert final["status"] == "failed" and final["exit_code"] == 7
        async with http.get(f"{url}/v1/jobs/{job_id}/runtime", headers=key.headers) as r:
            log_tail = (await r.json())["log_tail"]
        assert log_tail == "before\nafter\n"  # output from before and after the restart
        queued = await wait_status(http, url, key, queued_id, FINAL, timeout=60)
        assert queued["status"] == "succeeded"

        async def settled() -> bool:
            return outbox_settled(state, job_id)

        await eventually(settled, what="every callback of the job delivered")
        calls = receiver.bodies
        assert [c["status"] for c in calls] == ["running", "failed"]
        assert calls[-1]["exit_code"] == 7
        assert not client.containers.list(
            all=True, filters={"label": f"io.node-agent.workload={job_id}"}
        )  # removed once recorded
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
            await asyncio.wait_for(agent.wait(), 60)


async def test_a_container_created_but_never_started_is_requeued_not_failed(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The agent stopped between creating a job's container and starting it: nothing ran, so
    the next start removes that container and runs the job from the queue."""
    from node_agent.workloads.config import WorkloadsConfig
    from node_agent.workloads.model import Workload, WorkloadStatus, parse_draft
    from node_agent.workloads.node import node_tag
    from node_agent.workloads.spec import container_spec
    from node_agent.workloads.store import WorkloadStore
    from tests.support.agent import running_agent

    key = make_key()
    state = tmp_path / "state"
    store = WorkloadStore(state / "workloads.sqlite")
    await store.open()
    job = Workload(
        id="01a20000-0000-7000-8000-00000000beef",
        owner=f"key:{key.key_id}",
        draft=parse_draft(draft("echo ran; exit 0")).stored(),
        status=WorkloadStatus.QUEUED,
        created_at=time.time(),
        updated_at=time.time(),
    )
    await store.create(job)
    client = docker.from_env()
    created = client.containers.create(
        **container_spec(job, (), WorkloadsConfig(), node_tag(state))
    )
    await store.update(job, WorkloadStatus.STARTING, container_id=created.id)
    await store.close()
    try:
        async with running_agent(node_config([key]), state) as (_, url):
            final = await wait_status(http, url, key, job.id, FINAL)
            assert final["status"] == "succeeded" and final["exit_code"] == 0
            async with http.get(f"{url}/v1/jobs/{job.id}/runtime", headers=key.headers) as r:
                assert (await r.json())["log_tail"] == "ran\n"
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(created.id)  # the stale one is gone
    finally:
        for leftover in client.containers.list(
            all=True, filters={"label": f"io.node-agent.workload={job.id}"}
        ):
            leftover.remove(force=True)
