"""The chain side's durable state: delivery journal, sync cursor, tracked and delegated subs.

One SQLite file (WAL) in the state directory, used from one dedicated thread so the event loop
never blocks on disk. A transaction is journaled (raw signed bytes included) *before* it is
broadcast: after a crash the node re-broadcasts or confirms it, and never computes that
(subscription, interval) again.

It stays bounded over months (``prune``): a final delivery older than the retention is deleted
with its transactions, except the latest interval of a subscription still served (the only
one the scheduler may still ask about). What is pruned is safe to forget: the scheduler only
looks at current intervals, and the Coordinator itself refuses a second delivery by a node.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Delivery states. Every state but "failed" (with attempts left) means "handled, never again".
SENT = "sent"
CONFIRMED = "confirmed"
REVERTED = "reverted"
SKIPPED = "skipped"
FAILED = "failed"
FINAL_STATES = frozenset({SENT, CONFIRMED, REVERTED, SKIPPED})

# Proof requests: "pending" (delivery sent), "open" (stake locked on-chain), then one final state.
PROOF_PENDING = "pending"
PROOF_OPEN = "open"
PROOF_RELEASED = "released"  # valid, or expired: the consumer's escrow paid to the node
PROOF_SLASHED = "slashed"  # invalid: the node's stake paid to the consumer
PROOF_ABANDONED = "abandoned"  # the delivery never landed: nothing was locked
PROOFS_KEPT = 1000  # final proof requests kept for operators, newest first

# Subscriptions discovery passed over (refused by the guardian, or failed to decode/screen):
# kept for operators, newest first, at most this many rows (anyone can create them on-chain).
SKIPPED_KEPT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions (
    id INTEGER PRIMARY KEY, data TEXT NOT NULL, containers TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS delegated (
    owner TEXT NOT NULL, nonce INTEGER NOT NULL, body TEXT NOT NULL, containers TEXT NOT NULL,
    sub_id INTEGER, state TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (owner, nonce));
CREATE TABLE IF NOT EXISTS deliveries (
    sub_key TEXT NOT NULL, interval INTEGER NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, nonce INTEGER, error TEXT, updated REAL NOT NULL,
    PRIMARY KEY (sub_key, interval));
CREATE TABLE IF NOT EXISTS txs (
    tx_hash TEXT PRIMARY KEY, sub_key TEXT NOT NULL, interval INTEGER NOT NULL,
    nonce INTEGER NOT NULL, raw TEXT NOT NULL, gas INTEGER NOT NULL, max_fee INTEGER NOT NULL,
    priority_fee INTEGER NOT NULL, sent_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS skipped_subscriptions (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL);
-- proof deliveries: the node's stake is locked until the verifier (or the expiry) settles it
CREATE TABLE IF NOT EXISTS proof_requests (
    sub_key TEXT NOT NULL, interval INTEGER NOT NULL, sub_id INTEGER, verifier TEXT NOT NULL,
    token TEXT NOT NULL, stake TEXT NOT NULL, state TEXT NOT NULL, expiry INTEGER,
    sent_block INTEGER NOT NULL, finalize_tx TEXT, finalized_by TEXT, updated REAL NOT NULL,
    PRIMARY KEY (sub_key, interval));
CREATE INDEX IF NOT EXISTS proof_requests_open ON proof_requests(state)
    WHERE state IN ('pending', 'open');
-- unconfirmed() runs every sync period: it reads the few SENT rows, never the whole history
CREATE INDEX IF NOT EXISTS deliveries_sent ON deliveries(sub_key, interval) WHERE state = 'sent';
CREATE INDEX IF NOT EXISTS deliveries_final_age ON deliveries(updated) WHERE state != 'sent';
CREATE INDEX IF NOT EXISTS txs_delivery ON txs(sub_key, interval);
CREATE INDEX IF NOT EXISTS txs_nonce ON txs(nonce);
"""

