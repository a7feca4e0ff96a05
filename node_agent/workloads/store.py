"""Workload records and the outbox (callbacks, orchestrator status reports) in SQLite.

Workloads are few (minutes-long jobs, not thousands a second), so a single worker thread owns
one connection and runs each call as its own transaction: a status change and the outbox rows
it causes commit together, so a callback is never lost nor sent for a status that was not
stored. The event loop never touches SQLite.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from node_agent import jsonpolicy
from node_agent.errors import BadRequest, StoreError
from node_agent.workloads.model import FINAL, Workload, WorkloadStatus

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS workloads (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    origin TEXT NOT NULL,
    grid_job_id TEXT,
    draft TEXT NOT NULL,
    callback_token TEXT,
    gpus TEXT NOT NULL DEFAULT '[]',
    container_id TEXT,
    exit_code INTEGER,
    error TEXT,
    started_at REAL,
    finished_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress TEXT,
    ports TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS workloads_by_owner ON workloads (owner, seq);
CREATE INDEX IF NOT EXISTS workloads_open ON workloads (status) WHERE status NOT IN
    ('succeeded', 'failed', 'cancelled');
CREATE UNIQUE INDEX IF NOT EXISTS workloads_by_grid_id ON workloads (grid_job_id)
    WHERE grid_job_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    job_id TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    done_at REAL,
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at) WHERE done_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_by_job ON outbox (job_id);
"""

COLUMNS = (
    "seq, id, owner, status, created_at, updated_at, origin, grid_job_id, draft, callback_token,"
    " gpus, container_id, exit_code, error, started_at, finished_at, cancel_requested,"
    " progress, ports"
)
# Fields a status change may set, and how each is stored.
_JSON_FIELDS = {"gpus", "progress", "ports"}
_UPDATABLE = {
    "gpus",
    "container_id",
    "exit_code",
    "error",
    "started_at",
    "finished_at",
    "cancel_requested",
    "progress",
    "ports",
}


@dataclass(frozen=True)
class OutboxItem:
    id: int
    kind: str
    job_id: str
    status: str
    body: dict[str, Any]
    attempts: int
    callback_token: str | None


def _row_to_workload(row: tuple[Any, ...]) -> Workload:
    (seq, id_, owner, status, created, updated, origin, grid_id, draft, token, gpus, cid) = row[:12]
    (exit_code, error, started, finished, cancel, progress, ports) = row[12:]
    return Workload(
        id=id_,
        owner=owner,
        draft=jsonpolicy.loads(draft),
        status=WorkloadStatus(status),
        created_at=created,
        updated_at=updated,
        origin=origin,
        grid_job_id=grid_id,
        callback_token=token,
        gpus=jsonpolicy.loads(gpus),
        container_id=cid,
        exit_code=exit_code,
        error=error,
        started_at=started,
        finished_at=finished,
        cancel_requested=bool(cancel),
        progress=jsonpolicy.loads(progress) if progress else None,
        ports=jsonpolicy.loads(ports),
        seq=seq,
    )


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"w1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, seq = raw.partition(":")
        if prefix != "w1":
            raise ValueError
        return int(seq)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(
            "Invalid query parameter", {"param": "cursor", "problem": "not a cursor this node gave"}
        ) from None


