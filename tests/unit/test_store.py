"""The job store on real SQLite files."""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from node_agent.errors import StoreError, StoreUnavailable
from node_agent.jobs import store as store_module
from node_agent.jobs.model import ContainerResult, Job, JobStatus
from node_agent.jobs.store import (
    _FINISHED_IDS,
    _RUNNING_IDS,
    _SCHEMA,
    INTERRUPTED_ERROR,
    STATE_DELAY,
    JobStore,
    _finished,
    _Op,
    _row,
    _state,
    _Writer,
)


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


async def test_waited_ops_go_at_once_and_states_wait_for_a_ride(tmp_path: Path) -> None:
    """A creation (its client's reply waits on it) is handed to the writer at once; a later
    state stays queued (for the next waited op or STATE_DELAY), and the commit still
    acknowledges the creation."""
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    job = Job(id="quick", client="c", containers=["a"])
    committed = store.begin_create(job)
    assert store._outbox == []
    job.results.append(ContainerResult("a", output={"done": True}))
    job.status = JobStatus.SUCCESS
    store.save(job)
    assert [op.state is not None for op in store._outbox] == [True]
    assert not committed.done()
    await committed
    await store.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite") as conn:
        assert conn.execute("SELECT status FROM jobs").fetchall() == [("success",)]


async def created_then_finished(store: JobStore, job_id: str) -> None:
    """A job committed as running, then its final state queued (not yet written)."""
    job = Job(id=job_id, client="c", containers=["a"])
    await store.create(job)
    job.status = JobStatus.SUCCESS
    store.save(job)


async def test_a_lone_state_is_written_after_the_state_delay(tmp_path: Path) -> None:
    """A state that no waited op follows still reaches the disk, within STATE_DELAY plus a
    commit; one that a waited op follows goes with it."""
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    await created_then_finished(store, "lone")
    reader = sqlite3.connect(tmp_path / "jobs.sqlite")

    def stored() -> str:
        return str(reader.execute("SELECT status FROM jobs WHERE id = 'lone'").fetchone()[0])

    assert stored() == "running"
    await asyncio.sleep(STATE_DELAY + 0.2)
    assert stored() == "success"
    batches = store.commit_batches
    other = Job(id="other", client="c", containers=["a"])
    await store.create(other)
    other.status = JobStatus.FAILED
    store.save(other)
    await store.create(Job(id="next", client="c", containers=["a"]))  # takes the state along
    assert store.commit_batches == batches + 2
    assert reader.execute("SELECT status FROM jobs WHERE id = 'other'").fetchone() == ("failed",)
    reader.close()
    await store.close()