# Final deliveries older than the cutoff that nothing can ask about again: not the latest
# interval of their subscription, or their subscription is neither tracked nor pending
# (``d:<owner>:<nonce>`` keys: owner is 0x + 40 lower-case hex, so it is characters 3-44), or
# the node's own finalizeProofVerification (``f:<id>``: the proof request keeps what matters).
_PRUNABLE = """
SELECT d.rowid, d.sub_key, d.interval FROM deliveries d
WHERE d.state != 'sent' AND d.updated < :cutoff AND (
    d.interval < (SELECT MAX(m.interval) FROM deliveries m WHERE m.sub_key = d.sub_key)
    OR d.sub_key LIKE 'f:%'
    OR (d.sub_key LIKE 's:%' AND NOT EXISTS (
        SELECT 1 FROM subscriptions s WHERE s.id = CAST(substr(d.sub_key, 3) AS INTEGER)))
    OR (d.sub_key LIKE 'd:%' AND NOT EXISTS (
        SELECT 1 FROM delegated g WHERE g.state = 'pending'
        AND g.owner = substr(d.sub_key, 3, 42)
        AND g.nonce = CAST(substr(d.sub_key, 46) AS INTEGER))))
LIMIT :limit
"""

# The confirm loop's query (every sync period); its cost follows the deliveries in flight, not
# the history: 'sent' is a literal so the partial index deliveries_sent applies, and CROSS JOIN
# keeps deliveries the outer loop (else SQLite walks all txs in nonce order to save a sort).
UNCONFIRMED = """
SELECT t.tx_hash, t.sub_key, t.interval, t.nonce, t.raw, t.gas, t.max_fee, t.priority_fee,
    t.sent_at
FROM deliveries d CROSS JOIN txs t ON t.sub_key = d.sub_key AND t.interval = d.interval
WHERE d.state = 'sent'
ORDER BY t.nonce, t.sent_at
"""


@dataclass(frozen=True)
class TxRecord:
    tx_hash: str
    sub_key: str
    interval: int
    nonce: int
    raw: bytes
    gas: int
    max_fee: int
    priority_fee: int
    sent_at: float


@dataclass(frozen=True)
class SkippedSubscription:
    """A subscription id discovery moved past without tracking it, and why."""

    sub_id: int
    kind: str  # "rejected" (guardian rule) or "failed" (decode/screen raised)
    reason: str


@dataclass(frozen=True)
class ProofRecord:
    """One delivery that asked a verifier: its stake (``paymentAmount`` in ``token``) and fate."""

    sub_key: str
    interval: int
    sub_id: int | None  # unknown until a delegated subscription is created on-chain
    verifier: str
    token: str
    stake: int
    state: str
    expiry: int | None  # block time from which anyone may finalize (in the node's favour)
    sent_block: int  # head when the delivery was sent: where its ProofVerified can be looked for
    finalize_tx: str | None = None  # the node's own finalizeProofVerification, once sent
    finalized_by: str | None = None  # the verifier, or whoever finalized after the expiry
    updated: float = 0.0

    @property
    def job(self) -> tuple[str, int]:
        return self.sub_key, self.interval


_PROOF_COLUMNS = (
    "sub_key, interval, sub_id, verifier, token, stake, state, expiry, sent_block, finalize_tx,"
    " finalized_by, updated"
)


def _proof(row: Any) -> ProofRecord:
    return ProofRecord(
        str(row[0]),
        int(row[1]),
        None if row[2] is None else int(row[2]),
        str(row[3]),
        str(row[4]),
        int(row[5]),
        str(row[6]),
        None if row[7] is None else int(row[7]),
        int(row[8]),
        row[9],
        row[10],
        float(row[11]),
    )


@dataclass(frozen=True)
class DelegatedRecord:
    owner: str
    nonce: int
    body: dict[str, Any]
    containers: tuple[str, ...]
    sub_id: int | None
    state: str


