"""The job store on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from node_agent.jobs.model import ContainerResult, Job, JobStatus
from node_agent.jobs.store import INTERRUPTED_ERROR, JobStore


async def test_group_commit_and_reopen(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    jobs = [Job(id=f"j{i}", client="c", containers=["a"]) for i in range(500)]
    await asyncio.gather(*(store.create(j) for j in jobs))
    assert store.commit_batches < 100  # many creations share a commit
    for job in jobs[:300]:
        job.results.append(ContainerResult("a", output={"n": job.id}))
        job.status = JobStatus.SUCCESS
        store.save(job)
    await store.close()
    # Another connection (another process, in effect) sees every committed row.
    with sqlite3.connect(tmp_path / "jobs.sqlite") as conn:
        counts = dict(conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"))
    assert counts == {"success": 300, "running": 200}

    reopened = JobStore(tmp_path / "jobs.sqlite", recent_cache_size=10)
    await reopened.open()
    [j0] = await reopened.get_many("c", ["j0"])
    assert j0.results[0].output == {"n": "j0"}
    assert await reopened.get_many("someone-else", ["j0"]) == []
    assert len(await reopened.list_ids("c", pending=True)) == 200
    assert len(await reopened.list_ids("c", pending=False)) == 300
    interrupted = await reopened.interrupted_jobs()
    assert reopened.fail_interrupted(interrupted) == 200
    await reopened.flush()
    [j400] = await reopened.get_many("c", ["j400"])
    assert j400.status is JobStatus.FAILED and j400.results[-1].error == INTERRUPTED_ERROR
    await reopened.close()


async def test_listing_uses_the_client_index(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    plan = await store._query(
        lambda conn: conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE client = ? AND status = 'running' "
            "ORDER BY created_at",
            ("c",),
        ).fetchall()
    )
    assert "jobs_by_client" in str(plan)
    await store.close()


async def test_retention_by_age_and_count(tmp_path: Path) -> None:
    now = [1000.0]
    store = JobStore(tmp_path / "jobs.sqlite", clock=lambda: now[0])
    await store.open()
    for i in range(10):
        job = Job(id=f"j{i}", client="c", containers=["a"])
        await store.create(job)
        job.status = JobStatus.SUCCESS
        store.save(job)
        now[0] += 10
    running = Job(id="live", client="c", containers=["a"])
    await store.create(running)
    assert await store.prune(max_age=55, max_count=100) == 5  # j0..j4 are older than 55 s
    assert await store.prune(max_age=1e9, max_count=3) == 2
    assert await store.list_ids("c", pending=None) == ["live", "j7", "j8", "j9"]
    await store.close()


async def test_wait_final_returns_when_job_ends(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    job = Job(id="w", client="c", containers=["a"])
    await store.create(job)

    async def finish() -> None:
        await asyncio.sleep(0.05)
        job.status = JobStatus.SUCCESS
        store.save(job)

    task = asyncio.create_task(finish())
    await asyncio.wait_for(store.wait_final("w", 5), 2)
    await task
    await store.close()