class WorkloadStore:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="workloads-db")
        self._db: sqlite3.Connection | None = None

    # --- plumbing ----------------------------------------------------------------------------

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._db is not None, "store not open"
            try:
                with self._db:  # one transaction per call
                    return fn(self._db)
            except sqlite3.Error as exc:
                raise StoreError("Workload store error", {"problem": str(exc)}) from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def open(self) -> None:
        def connect() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level="DEFERRED")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            # The WAL is reset at each checkpoint; this also shrinks its file back afterwards.
            db.execute("PRAGMA journal_size_limit=16777216")
            db.executescript(SCHEMA)
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)

    # --- workloads ---------------------------------------------------------------------------

    async def create(self, job: Workload) -> Workload:
        def insert(db: sqlite3.Connection) -> Workload:
            cur = db.execute(
                "INSERT INTO workloads (id, owner, status, created_at, updated_at, origin,"
                " grid_job_id, draft, callback_token) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    job.id,
                    job.owner,
                    job.status.value,
                    job.created_at,
                    job.updated_at,
                    job.origin,
                    job.grid_job_id,
                    jsonpolicy.dumps(job.draft).decode(),
                    job.callback_token,
                ),
            )
            job.seq = int(cur.lastrowid or 0)
            return job

        return await self._call(insert)

    async def update(
        self,
        job: Workload,
        status: WorkloadStatus | None = None,
        *,
        outbox: Iterable[tuple[str, dict[str, Any]]] = (),
        **fields: Any,
    ) -> None:
        """Write a status change (and/or fields) with its outbox rows in one transaction, then
        apply it to ``job`` (the in-memory record follows the disk, never leads it)."""
        unknown = set(fields) - _UPDATABLE
        assert not unknown, f"not updatable: {unknown}"
        now = self.clock()
        values: dict[str, Any] = {"updated_at": now, **fields}
        if status is not None:
            values["status"] = status.value
        sets = ", ".join(f"{k} = ?" for k in values)
        params = [
            jsonpolicy.dumps(v).decode() if k in _JSON_FIELDS and v is not None else v
            for k, v in values.items()
        ]
        rows = [
            (kind, job.id, (status or job.status).value, jsonpolicy.dumps(body).decode(), now, now)
            for kind, body in outbox
        ]

        def write(db: sqlite3.Connection) -> None:
            db.execute(f"UPDATE workloads SET {sets} WHERE id = ?", (*params, job.id))
            if rows:
                db.executemany(
                    "INSERT INTO outbox (kind, job_id, status, body, created_at, next_at)"
                    " VALUES (?,?,?,?,?,?)",
                    rows,
                )

        await self._call(write)
        job.updated_at = now
        if status is not None:
            job.status = status
        for key, value in fields.items():
            setattr(job, key, bool(value) if key == "cancel_requested" else value)

    async def get(self, job_id: str) -> Workload | None:
        return await self._one("id", job_id)

    async def by_grid_id(self, grid_job_id: str) -> Workload | None:
        """A pulled job by the orchestrator's id (unique: a job is never taken twice)."""
        return await self._one("grid_job_id", grid_job_id)

    async def _one(self, column: str, value: str) -> Workload | None:
        assert column in ("id", "grid_job_id")  # both have a unique index

        def read(db: sqlite3.Connection) -> Workload | None:
            row = db.execute(
                f"SELECT {COLUMNS} FROM workloads WHERE {column} = ?",
                (value,),
            ).fetchone()
            return _row_to_workload(row) if row else None

        return await self._call(read)

    async def page(
        self, owner: str, *, limit: int, before_seq: int | None
    ) -> tuple[list[Workload], int | None]:
        """The owner's jobs, newest first; returns the page and the cursor of the next one."""

        def read(db: sqlite3.Connection) -> tuple[list[Workload], int | None]:
            bound = before_seq if before_seq is not None else 2**62
            rows = db.execute(
                f"SELECT {COLUMNS} FROM workloads WHERE owner = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?",
                (owner, bound, limit + 1),
            ).fetchall()
            jobs = [_row_to_workload(r) for r in rows[:limit]]
            more = len(rows) > limit
            return jobs, (jobs[-1].seq if more and jobs else None)

        return await self._call(read)

    async def recent(self, limit: int) -> list[Workload]:
        """The newest ``limit`` jobs of every owner, newest first (the status page)."""

        def read(db: sqlite3.Connection) -> list[Workload]:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM workloads ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
            return [_row_to_workload(r) for r in rows]

        return await self._call(read)

    async def open_jobs(self) -> list[Workload]:
        """Every job not final yet, oldest first (what a restart must settle or resume)."""

        def read(db: sqlite3.Connection) -> list[Workload]:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM workloads INDEXED BY workloads_open"
                " WHERE status NOT IN ('succeeded', 'failed', 'cancelled') ORDER BY seq"
            ).fetchall()
            return [_row_to_workload(r) for r in rows]

        return await self._call(read)

    async def prune(self, max_age: float, max_count: int) -> list[str]:
        """Drop final jobs older than ``max_age`` or beyond the newest ``max_count``, with their
        delivered outbox rows; returns the ids (their log files go too)."""
        cutoff = self.clock() - max_age
        finals = tuple(s.value for s in FINAL)

        def delete(db: sqlite3.Connection) -> list[str]:
            (total,) = db.execute("SELECT count(*) FROM workloads").fetchone()
            excess = max(0, int(total) - max_count)
            marks = ",".join("?" * len(finals))
            ids = [
                r[0]
                for r in db.execute(
                    f"SELECT id FROM workloads WHERE status IN ({marks})"
                    " AND (updated_at < ? OR seq IN (SELECT seq FROM workloads"
                    f" WHERE status IN ({marks}) ORDER BY seq LIMIT ?)) LIMIT 5000",
                    (*finals, cutoff, *finals, excess),
                ).fetchall()
            ]
            if ids:
                db.executemany("DELETE FROM workloads WHERE id = ?", [(i,) for i in ids])
                db.executemany(
                    "DELETE FROM outbox WHERE job_id = ? AND done_at IS NOT NULL",
                    [(i,) for i in ids],
                )
            db.execute("DELETE FROM outbox WHERE done_at IS NOT NULL AND done_at < ?", (cutoff,))
            return ids

        return await self._call(delete)

    async def counts(self) -> dict[str, int]:
        def read(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute(
                "SELECT status, count(*) FROM workloads INDEXED BY workloads_open"
                " WHERE status NOT IN ('succeeded', 'failed', 'cancelled') GROUP BY status"
            ).fetchall()
            return {str(s): int(n) for s, n in rows}

        return await self._call(read)

    # --- outbox ------------------------------------------------------------------------------

    async def due(self, now: float, limit: int) -> list[OutboxItem]:
        def read(db: sqlite3.Connection) -> list[OutboxItem]:
            rows = db.execute(
                "SELECT o.id, o.kind, o.job_id, o.status, o.body, o.attempts, w.callback_token"
                " FROM outbox o LEFT JOIN workloads w ON w.id = o.job_id"
                " WHERE o.done_at IS NULL AND o.next_at <= ?"
                # In order per job and receiver: a later status waits for an earlier one that
                # is being retried, so a receiver never sees 'failed' before 'running'.
                " AND o.id = (SELECT min(x.id) FROM outbox x WHERE x.job_id = o.job_id"
                " AND x.kind = o.kind AND x.done_at IS NULL)"
                " ORDER BY o.next_at, o.id LIMIT ?",
                (now, limit),
            ).fetchall()
            return [
                OutboxItem(r[0], r[1], r[2], r[3], jsonpolicy.loads(r[4]), r[5], r[6]) for r in rows
            ]

        return await self._call(read)

    async def next_due_at(self) -> float | None:
        def read(db: sqlite3.Connection) -> float | None:
            row = db.execute(
                "SELECT min(next_at) FROM outbox INDEXED BY outbox_due WHERE done_at IS NULL"
            ).fetchone()
            return float(row[0]) if row and row[0] is not None else None

        return await self._call(read)

    async def outbox_done(self, item_id: int, outcome: str, error: str | None = None) -> None:
        now = self.clock()
        await self._call(
            lambda db: db.execute(
                "UPDATE outbox SET done_at = ?, outcome = ?, attempts = attempts + 1,"
                " last_error = ? WHERE id = ?",
                (now, outcome, error, item_id),
            )
        )

    async def outbox_retry(self, item_id: int, next_at: float, error: str) -> None:
        await self._call(
            lambda db: db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ?"
                " WHERE id = ?",
                (next_at, error, item_id),
            )
        )

    async def outbox_of(self, job_id: str) -> list[dict[str, Any]]:
        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT kind, status, attempts, outcome, last_error FROM outbox"
                " WHERE job_id = ? ORDER BY id",
                (job_id,),
            ).fetchall()
            return [
                {"kind": k, "status": s, "attempts": a, "outcome": o, "last_error": e}
                for k, s, a, o, e in rows
            ]

        return await self._call(read)