class Journal:
    """Async facade over the SQLite file; every call runs on the journal's own thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain-journal")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def job() -> T:
            assert self._db is not None, "journal not open"
            with self._db:
                return fn(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    async def open(self) -> None:
        def connect() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.isolation_level = "DEFERRED"
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, disconnect)
        self._executor.shutdown(wait=True)

    # --- meta (sync cursor, chain identity) -------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        def q(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(q)

    async def set_meta(self, key: str, value: str) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO meta(key, value) VALUES(?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )
        )

    # --- tracked subscriptions ---------------------------------------------------------------

    async def save_subscriptions(
        self,
        subs: list[tuple[int, dict[str, Any], tuple[str, ...]]],
        cursor: int | None = None,
        skipped: list[SkippedSubscription] | None = None,
    ) -> None:
        """Track subscriptions, record the skipped ones and (atomically) move the sync cursor."""

        def q(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR REPLACE INTO subscriptions(id, data, containers) VALUES(?, ?, ?)",
                [(sid, json.dumps(data), json.dumps(list(chain))) for sid, data, chain in subs],
            )
            if skipped:
                now = time.time()
                db.executemany(
                    "INSERT OR REPLACE INTO skipped_subscriptions(id, kind, reason, at)"
                    " VALUES(?, ?, ?, ?)",
                    [(s.sub_id, s.kind, s.reason, now) for s in skipped],
                )
                db.execute(
                    "DELETE FROM skipped_subscriptions WHERE id <= "
                    "(SELECT id FROM skipped_subscriptions ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (SKIPPED_KEPT,),
                )
            if cursor is not None:
                db.execute(
                    "INSERT INTO meta(key, value) VALUES('sync_cursor', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (str(cursor),),
                )

        await self._run(q)

    async def skipped_subscriptions(self, limit: int = SKIPPED_KEPT) -> list[SkippedSubscription]:
        """The most recently skipped subscriptions, newest (highest id) first."""

        def q(db: sqlite3.Connection) -> list[SkippedSubscription]:
            rows = db.execute(
                "SELECT id, kind, reason FROM skipped_subscriptions ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [SkippedSubscription(int(r[0]), str(r[1]), str(r[2])) for r in rows]

        return await self._run(q)

    async def drop_subscriptions(self, sub_ids: list[int]) -> None:
        """Stop tracking these (one transaction: a burst of one-shot subscriptions ends with
        hundreds finished in one block)."""
        if sub_ids:
            await self._run(
                lambda db: db.executemany(
                    "DELETE FROM subscriptions WHERE id=?", [(i,) for i in sub_ids]
                )
            )

    async def load_subscriptions(self) -> list[tuple[int, dict[str, Any], tuple[str, ...]]]:
        def q(db: sqlite3.Connection) -> list[tuple[int, dict[str, Any], tuple[str, ...]]]:
            rows = db.execute("SELECT id, data, containers FROM subscriptions").fetchall()
            return [(int(r[0]), json.loads(r[1]), tuple(json.loads(r[2]))) for r in rows]

        return await self._run(q)

    # --- delegated subscriptions -------------------------------------------------------------

    async def add_delegated(
        self, owner: str, nonce: int, body: dict[str, Any], containers: tuple[str, ...]
    ) -> bool:
        """Persist an accepted delegated subscription; False if (owner, nonce) is known."""

        def q(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT OR IGNORE INTO delegated(owner, nonce, body, containers, sub_id, state,"
                " created) VALUES(?, ?, ?, ?, NULL, 'pending', ?)",
                (owner.lower(), nonce, json.dumps(body), json.dumps(list(containers)), time.time()),
            )
            return cursor.rowcount == 1

        return await self._run(q)

    async def set_delegated_state(
        self, owner: str, nonce: int, state: str, sub_id: int | None = None
    ) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE delegated SET state=?, sub_id=COALESCE(?, sub_id)"
                " WHERE owner=? AND nonce=?",
                (state, sub_id, owner.lower(), nonce),
            )
        )

    async def load_delegated(self, states: tuple[str, ...] = ("pending",)) -> list[DelegatedRecord]:
        def q(db: sqlite3.Connection) -> list[DelegatedRecord]:
            marks = ",".join("?" * len(states))
            rows = db.execute(
                "SELECT owner, nonce, body, containers, sub_id, state FROM delegated "
                f"WHERE state IN ({marks}) ORDER BY created",
                states,
            ).fetchall()
            return [
                DelegatedRecord(
                    str(r[0]), int(r[1]), json.loads(r[2]), tuple(json.loads(r[3])), r[4], str(r[5])
                )
                for r in rows
            ]

        return await self._run(q)

    # --- deliveries --------------------------------------------------------------------------

    async def load_handled(self, max_attempts: int) -> set[tuple[str, int]]:
        """Every (sub_key, interval) that must not be computed again."""

        def q(db: sqlite3.Connection) -> set[tuple[str, int]]:
            rows = db.execute(
                "SELECT sub_key, interval FROM deliveries WHERE state != ? OR attempts >= ?",
                (FAILED, max_attempts),
            ).fetchall()
            return {(str(r[0]), int(r[1])) for r in rows}

        return await self._run(q)

    async def mark(self, sub_key: str, interval: int, state: str, error: str | None = None) -> int:
        """Set a delivery's state (failures count attempts); returns the attempt count."""

        def q(db: sqlite3.Connection) -> int:
            bump = 1 if state == FAILED else 0
            db.execute(
                "INSERT INTO deliveries(sub_key, interval, state, attempts, error, updated) "
                "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(sub_key, interval) DO UPDATE SET "
                "state=excluded.state, attempts=attempts+?, error=excluded.error, "
                "updated=excluded.updated",
                (sub_key, interval, state, bump, error, time.time(), bump),
            )
            row = db.execute(
                "SELECT attempts FROM deliveries WHERE sub_key=? AND interval=?",
                (sub_key, interval),
            ).fetchone()
            return int(row[0])

        return await self._run(q)

    async def mark_final(self, finals: list[tuple[str, int, str]]) -> None:
        """Set (sub_key, interval) -> final state for many deliveries in one transaction (what
        one block confirmed, in a burst a hundred or more)."""

        def q(db: sqlite3.Connection) -> None:
            now = time.time()
            db.executemany(
                "UPDATE deliveries SET state=?, updated=? WHERE sub_key=? AND interval=?",
                [(state, now, key, interval) for key, interval, state in finals],
            )

        if finals:
            await self._run(q)

    async def record_tx(self, tx: TxRecord) -> None:
        """Journal a signed transaction (and its delivery as SENT) before broadcasting it."""
        await self.record_txs([tx])

    async def record_txs(self, txs: list[TxRecord]) -> None:
        """Journal signed transactions in one SQLite transaction (one disk sync for a whole
        batch of deliveries): all of them or, if it fails, none."""

        def q(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR REPLACE INTO txs(tx_hash, sub_key, interval, nonce, raw, gas, max_fee,"
                " priority_fee, sent_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        tx.tx_hash,
                        tx.sub_key,
                        tx.interval,
                        tx.nonce,
                        tx.raw.hex(),
                        tx.gas,
                        tx.max_fee,
                        tx.priority_fee,
                        tx.sent_at,
                    )
                    for tx in txs
                ],
            )
            now = time.time()
            db.executemany(
                "INSERT INTO deliveries(sub_key, interval, state, attempts, nonce, updated) "
                "VALUES(?, ?, ?, 0, ?, ?) ON CONFLICT(sub_key, interval) DO UPDATE SET "
                "state=excluded.state, nonce=excluded.nonce, updated=excluded.updated",
                [(tx.sub_key, tx.interval, SENT, tx.nonce, now) for tx in txs],
            )

        if txs:
            await self._run(q)

    async def tx_nonces(self, low: int, high: int) -> set[int]:
        """Nonces in ``low..high`` (inclusive) that any journaled transaction uses."""

        def q(db: sqlite3.Connection) -> set[int]:
            rows = db.execute(
                "SELECT DISTINCT nonce FROM txs WHERE nonce BETWEEN ? AND ?", (low, high)
            ).fetchall()
            return {int(r[0]) for r in rows}

        return await self._run(q)

    async def unconfirmed(self) -> dict[tuple[str, int], list[TxRecord]]:
        """Transactions of deliveries still SENT, newest last, grouped by delivery."""

        def q(db: sqlite3.Connection) -> dict[tuple[str, int], list[TxRecord]]:
            rows = db.execute(UNCONFIRMED).fetchall()
            out: dict[tuple[str, int], list[TxRecord]] = {}
            for r in rows:
                record = TxRecord(
                    str(r[0]),
                    str(r[1]),
                    int(r[2]),
                    int(r[3]),
                    bytes.fromhex(r[4]),
                    int(r[5]),
                    int(r[6]),
                    int(r[7]),
                    float(r[8]),
                )
                out.setdefault((record.sub_key, record.interval), []).append(record)
            return out

        return await self._run(q)

    async def prune(self, cutoff: float, limit: int = 5000) -> list[tuple[str, int]]:
        """Delete up to ``limit`` final deliveries (and their txs) last updated before
        ``cutoff`` that nothing can ask about again; returns the (sub_key, interval) deleted.

        One bounded transaction per call: call again while it returns ``limit`` pairs, so
        other journal work is never held up for long.
        """

        def q(db: sqlite3.Connection) -> list[tuple[str, int]]:
            rows = db.execute(_PRUNABLE, {"cutoff": cutoff, "limit": limit}).fetchall()
            db.executemany("DELETE FROM deliveries WHERE rowid=?", [(r[0],) for r in rows])
            db.executemany(
                "DELETE FROM txs WHERE sub_key=? AND interval=?", [(r[1], r[2]) for r in rows]
            )
            return [(str(r[1]), int(r[2])) for r in rows]

        return await self._run(q)

    async def delivery_state(self, sub_key: str, interval: int) -> str | None:
        """A delivery's journaled state, or None when it was never journaled."""

        def q(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT state FROM deliveries WHERE sub_key=? AND interval=?", (sub_key, interval)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(q)

    # --- proof requests ----------------------------------------------------------------------

    async def add_proof_request(self, record: ProofRecord) -> None:
        """Remember a proof delivery before its transaction is journaled (a known one is kept,
        unless it was abandoned: this is a new attempt)."""

        def q(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO proof_requests({_PROOF_COLUMNS})"
                " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sub_key, interval)"
                " DO UPDATE SET state=excluded.state, sent_block=excluded.sent_block,"
                " updated=excluded.updated WHERE proof_requests.state = 'abandoned'",
                (
                    record.sub_key,
                    record.interval,
                    record.sub_id,
                    record.verifier,
                    record.token,
                    str(record.stake),
                    record.state,
                    record.expiry,
                    record.sent_block,
                    record.finalize_tx,
                    record.finalized_by,
                    time.time(),
                ),
            )

        await self._run(q)

    async def update_proof_request(self, record: ProofRecord) -> None:
        """Store a proof request's new state; final ones beyond PROOFS_KEPT are forgotten."""

        def q(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE proof_requests SET sub_id=?, state=?, expiry=?, finalize_tx=?,"
                " finalized_by=?, updated=? WHERE sub_key=? AND interval=?",
                (
                    record.sub_id,
                    record.state,
                    record.expiry,
                    record.finalize_tx,
                    record.finalized_by,
                    time.time(),
                    record.sub_key,
                    record.interval,
                ),
            )
            if record.state not in (PROOF_PENDING, PROOF_OPEN):
                db.execute(
                    "DELETE FROM proof_requests WHERE state NOT IN ('pending', 'open') AND rowid"
                    " NOT IN (SELECT rowid FROM proof_requests WHERE state NOT IN"
                    " ('pending', 'open') ORDER BY updated DESC LIMIT ?)",
                    (PROOFS_KEPT,),
                )

        await self._run(q)

    async def proof_requests(
        self, states: tuple[str, ...] | None = None, limit: int = PROOFS_KEPT
    ) -> list[ProofRecord]:
        """Proof requests (all, or in ``states``), most recently updated first."""

        def q(db: sqlite3.Connection) -> list[ProofRecord]:
            where, params = "", []
            if states is not None:
                where = f" WHERE state IN ({','.join('?' * len(states))})"
                params = list(states)
            rows = db.execute(
                f"SELECT {_PROOF_COLUMNS} FROM proof_requests{where} ORDER BY updated DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
            return [_proof(r) for r in rows]

        return await self._run(q)

    async def proof_counts(self) -> dict[str, int]:
        def q(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute("SELECT state, COUNT(*) FROM proof_requests GROUP BY state")
            return {str(r[0]): int(r[1]) for r in rows.fetchall()}

        return await self._run(q)

    async def max_nonce(self) -> int | None:
        def q(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT MAX(nonce) FROM txs").fetchone()
            return None if row is None or row[0] is None else int(row[0])

        return await self._run(q)

    async def deliveries(self) -> list[tuple[str, int, str, int]]:
        """(sub_key, interval, state, attempts) of every journaled delivery (tests, status)."""

        def q(db: sqlite3.Connection) -> list[tuple[str, int, str, int]]:
            rows = db.execute(
                "SELECT sub_key, interval, state, attempts FROM deliveries ORDER BY updated"
            ).fetchall()
            return [(str(r[0]), int(r[1]), str(r[2]), int(r[3])) for r in rows]

        return await self._run(q)
