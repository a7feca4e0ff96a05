"""Jobs in SQLite (WAL), written by one thread with group commit.

Why this shape: a job must be durable before ``POST /api/jobs`` answers, and the node must
sustain thousands of jobs per second. One writer thread drains every queued operation into a
single transaction, so a burst of N creations costs one commit, and the event loop never
touches SQLite. Reads of live and recent jobs come from memory; older ones, and listings,
go through the same thread so they always see every write queued before them.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import orjson
import structlog

from node_agent import jsonpolicy
from node_agent.errors import InvalidJson, StoreError, StoreUnavailable
from node_agent.jobs.model import ContainerResult, Job, JobStatus

log = structlog.get_logger(__name__)

T = TypeVar("T")
Query = Callable[[sqlite3.Connection], T]

INTERRUPTED_ERROR = (
    "Job interrupted: the node stopped before the job finished (crash, kill or power loss)"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    status TEXT NOT NULL,
    containers TEXT NOT NULL,
    results TEXT NOT NULL,
    data TEXT,
    requires_proof INTEGER NOT NULL DEFAULT 0,
    stream INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
-- Every index is written on every job's first row, so there are few of them and a job's final
-- write (status and results) touches none but jobs_running.
-- A client's jobs in order (listing). Status is not in it: the final write would move the entry.
DROP INDEX IF EXISTS jobs_by_client;
CREATE INDEX IF NOT EXISTS jobs_of_client ON jobs (client, created_at);
-- Retention walks the table in rowid order (the order rows were created), so no index by age.
DROP INDEX IF EXISTS jobs_by_age;
DROP INDEX IF EXISTS jobs_by_created;
-- Only running jobs (found again after a crash, and a client's pending listing): the index
-- stays tiny and a job's final write removes its entry instead of moving it.
DROP INDEX IF EXISTS jobs_by_status;
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (created_at) WHERE status = 'running';
"""

_UPSERT_HEAD = """
INSERT INTO jobs (id, client, status, containers, results, data, requires_proof, stream,
                  created_at, updated_at)
VALUES """
_UPSERT_TAIL = """
ON CONFLICT(id) DO UPDATE SET status = excluded.status, results = excluded.results,
                              updated_at = excluded.updated_at
WHERE jobs.client = excluded.client
"""
_ROW_MARKS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Rows per statement: one statement writes many rows in one step, where executemany pays a
# step (and a release and re-take of the GIL, contended by the event loop) per row. Measured
# alone the writer saves ~3 % CPU; the fewer GIL hand-offs are the point.
_CHUNK_SIZES = (64, 16, 4, 1)
_UPSERTS = {n: _UPSERT_HEAD + ", ".join([_ROW_MARKS] * n) + _UPSERT_TAIL for n in _CHUNK_SIZES}
# A new state (status, results) of rows that exist: four values a row, and neither the job's
# input nor its containers are serialised, bound or written again (UPDATE … FROM: SQLite 3.33+).
_STATE_UPDATES = {
    n: "WITH s (id, status, results, updated_at) AS (VALUES "
    + ", ".join(["(?, ?, ?, ?)"] * n)
    + ") UPDATE jobs SET status = s.status, results = s.results, updated_at = s.updated_at"
    " FROM s WHERE jobs.id = s.id"
    for n in _CHUNK_SIZES
}

# Finished jobs deleted per writer batch by retention.
PRUNE_CHUNK = 5_000
# How long a job's new state may wait for a commit it can share (see JobStore._submit).
STATE_DELAY = 0.002
# WAL bytes kept after a checkpoint resets it; an idle store truncates it to nothing.
WAL_SIZE_LIMIT = 16 * 1024 * 1024
# Seconds without a commit after which the checkpointer truncates the WAL.
IDLE_TRUNCATE_AFTER = 5.0
# Free pages kept for new rows after retention (the rest go back with incremental_vacuum).
FREE_PAGES_KEPT = 2048
PAGES_RELEASED_PER_PASS = 2048