async def test_close_writes_queued_states_and_drops_their_timer(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    await created_then_finished(store, "last")
    assert store._state_timer is not None
    await store.close()
    assert store._state_timer is None
    with sqlite3.connect(tmp_path / "jobs.sqlite") as conn:
        assert conn.execute("SELECT status FROM jobs").fetchall() == [("success",)]


def test_a_batch_writes_each_job_once_in_its_latest_state(tmp_path: Path) -> None:
    """The writer's batch logic alone: a state after its row is folded into the row; a whole
    row after a state replaces it."""
    writer = _Writer(tmp_path / "jobs.sqlite", "normal")
    conn = sqlite3.connect(writer.path, isolation_level=None)
    conn.executescript(_SCHEMA)
    fast = Job(id="fast", client="c", containers=["a"])
    reported = Job(id="reported", client="c", containers=["a"])
    ops = [_Op(write=_row(fast)), _Op(write=_row(reported))]
    fast.status = reported.status = JobStatus.SUCCESS
    ops += [_Op(state=_state(fast)), _Op(state=_state(reported))]
    reported.status = JobStatus.FAILED
    ops.append(_Op(write=_row(reported)))
    writer._run_batch(conn, ops)
    assert (writer.batches, writer.rows_written, writer.states_written) == (1, 2, 0)
    rows = conn.execute("SELECT id, status FROM jobs ORDER BY id").fetchall()
    assert rows == [("fast", "success"), ("reported", "failed")]
    conn.close()


async def test_later_states_of_a_created_job_write_only_its_state(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    job = Job(id="s", client="c", containers=["a", "b"], data={"prompt": "x" * 1000})
    await store.create(job)
    job.data = {"changed": "in memory only"}  # the stored input must not be written again
    job.results.append(ContainerResult("a", output={"step": 1}))
    store.save(job)  # an intermediate result
    job.results.append(ContainerResult("b", output={"step": 2}))
    job.status = JobStatus.SUCCESS
    store.save(job)
    await store.flush()
    assert (store._writer.rows_written, store._writer.states_written) == (1, 1)  # one per job
    # A status report for an id the store never created is written whole.
    report = Job(id="r", client="c", containers=["a"], status=JobStatus.SUCCESS)
    store.save(report)
    await store.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite") as conn:
        rows = conn.execute("SELECT id, status, data, results FROM jobs ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("r", "success"), ("s", "success")]
    assert orjson.loads(rows[1][2]) == {"prompt": "x" * 1000}
    assert [r["output"] for r in orjson.loads(rows[1][3])] == [{"step": 1}, {"step": 2}]


async def test_listings_read_indexes_not_the_table(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:  # as the previous version left it
        conn.execute("DROP INDEX jobs_of_client")
        conn.execute("CREATE INDEX jobs_by_client ON jobs (client, status, created_at)")
        conn.execute("CREATE INDEX jobs_by_created ON jobs (created_at)")
    conn.close()
    store = JobStore(path)
    await store.open()

    def plans(conn: sqlite3.Connection) -> tuple[str, str, list[str]]:
        running, finished = (
            str(conn.execute(f"EXPLAIN QUERY PLAN {sql}", ("c",)).fetchall())
            for sql in (_RUNNING_IDS, _FINISHED_IDS)
        )
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")]
        return running, finished, names

    running, finished, names = await store._query(plans)
    assert "USING INDEX jobs_running" in running and "TEMP B-TREE" not in running
    assert "USING INDEX jobs_of_client (client=?)" in finished and "TEMP B-TREE" not in finished
    # A job's final write moves no index entry but its jobs_running one.
    assert sorted(n for n in names if not n.startswith("sqlite_")) == [
        "jobs_of_client",
        "jobs_running",
    ]
    await store.close()


async def test_recovery_reads_only_the_running_index(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    await store.open()
    await store.create(Job(id="old", client="c", containers=["a"]))
    await store.close()
    with sqlite3.connect(path) as conn:  # as the previous version left it
        conn.execute("DROP INDEX jobs_running")
        conn.execute("CREATE INDEX jobs_by_status ON jobs (status)")
    conn.close()
    store = JobStore(path)
    await store.open()

    def plan(conn: sqlite3.Connection) -> tuple[str, list[str]]:
        rows = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE status = 'running' ORDER BY created_at"
        ).fetchall()
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")]
        return str(rows), names

    text, names = await store._query(plan)
    assert "jobs_running" in text and "jobs_by_status" not in names
    assert [j.id for j in await store.interrupted_jobs()] == ["old"]
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


async def test_retention_walks_rows_in_creation_order(tmp_path: Path) -> None:
    """Old running rows in front and gaps left by earlier passes do not stop either pass."""
    now = [1000.0]
    store = JobStore(tmp_path / "jobs.sqlite", clock=lambda: now[0])
    await store.open()
    stuck = Job(id="stuck", client="c", containers=["a"])  # a status record never closed
    await store.create(stuck, live=False)
    for i in range(20):
        now[0] += 10
        job = Job(id=f"j{i:02}", client="c", containers=["a"])
        await store.create(job)
        job.status = JobStatus.SUCCESS
        store.save(job)
    # ages now: stuck 200 s, j00 190 s ... j19 0 s
    assert await store.prune(max_age=95, max_count=1000) == 10  # j00..j09
    assert await store.prune(max_age=95, max_count=1000) == 0
    assert await store.prune(max_age=1e9, max_count=4) == 6  # j10..j15
    assert await store.prune(max_age=1e9, max_count=4) == 0
    assert await store.list_ids("c", pending=None) == ["stuck", "j16", "j17", "j18", "j19"]
    assert await store.list_ids("c", pending=True) == ["stuck"]
    await store.close()


async def test_retention_deletes_in_chunks_of_one_batch_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "PRUNE_CHUNK", 3)
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    for i in range(10):
        job = Job(id=f"k{i}", client="c", containers=["a"], status=JobStatus.SUCCESS)
        await store.create(job, live=False)
    batches = store.commit_batches
    assert await store.prune(max_age=1e9, max_count=2) == 8
    # One batch to find the rows, then 3 + 3 + 2 (new jobs' commits can go in between),
    # then one to give free pages back.
    assert store.commit_batches - batches == 5
    assert await store.list_ids("c", pending=None) == ["k8", "k9"]
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
    await asyncio.wait_for(store.wait_final(["w"], 5), 2)
    await task
    await store.close()


async def test_wait_for_any_or_all_of_several_jobs(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    jobs = [Job(id=f"w{i}", client="c", containers=["a"]) for i in range(3)]
    for job in jobs:
        await store.create(job)
    loop = asyncio.get_running_loop()

    def finish_later(job: Job, delay: float) -> None:
        def finish() -> None:
            job.status = JobStatus.SUCCESS
            store.save(job)

        loop.call_later(delay, finish)

    finish_later(jobs[1], 0.05)
    finish_later(jobs[0], 0.3)
    began = loop.time()
    await store.wait_final(["w0", "w1", "w2"], 5, until="any")
    assert 0.04 < loop.time() - began < 0.25  # woke by w1, not by the timeout
    began = loop.time()
    await store.wait_final(["w0", "w2"], 0.5, until="all")
    assert 0.45 < loop.time() - began < 1  # w0 ended, w2 never did: the deadline counts
    assert jobs[0].final and not jobs[2].final
    assert store._final_waiters == {}  # nothing left registered after the waits
    began = loop.time()
    await store.wait_final(["w1", "w2"], 5, until="any")  # w1 is already final
    await store.wait_final(["unknown"], 5)  # not running here: nothing to wait for
    assert loop.time() - began < 0.05
    await store.close()


async def test_finished_jobs_are_cached_compactly_with_the_same_wire_form(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    job = Job(id="f", client="c", containers=["a", "b"], data={"x": 1})
    await store.create(job)
    job.results += [ContainerResult("a", output={"mid": [1, 2]}), ContainerResult("b", error="no")]
    job.status = JobStatus.FAILED
    expected = {flag: orjson.dumps(job.to_wire(intermediate=flag)) for flag in (True, False)}
    store.save(job)
    [cached] = await store.get_many("c", ["f"])
    assert cached is not job and cached.status is JobStatus.FAILED and store.owner_of("f") == "c"
    for flag in (True, False):
        assert orjson.dumps(cached.to_wire(intermediate=flag)) == expected[flag]
    # What the cache holds is invisible to the cyclic garbage collector (see _Finished).
    gc.collect()
    assert not gc.is_tracked(store._recent["f"])
    await store.close()
    reopened = JobStore(tmp_path / "jobs.sqlite")
    await reopened.open()
    [stored] = await reopened.get_many("c", ["f"])  # from SQLite: the same answer
    assert orjson.dumps(stored.to_wire(intermediate=True)) == expected[True]
    await reopened.close()


def test_cached_results_take_little_memory() -> None:
    """20,000 cached results (the default cache size) stay within a few MB of RSS."""

    def rss_mb() -> float:
        with open("/proc/self/status") as status:
            line = next(x for x in status if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    before = rss_mb()
    cache = []
    for i in range(20_000):
        job = Job(id=str(i), client="127.0.0.1", containers=["echo"], status=JobStatus.SUCCESS)
        job.results.append(ContainerResult("echo", output={"output": {"prompt": "hello " * 6}}))
        cache.append(_finished(job))
    assert rss_mb() - before < 40  # orjson's uncopied output took ~160 MB here
    assert len(cache) == 20_000


async def test_batches_of_any_size_are_written_whole(tmp_path: Path) -> None:
    """Rows and states go out in multi-row statements of 64/16/4/1: every size adds up."""
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    total = 0
    for size in (1, 3, 5, 21, 87, 300):
        jobs = [Job(id=f"b{total + i}", client="c", containers=["a"]) for i in range(size)]
        await asyncio.gather(*(store.create(j) for j in jobs))
        for job in jobs:  # each job's final state lands in the same kind of batches
            job.status = JobStatus.SUCCESS
            store.save(job)
        total += size
        await store.flush()
        count = await store._query(
            lambda conn: conn.execute(
                "SELECT status, COUNT(*) FROM jobs GROUP BY status"
            ).fetchall()
        )
        assert count == [("success", total)]
    assert (store._writer.rows_written, store._writer.states_written) == (total, total)
    await store.close()


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.005)


async def test_a_dead_writer_fails_every_write_at_once(tmp_path: Path) -> None:
    """The writer thread dies (injected): the op it was handling, everything queued and every
    later write fail with StoreUnavailable instead of waiting forever; health says why."""
    store = JobStore(tmp_path / "jobs.sqlite")
    await store.open()
    await store.create(Job(id="before", client="c", containers=["a"]))
    assert store.health() == {"status": "ok"} and store.writer_alive
    store._writer.fault = RuntimeError("injected writer fault")
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(store.flush(), 5)
    assert not store.writer_alive
    health = store.health()
    assert health["status"] == "unhealthy" and "injected writer fault" in health["reason"]
    with pytest.raises(StoreUnavailable):
        await store.create(Job(id="after", client="c", containers=["a"]))
    assert store.running_count() == 1  # "after" was never taken in
    with pytest.raises(StoreUnavailable):
        await store.list_ids("c", None)
    # An op that reaches the queue after the thread's own sweep is failed by the hand-off.
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    store._outbox.append(_Op(query=lambda conn: None, future=future))
    store._handoff()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(future, 5)
    await asyncio.wait_for(store.close(), 5)


async def test_a_failed_commit_retries_the_states_it_held(tmp_path: Path) -> None:
    """A batch that cannot commit fails the creations in it (their clients hear it), but the
    later states of committed jobs go again until a commit works; meanwhile health is red."""
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    await store.open()
    job = Job(id="j", client="c", containers=["a"])
    await store.create(job)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER no_updates BEFORE UPDATE ON jobs"
            " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    job.results.append(ContainerResult("a", output={"ok": 1}))
    job.status = JobStatus.SUCCESS
    store.save(job)
    await wait_until(lambda: store._writer.failed_commits >= 2)  # retried, still failing
    health = store.health()
    assert health["status"] == "unhealthy" and "disk says no" in health["reason"]
    assert health["states_to_retry"] == 1
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER no_updates")
    await wait_until(lambda: store._writer.failed_commits == 0)
    assert store.health() == {"status": "ok"}
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT status FROM jobs").fetchall() == [("success",)]


async def test_a_lone_creation_whose_commit_fails_hears_the_error(tmp_path: Path) -> None:
    """A row alone is written without BEGIN/COMMIT; its failure still answers its creator."""
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    await store.open()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER no_inserts BEFORE INSERT ON jobs"
            " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    with pytest.raises(StoreError, match="disk says no"):
        await asyncio.wait_for(store.create(Job(id="j", client="c", containers=["a"])), 10)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER no_inserts")
    await store.create(Job(id="k", client="c", containers=["a"]))  # alone again: committed
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id FROM jobs").fetchall() == [("k",)]


def wal_size(path: Path) -> int:
    return os.path.getsize(f"{path}-wal")


def row_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


async def test_retention_by_count_runs_as_rows_arrive_and_the_cache_forgets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past retention_count + slack a pass runs at once (not once a minute), and the jobs it
    deletes are no longer readable from the in-memory result cache."""
    monkeypatch.setattr(store_module, "retention_slack", lambda max_count: 10)
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    await store.open()
    store.retain(1e9, 50)
    highest = 0
    for i in range(300):
        job = Job(id=f"r{i:03}", client="c", containers=["a"])
        await store.create(job)
        job.results.append(ContainerResult("a", output={"i": i}))
        job.status = JobStatus.SUCCESS
        store.save(job)  # cached as a recent result
        if i % 10 == 9:
            await store.flush()
            highest = max(highest, row_count(path))
    await wait_until(lambda: store._pruning is None)
    await store.flush()
    assert 50 <= row_count(path) <= 60
    assert highest <= 50 + 10 + 10  # the slack, plus what came during one pass
    assert await store.get_many("c", ["r000", "r100"]) == []  # deleted: not from the cache
    [kept] = await store.get_many("c", ["r299"])
    assert kept.status is JobStatus.SUCCESS
    await store.close()


async def test_id_pages_follow_creation_order_with_a_cursor(tmp_path: Path) -> None:
    now = [1000.0]
    store = JobStore(tmp_path / "jobs.sqlite", clock=lambda: now[0])
    await store.open()
    for i in range(25):
        if i % 5 == 0:
            now[0] += 1  # several jobs share a created_at: the cursor still splits them
        status = JobStatus.RUNNING if i % 4 == 0 else JobStatus.SUCCESS
        await store.create(Job(id=f"p{i:02}", client="c", containers=["a"], status=status))
    await store.create(Job(id="other", client="d", containers=["a"]))
    pages: list[list[str]] = []
    cursor = None
    while True:
        ids, cursor = await store.page_ids("c", None, 10, cursor)
        pages.append(ids)
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i for page in pages for i in page] == [f"p{i:02}" for i in range(25)]
    running, _ = await store.page_ids("c", True, 100)
    assert running == [f"p{i:02}" for i in range(0, 25, 4)]
    finished, _ = await store.page_ids("c", False, 100)
    assert len(finished) == 25 - len(running)
    await store.close()


async def test_an_idle_store_truncates_its_wal_and_gives_free_pages_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "IDLE_TRUNCATE_AFTER", 0.2)
    monkeypatch.setattr(store_module, "FREE_PAGES_KEPT", 8)
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    await store.open()
    blob = "x" * 2000
    for i in range(500):
        await store.create(
            Job(
                id=f"w{i}", client="c", containers=["a"], data={"b": blob}, status=JobStatus.SUCCESS
            ),
            live=False,
        )
    assert wal_size(path) > 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
        pages_before = conn.execute("PRAGMA page_count").fetchone()[0]
    assert await store.prune(max_age=1e9, max_count=100) == 400
    await wait_until(lambda: wal_size(path) == 0)  # truncated once idle
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] <= 8
        assert conn.execute("PRAGMA page_count").fetchone()[0] < pages_before / 2
    await store.close()