def retention_slack(max_count: int) -> int:
    """How far past ``retention_count`` the table may grow before retention runs: 1 % of
    it, at least 1,000 rows (plus what arrives during one pass, milliseconds of jobs)."""
    return max(1000, max_count // 100)


_COLUMNS = (
    "id, client, status, containers, results, data, requires_proof, stream, created_at, updated_at"
)


def _row(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.client,
        job.status.value,
        orjson.dumps(job.containers),
        jsonpolicy.dumps([r.to_wire() for r in job.results]),
        jsonpolicy.dumps(job.data),
        int(job.requires_proof),
        int(job.stream),
        job.created_at,
        job.updated_at,
    )


def _state(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.status.value,
        jsonpolicy.dumps([r.to_wire() for r in job.results]),
        job.updated_at,
    )


def _with_state(row: tuple[Any, ...], state: tuple[Any, ...]) -> tuple[Any, ...]:
    """A full row (``_row``) carrying a later state (``_state``) of the same job."""
    return (*row[:2], state[1], row[3], state[2], *row[5:9], state[3])


def _job(row: Sequence[Any]) -> Job:
    containers = orjson.loads(row[3])
    try:
        results = [ContainerResult.from_wire(r) for r in jsonpolicy.loads(row[4])]
        data = jsonpolicy.loads(row[5]) if row[5] is not None else None
    except InvalidJson as exc:
        # A row written before the JSON policy (e.g. nested deeper than the node can send
        # back): it must not break every listing that includes it.
        problem = (exc.params or {}).get("problem", exc.error)
        last = containers[-1] if containers else ""
        results = [ContainerResult(last, error=f"stored result unreadable: {problem}")]
        data = None
    return Job(
        id=row[0],
        client=row[1],
        status=JobStatus(row[2]),
        containers=containers,
        results=results,
        data=data,
        requires_proof=bool(row[6]),
        stream=bool(row[7]),
        created_at=row[8],
        updated_at=row[9],
    )


# Where a page of a client's id listing ends: (created_at, rowid) of its last job.
IdCursor = tuple[float, int]


class JobRecord(Protocol):
    """What readers of a job get: a live :class:`Job` or a compact finished one."""

    @property
    def id(self) -> str: ...

    @property
    def client(self) -> str: ...

    @property
    def status(self) -> JobStatus: ...

    def to_wire(self, *, intermediate: bool) -> dict[str, Any]: ...


# A finished job as the recent-results cache keeps it: (client, status, created_at, last result
# as JSON, intermediate results as JSON). Why a plain tuple of str/float/bytes: the garbage
# collector stops tracking such tuples, so tens of thousands of cached results add nothing to
# its full collections (with Job objects here, each one stalled the loop for ~100 ms under
# load), and a GET sends the stored JSON without rebuilding it.
_Finished = tuple[str, str, float, bytes, bytes]


def _finished(job: Job) -> _Finished:
    last = job.results[-1].to_wire() if job.results else None
    earlier = [r.to_wire() for r in job.results[:-1]]
    return (job.client, job.status.value, job.created_at, _compact(last), _compact(earlier))


def _compact(value: Any) -> bytes:
    """JSON in an exactly sized bytes object: orjson's own result keeps its ~4 KiB working
    buffer allocated, which across a 20,000-entry cache was 160 MB of RSS."""
    return memoryview(jsonpolicy.dumps(value)).tobytes()


class FinishedJob:
    """A view of a cached finished job, made per read."""

    __slots__ = ("_entry", "id")

    def __init__(self, job_id: str, entry: _Finished) -> None:
        self.id = job_id
        self._entry = entry

    @property
    def client(self) -> str:
        return self._entry[0]

    @property
    def status(self) -> JobStatus:
        return JobStatus(self._entry[1])

    def to_wire(self, *, intermediate: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "result": orjson.Fragment(self._entry[3]),
            "status": self._entry[1],
        }
        if intermediate:
            body["intermediate_results"] = orjson.Fragment(self._entry[4])
        return body


class _Op:
    """One unit of work for the writer thread; ``write`` rows are coalesced per batch."""

    __slots__ = ("future", "query", "state", "write")

    def __init__(
        self,
        write: tuple[Any, ...] | None = None,
        query: Query[Any] | None = None,
        future: asyncio.Future[Any] | None = None,
        state: tuple[Any, ...] | None = None,
    ) -> None:
        self.write = write  # a whole row, inserted or replacing the stored state
        self.state = state  # a new state of a row written before it
        self.query = query
        self.future = future


_STOP = _Op()


class _Writer(threading.Thread):
    """Owns the only SQLite connection; commits each drained batch once."""

    def __init__(self, path: Path, durability: Literal["normal", "full"]) -> None:
        super().__init__(name="job-store", daemon=True)
        self.path = path
        self.durability = durability
        self.ops: queue.SimpleQueue[list[_Op]] = queue.SimpleQueue()
        self.ready: Future[None] = Future()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.rows_written = 0
        self.states_written = 0
        # Why the thread ended abnormally (set once, before queued ops are failed): later
        # writes fail at once instead of waiting for a thread that is gone.
        self.failure: BaseException | None = None
        # Writes nobody waits for (a job's later state) from a batch that failed to commit:
        # they go again, first, with the next batch (a state must not be dropped silently).
        self.retry: list[_Op] = []
        self.failed_commits = 0  # in a row; 0 after a commit that worked
        self.last_error = ""
        # Test seam: raised in the writer thread before its next batch (kills the thread).
        self.fault: BaseException | None = None
        self.checkpointer: _Checkpointer | None = None

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
            # Freed pages go back to the file system in small steps after retention
            # (incremental_vacuum); only a new, empty database can take this setting, an
            # older one keeps reusing its free pages instead.
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            # The WAL shrinks back to this size whenever it restarts from its beginning.
            conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            conn.execute(f"PRAGMA synchronous={self.durability.upper()}")
            conn.execute("PRAGMA busy_timeout=5000")
            # Checkpoints (which fsync) run on their own thread, never inside a commit that a
            # client's reply is waiting for.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self.ready.set_exception(StoreError(f"cannot open job store {self.path}: {exc}"))
            return
        self.ready.set_result(None)
        checkpointer = self.checkpointer = _Checkpointer(self.path, commits=lambda: self.batches)
        checkpointer.start()
        try:
            self._loop(conn)
        finally:
            checkpointer.stop.set()
            checkpointer.join()
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        batch: list[_Op] = []
        try:
            while True:
                if self.retry:
                    # Back off while commits fail (a full disk), then try again with whatever
                    # came meanwhile; the retried states keep their place ahead of it.
                    time.sleep(min(0.05 * 2 ** min(self.failed_commits, 5), 1.0))
                    batch, self.retry = self.retry, []
                else:
                    batch = self.ops.get()
                while len(batch) < 2048:
                    try:
                        batch += self.ops.get_nowait()
                    except queue.Empty:
                        break
                if self.fault is not None:
                    raise self.fault
                stop = any(op is _STOP for op in batch)
                self._run_batch(conn, [op for op in batch if op is not _STOP])
                batch = []
                if stop:
                    if self.retry:
                        log.error("job_store_states_unwritten", states=len(self.retry))
                    return
        except BaseException as exc:
            self._die(exc, batch)

    def _die(self, exc: BaseException, batch: list[_Op]) -> None:
        """The thread cannot go on: say so loudly and fail every waiting op now and later.

        The job rows committed so far say ``running`` for jobs whose final state was lost
        here; the health check and the withheld watchdog pings make systemd restart the
        node, and recovery at start gives each of them a final status."""
        self.failure = exc
        lost = [op for op in batch if op is not _STOP] + self.retry
        self.retry = []
        log.critical(
            "job_store_writer_died",
            error=repr(exc)[:300],
            unwritten_states=sum(1 for op in lost if op.future is None),
            exc_info=exc,
        )
        self.fail_queued(lost)

    def unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(
            "Job store unavailable: its writer stopped; the node must be restarted",
            {"reason": repr(self.failure)[:200]},
        )

    def fail_queued(self, ops: list[_Op] | None = None) -> None:
        """Fail ``ops`` and everything queued (safe from any thread, any number of times)."""
        pending = list(ops or ())
        while True:
            try:
                pending += self.ops.get_nowait()
            except queue.Empty:
                break
        err = self.unavailable()
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]
        done = [(op.future, None, err) for op in pending if op.future is not None]
        if done and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(_settle, done)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            row = batch[0].write if len(batch) == 1 else None
            if row is not None:
                # A row alone (one client's new job, the common case): one statement in its
                # own transaction, without BEGIN and COMMIT. Each call into SQLite hands the
                # interpreter lock over and back; while the chain thread is busy each handover
                # waits up to a switch interval, and they were most of a commit's latency.
                if batch[0].future is not None:  # before: a failure must answer it too
                    done.append((batch[0].future, None, None))
                self.rows_written += _execute_chunked(conn, _UPSERTS, {row[0]: row})
            else:
                self._run_transaction(conn, batch, done)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            # Creations fail their clients (who then hear an error, and the job is
            # cancelled); writes nobody waits for go again with the next batch.
            self.retry = [op for op in batch if op.future is None and op.query is None]
            self.failed_commits += 1
            self.last_error = str(exc)
            log.error(
                "job_store_commit_failed",
                error=str(exc),
                ops=len(batch),
                retried=len(self.retry),
                failures_in_a_row=self.failed_commits,
            )
            err = StoreError(f"job store write failed: {exc}")
            done = [(f, None, err) for f, _, _ in done]
        else:
            if self.failed_commits:
                log.warning("job_store_commits_recovered", after_failures=self.failed_commits)
            self.failed_commits = 0
        self.batches += 1
        if done and self.loop is not None:
            # One wake-up of the event loop per batch, not one per waiting request.
            self.loop.call_soon_threadsafe(_settle, done)

    def _run_transaction(
        self,
        conn: sqlite3.Connection,
        batch: list[_Op],
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
    ) -> None:
        """The batch in one transaction; what it answers is appended to ``done``."""
        # Each job once, in its latest state: a state that follows its row in the same batch
        # is folded into the row; a later whole row replaces an earlier state.
        pending_rows: dict[str, tuple[Any, ...]] = {}
        pending_states: dict[str, tuple[Any, ...]] = {}
        conn.execute("BEGIN")
        for op in batch:
            if op.state is not None:
                job_id = op.state[0]
                row = pending_rows.get(job_id)
                if row is not None:
                    pending_rows[job_id] = _with_state(row, op.state)
                else:
                    pending_states[job_id] = op.state
                continue
            if op.write is not None:
                pending_states.pop(op.write[0], None)
                pending_rows[op.write[0]] = op.write
                if op.future is not None:
                    done.append((op.future, None, None))
                continue
            self._flush(conn, pending_rows, pending_states)
            assert op.query is not None
            try:
                result = op.query(conn)
            except Exception as exc:  # a failed query fails its caller, not the batch
                if op.future is not None:
                    done.append((op.future, None, exc))
            else:
                if op.future is not None:
                    done.append((op.future, result, None))
        self._flush(conn, pending_rows, pending_states)
        conn.execute("COMMIT")

    def _flush(
        self,
        conn: sqlite3.Connection,
        rows: dict[str, tuple[Any, ...]],
        states: dict[str, tuple[Any, ...]],
    ) -> None:
        """Write the pending rows and states, then forget them."""
        self.rows_written += _execute_chunked(conn, _UPSERTS, rows)
        self.states_written += _execute_chunked(conn, _STATE_UPDATES, states)


def _execute_chunked(
    conn: sqlite3.Connection, statements: dict[int, str], pending: dict[str, tuple[Any, ...]]
) -> int:
    """Run ``statements[n]`` over ``n`` entries of ``pending`` at a time; empties it."""
    if not pending:
        return 0
    entries = list(pending.values())
    pending.clear()
    start = 0
    for size in _CHUNK_SIZES:
        while len(entries) - start >= size:
            chunk = entries[start : start + size]
            conn.execute(statements[size], [value for entry in chunk for value in entry])
            start += size
    return len(entries)


def _settle(done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in done:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _resolve(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)


class _Checkpointer(threading.Thread):
    """Copies the WAL back into the database every ``interval`` seconds (PASSIVE: it never
    blocks the writer), so the WAL stays small without stalling commits."""

    def __init__(
        self, path: Path, interval: float = 0.5, commits: Callable[[], int] = lambda: 0
    ) -> None:
        super().__init__(name="job-store-checkpoint", daemon=True)
        self.path = path
        self.interval = interval
        self.commits = commits  # the writer's commit count: unchanged means idle
        self.stop = threading.Event()
        self.truncations = 0

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            log.error("job_store_checkpointer_failed", error=str(exc))
            return
        last_commits, idle_since, truncated = self.commits(), time.monotonic(), False
        try:
            while not self.stop.wait(self.interval):
                commits, now = self.commits(), time.monotonic()
                if commits != last_commits:
                    last_commits, idle_since, truncated = commits, now, False
                try:
                    if not truncated and now - idle_since >= IDLE_TRUNCATE_AFTER:
                        # Idle: give the WAL's space back (a busy store keeps it, bounded
                        # by journal_size_limit, instead of re-growing it every second).
                        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                        truncated = not busy
                        self.truncations += truncated
                    else:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    log.warning("job_store_checkpoint_failed", error=str(exc))
        finally:
            conn.close()


class JobStore:
    """Durable job records with an in-memory view of live and recent jobs."""

    def __init__(
        self,
        path: Path,
        *,
        durability: Literal["normal", "full"] = "normal",
        recent_cache_size: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._writer = _Writer(path, durability)
        self._clock = clock
        self._live: dict[str, Job] = {}
        self._recent: OrderedDict[str, _Finished] = OrderedDict()
        self._recent_cache_size = recent_cache_size
        self._final_waiters: dict[str, list[asyncio.Future[bool]]] = {}
        self._outbox: list[_Op] = []
        self._abandoned: set[str] = set()  # jobs whose creation failed (see forget)
        # Retention by count between the periodic passes (see retain).
        self._retention: tuple[float, int] | None = None
        self._prune_every = 0  # new rows after which a pass runs (0: never by count)
        self._since_prune = 0
        self._pruning: asyncio.Task[int] | None = None
        self._state_timer: asyncio.TimerHandle | None = None  # the queued states' hand-off
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer.loop = asyncio.get_running_loop()
        self._writer.start()
        await asyncio.wrap_future(self._writer.ready)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pruning is not None:
            self._pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pruning
        if self._state_timer is not None:
            self._state_timer.cancel()
            self._state_timer = None
        self._handoff()  # the queued states go now, ahead of the stop
        self._writer.ops.put([_STOP])
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        log.info(
            "job_store_closed", commits=self._writer.batches, rows_written=self._writer.rows_written
        )

    def _submit(self, op: _Op) -> None:
        """Queue ``op`` for the writer.

        An op someone waits for (a new job's commit, which its client's reply waits on; a
        read) goes at once, with everything queued before it. The others (later states of
        jobs, which readers already see in memory) ride along with the next such op, or go
        after ``STATE_DELAY`` when none comes: under load a state then costs no commit of
        its own (42 % of commits were states alone), and it is durable within a few ms."""
        self._outbox.append(op)
        if op.future is not None:
            self._handoff()
            return
        if self._state_timer is None:
            loop = self._writer.loop
            if loop is None:
                self._handoff()
                return
            self._state_timer = loop.call_later(STATE_DELAY, self._handoff_states)

    def _handoff_states(self) -> None:
        self._state_timer = None
        self._handoff()

    def _handoff(self) -> None:
        if self._outbox:
            ops, self._outbox = self._outbox, []
            self._writer.ops.put(ops)
            if self._writer.failure is not None:
                # The writer died, maybe after this put: its own sweep may have missed it.
                self._writer.fail_queued()

    def _check_writer(self) -> None:
        """Fail fast (503) once the writer thread is gone: nothing would ever answer."""
        if self._writer.failure is not None:
            raise self._writer.unavailable()

    @property
    def writer_alive(self) -> bool:
        """False once the writer thread died (the node then needs a restart)."""
        return self._writer.failure is None

    def health(self) -> dict[str, Any]:
        """``checks.jobs`` material: the writer's state and whether commits succeed."""
        writer = self._writer
        if writer.failure is not None:
            return {
                "status": "unhealthy",
                "reason": f"job store writer stopped: {writer.failure!r}"[:300],
            }
        if writer.failed_commits:
            return {
                "status": "unhealthy",
                "reason": f"job store commits failing ({writer.failed_commits} in a row):"
                f" {writer.last_error}"[:300],
                "states_to_retry": len(writer.retry),
            }
        return {"status": "ok"}

    async def _query(self, query: Query[T]) -> T:
        if self._closed:
            raise StoreError("job store is closed")
        self._check_writer()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._submit(_Op(query=query, future=future))
        return await future

    # --- writes ------------------------------------------------------------------------------

    async def create(self, job: Job, *, live: bool = True) -> None:
        """Persist a new job and return once it is committed (before the client's 200).

        ``live=False`` for records this node does not run (``PUT /api/status``): they are
        not kept in memory waiting for a final status that may never come.
        """
        try:
            await self.begin_create(job, live=live)
        except BaseException:
            self.forget(job.id)
            raise

    def begin_create(self, job: Job, *, live: bool = True) -> asyncio.Future[None]:
        """Queue a new job's first row; the future resolves once it is committed. Its later
        states (``save``) are queued behind it, so they may go in the same commit."""
        self._check_writer()
        now = self._clock()
        job.created_at = job.created_at or now
        job.updated_at = now
        row = _row(job)  # first: a job that cannot be written is never seen as running
        self._count_new_row()
        if live:
            self._live[job.id] = job
        loop = self._writer.loop or asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._submit(_Op(write=row, future=future))
        return future

    def forget(self, job_id: str, *, failed: bool = True) -> None:
        """Drop a job whose creation failed (or was given up) from the live view.

        When the commit failed its client heard an error, so the cancelled job's final save
        must not write it later (when the store works again) as a job nobody knows the id
        of. A creation given up (``failed=False``) may still commit: its final save then
        writes the whole row, so it does not stay ``running``."""
        if self._live.pop(job_id, None) is not None and failed:
            if len(self._abandoned) > 10_000:  # tasks cancelled before they began never save
                self._abandoned.clear()
            self._abandoned.add(job_id)

    def save(self, job: Job) -> None:
        """Record a job's new state (a container result, its final status) without waiting.

        Ordering with ``create`` and later reads is kept by the single writer queue. A job this
        store created (a live one) only has its state written; any other (a status report,
        a job of the previous process) is written whole, inserted if it is new.
        """
        if self._abandoned and job.id in self._abandoned:
            self._abandoned.discard(job.id)
            for waiter in self._final_waiters.pop(job.id, ()):
                _resolve(waiter, True)
            return
        job.updated_at = self._clock()
        if job.id in self._live:
            self._submit(_Op(state=_state(job)))
        else:
            self._submit(_Op(write=_row(job)))
            self._count_new_row()
        if job.final:
            self._live.pop(job.id, None)
            self._remember(job)
            for waiter in self._final_waiters.pop(job.id, ()):
                _resolve(waiter, True)

    def resume(self, job: Job) -> None:
        """Take back a job from the previous process to run it again."""
        job.status = JobStatus.RUNNING
        job.results.clear()
        self._live[job.id] = job
        self.save(job)

    def _remember(self, job: Job) -> None:
        self._recent[job.id] = _finished(job)
        if len(self._recent) > self._recent_cache_size:
            self._recent.popitem(last=False)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        await self._query(lambda conn: None)

    # --- reads -------------------------------------------------------------------------------

    def owner_of(self, job_id: str) -> str | None:
        """The client of a live or recent job (``None`` when not in memory)."""
        job = self._cached(job_id)
        return job.client if job is not None else None

    def _cached(self, job_id: str) -> JobRecord | None:
        live = self._live.get(job_id)
        if live is not None:
            return live
        finished = self._recent.get(job_id)
        return FinishedJob(job_id, finished) if finished is not None else None

    async def get_many(self, client: str, ids: Sequence[str]) -> list[JobRecord]:
        """Jobs of ``client`` among ``ids``, in request order; unknown ids are left out."""
        found: dict[str, JobRecord] = {}
        missing: list[str] = []
        for job_id in dict.fromkeys(ids):
            job = self._cached(job_id)
            if job is None:
                missing.append(job_id)
            elif job.client == client:
                found[job_id] = job
        if missing:
            for job in await self._query(lambda conn: _select_ids(conn, client, missing)):
                found[job.id] = job
        return [found[i] for i in ids if i in found]

    async def list_ids(self, client: str, pending: bool | None) -> list[str]:
        """Ids of ``client``'s jobs: running ones first, then finished ones, oldest first."""

        def query(conn: sqlite3.Connection) -> list[str]:
            running = _ids(conn, _RUNNING_IDS, client)
            if pending is True:
                return running
            finished = _ids(conn, _FINISHED_IDS, client)
            return finished if pending is False else running + finished

        return await self._query(query)

    async def page_ids(
        self, client: str, pending: bool | None, limit: int, after: IdCursor | None = None
    ) -> tuple[list[str], IdCursor | None]:
        """Up to ``limit`` of ``client``'s job ids in creation order after ``after``, and the
        cursor of the next page (``None`` when this one is the last). Walks the client's
        index from the cursor, so a page costs the same wherever it is in a long history."""
        status = {None: "", True: " AND status = 'running'", False: " AND status != 'running'"}
        sql = (
            "SELECT id, created_at, rowid FROM jobs INDEXED BY jobs_of_client WHERE client = ?"
            " AND created_at >= ? AND (created_at > ? OR rowid > ?)"
            f"{status[pending]} ORDER BY created_at, rowid LIMIT ?"
        )
        at, rowid = after if after is not None else (float("-inf"), 0)

        def query(conn: sqlite3.Connection) -> list[tuple[str, float, int]]:
            return conn.execute(sql, (client, at, at, rowid, limit + 1)).fetchall()

        rows = await self._query(query)
        more = len(rows) > limit
        rows = rows[:limit]
        return [r[0] for r in rows], ((rows[-1][1], rows[-1][2]) if more else None)

    async def recent(self, limit: int) -> list[tuple[str, str, list[str], float, float]]:
        """The newest ``limit`` jobs of every client, newest first, for the status page: id,
        status, containers, created and updated times; never a job's input or results."""

        def query(conn: sqlite3.Connection) -> list[tuple[str, str, list[str], float, float]]:
            rows = conn.execute(
                "SELECT id, status, containers, created_at, updated_at FROM jobs"
                " ORDER BY rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [(r[0], r[1], orjson.loads(r[2]), r[3], r[4]) for r in rows]

        return await self._query(query)

    async def wait_final(
        self, job_ids: Sequence[str], timeout: float, *, until: Literal["all", "any"] = "all"
    ) -> None:
        """Long-poll: return once every listed job is final (``until="all"``) or one of them
        is (``"any"``, for a client that collects many results with one request), or when
        ``timeout`` passes. Ids that are not running here count as final."""
        if timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        unique = list(dict.fromkeys(job_ids))
        if until == "any":
            await self._wait_any(unique, deadline)
            return
        for job_id in unique:
            if not await self._wait_any([job_id], deadline):
                return

    async def _wait_any(self, job_ids: list[str], deadline: float) -> bool:
        """True once one of ``job_ids`` is final, False at ``deadline``."""
        live = [i for i in job_ids if i in self._live]
        if len(live) < len(job_ids):
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        for job_id in live:
            self._final_waiters.setdefault(job_id, []).append(waiter)
        # A timer handle, not asyncio.timeout(): this runs for every GET of a job result.
        timer = loop.call_at(deadline, _resolve, waiter, False)
        try:
            return await waiter
        finally:
            timer.cancel()
            for job_id in live:
                waiters = self._final_waiters.get(job_id)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._final_waiters[job_id]

    def running_count(self) -> int:
        return len(self._live)

    # --- recovery and retention --------------------------------------------------------------

    def retain(self, max_age: float, max_count: int) -> None:
        """Keep at most ``max_count`` finished jobs (plus ``retention_slack``) at all times:
        a pass runs whenever that many new rows arrived since the last one, not just when
        the periodic pass (for ``max_age``) comes round."""
        self._retention = (max_age, max_count)
        self._prune_every = retention_slack(max_count)

    def _count_new_row(self) -> None:
        self._since_prune += 1
        if self._prune_every and self._since_prune >= self._prune_every:
            self._prune_soon()

    def _prune_soon(self) -> None:
        if self._pruning is not None or self._retention is None or self._closed:
            return
        if self._writer.failure is not None or self._writer.loop is None:
            return
        max_age, max_count = self._retention
        self._pruning = self._writer.loop.create_task(
            self.prune(max_age, max_count), name="job-retention-by-count"
        )
        self._pruning.add_done_callback(self._pruned)

    def _pruned(self, task: asyncio.Task[int]) -> None:
        self._pruning = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("job_retention_failed", error=repr(exc)[:300])
        elif task.result():
            log.info("jobs_pruned", removed=task.result(), trigger="count")
        if self._prune_every and self._since_prune >= self._prune_every:
            self._prune_soon()  # more arrived during the pass

    async def interrupted_jobs(self) -> list[Job]:
        """Jobs left ``running`` by the previous process (it crashed or was killed)."""
        return await self._query(
            lambda conn: [
                _job(r)
                for r in conn.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE status = 'running' ORDER BY created_at"
                )
            ]
        )

    def fail_interrupted(self, jobs: Iterable[Job]) -> int:
        count = 0
        for job in jobs:
            container = (
                job.containers[len(job.results)]
                if len(job.results) < len(job.containers)
                else job.containers[-1]
            )
            job.results.append(ContainerResult(container=container, error=INTERRUPTED_ERROR))
            job.status = JobStatus.FAILED
            self.save(job)
            count += 1
        return count

    async def prune(self, max_age: float, max_count: int) -> int:
        """Drop finished jobs older than ``max_age`` seconds and beyond the newest ``max_count``.

        Rows are found in rowid order, which is the order they were created, instead of through
        an index by age that every new job would have to write: finding them reads only the
        running jobs (few) and the first young row. They are deleted ``PRUNE_CHUNK`` at a time,
        one writer batch each, so new jobs' commits go on in between (a minute of jobs at full
        load is ~360,000 rows, ~0.4 s of deleting). A clock that jumped back only delays the
        removal of the rows created after the jump."""
        cutoff = self._clock() - max_age
        self._since_prune = 0

        def last_to_drop(conn: sqlite3.Connection) -> int:
            """The highest rowid whose finished job goes (0: none)."""
            lo, hi = conn.execute(
                # Two subqueries: SQLite answers a lone min() or max() from the b-tree's edge,
                # but scans the whole table for an expression that holds both.
                "SELECT (SELECT min(rowid) FROM jobs), (SELECT max(rowid) FROM jobs)"
            ).fetchone()
            if lo is None:
                return 0
            first_young = conn.execute(
                "SELECT rowid FROM jobs WHERE created_at >= ? ORDER BY rowid LIMIT 1", (cutoff,)
            ).fetchone()
            last = first_young[0] - 1 if first_young else hi
            if hi - lo + 1 > max_count:  # more rows than max_count fit
                # Rows only ever leave from the old end, so the newest rowids have no gaps:
                # the newest max_count of them, widened by one for each running job inside,
                # hold exactly the finished jobs to keep.
                keep_above = hi - max_count
                for (rowid,) in conn.execute(
                    "SELECT rowid FROM jobs WHERE status = 'running' ORDER BY rowid DESC"
                ):
                    if rowid <= keep_above:
                        break
                    keep_above -= 1
                last = max(last, keep_above)
            return int(last)

        last = await self._query(last_to_drop)

        def drop_chunk(conn: sqlite3.Connection) -> list[str]:
            return [
                r[0]
                for r in conn.execute(
                    "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs"
                    " WHERE rowid <= ? AND status != 'running' ORDER BY rowid LIMIT ?)"
                    " RETURNING id",
                    (last, PRUNE_CHUNK),
                )
            ]

        removed = 0
        while last > 0:
            dropped = await self._query(drop_chunk)
            removed += len(dropped)
            recent = self._recent
            for job_id in dropped:  # a deleted job is not readable from memory either
                recent.pop(job_id, None)
            if len(dropped) < PRUNE_CHUNK:
                break
        if removed:
            await self._query(_release_free_pages)
        return removed

    @property
    def commit_batches(self) -> int:
        return self._writer.batches


def _release_free_pages(conn: sqlite3.Connection) -> int:
    """Give the file system back free pages beyond ``FREE_PAGES_KEPT`` (databases created
    with auto_vacuum=INCREMENTAL; older ones reuse them for new rows instead)."""
    (auto_vacuum,) = conn.execute("PRAGMA auto_vacuum").fetchone()
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    if auto_vacuum != 2 or free <= 2 * FREE_PAGES_KEPT:
        return 0
    # One page per statement: Python's sqlite3 steps a pragma that returns no rows once,
    # and each step frees one page (~8 µs). At most PAGES_RELEASED_PER_PASS, so the commits
    # queued behind this batch wait a few ms at most; the next pass takes more.
    count = min(int(free) - FREE_PAGES_KEPT, PAGES_RELEASED_PER_PASS)
    for _ in range(count):
        conn.execute("PRAGMA incremental_vacuum(1)")
    return count


def _select_ids(conn: sqlite3.Connection, client: str, ids: Sequence[str]) -> list[Job]:
    jobs: list[Job] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE client = ? AND id IN ({marks})",
            (client, *chunk),
        )
        jobs.extend(_job(r) for r in rows)
    return jobs


# Running jobs are few (bounded by admission), so their tiny index beats the client's.
_RUNNING_IDS = (
    "SELECT id FROM jobs INDEXED BY jobs_running WHERE status = 'running' AND client = ?"
    " ORDER BY created_at"
)
_FINISHED_IDS = (
    "SELECT id FROM jobs INDEXED BY jobs_of_client WHERE client = ? AND status != 'running'"
    " ORDER BY created_at"
)


def _ids(conn: sqlite3.Connection, sql: str, client: str) -> list[str]:
    return [r[0] for r in conn.execute(sql, (client,))]
