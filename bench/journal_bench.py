"""Chain journal growth: 100,000 delivered intervals, with and without retention and indexes.

Simulates a node that delivers ``per_round`` intervals per round (one round = one hour of a
fake clock) for ``subscriptions`` tracked subscriptions, with a few deliveries always in flight,
and after each round measures what the node pays for its history:

- ``rows``/``txs``: rows left in ``deliveries``/``txs``;
- ``handled`` and ``handled_kib``: the set ``ChainService`` loads at start (entries, bytes traced);
- ``unconfirmed_steps``: SQLite VM steps (x100) of the confirm loop's query, a deterministic cost;
- ``unconfirmed_ms``: its median wall time (5 runs);
- ``live_kib``: database pages in use (file size minus free pages).

Variants: ``retention`` (``Journal.prune`` after each round, ``keep_rounds`` of history),
``no_retention`` (indexes, no pruning), ``before`` (no pruning, no indexes, the confirm loop's
query as it was before: SQLite walked every transaction).

    .venv/bin/python bench/journal_bench.py [--rounds 10 --per-round 10000]

Writes ``bench/results/journal-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node_agent.chain import journal as jr  # noqa: E402

HOUR = 3600.0
START = 1_700_000_000.0  # the fake clock's origin; rows in flight use the real clock
SUB = {"owner": "0x" + "11" * 20, "container_id": "0x" + "22" * 32}
IN_FLIGHT = 10
INDEXES = ("deliveries_sent", "deliveries_final_age", "txs_delivery", "txs_nonce")
BEFORE = """
SELECT t.tx_hash, t.sub_key, t.interval, t.nonce, t.raw, t.gas, t.max_fee, t.priority_fee,
    t.sent_at FROM txs t JOIN deliveries d ON d.sub_key=t.sub_key AND d.interval=t.interval
WHERE d.state='sent' ORDER BY t.nonce, t.sent_at
"""


@dataclass
class Round:
    delivered: int  # intervals delivered so far
    pruned: int
    rows: int
    txs: int
    handled: int
    handled_kib: float
    unconfirmed_steps: int
    unconfirmed_ms: float
    live_kib: float


def _deliver(db: sqlite3.Connection, subs: int, first: int, count: int, at: float) -> None:
    """``count`` confirmed deliveries (one tx each), intervals from ``first`` on, round-robin."""
    deliveries, txs = [], []
    for n in range(count):
        sub_id, interval = 1 + n % subs, first + n // subs
        key = f"s:{sub_id}"
        deliveries.append((key, interval, jr.CONFIRMED, at))
        txs.append((f"0x{sub_id:08x}{interval:056x}", key, interval, 0, "00" * 120, at))
    with db:
        db.executemany(
            "INSERT INTO deliveries(sub_key, interval, state, attempts, updated)"
            " VALUES(?, ?, ?, 0, ?)",
            deliveries,
        )
        db.executemany(
            "INSERT INTO txs(tx_hash, sub_key, interval, nonce, raw, gas, max_fee, priority_fee,"
            " sent_at) VALUES(?, ?, ?, ?, ?, 100000, 1, 1, ?)",
            txs,
        )


def _steps(db: sqlite3.Connection, sql: str) -> int:
    """SQLite VM steps (in thousands) one run of ``sql`` takes: its cost, free of timing noise."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    db.set_progress_handler(tick, 100)
    db.execute(sql).fetchall()
    db.set_progress_handler(None, 0)
    return count


async def simulate(
    path: Path,
    *,
    subscriptions: int = 1000,
    rounds: int = 10,
    per_round: int = 10_000,
    keep_rounds: int = 2,
    retention: bool = True,
    before: bool = False,
) -> list[Round]:
    """Deliver ``rounds * per_round`` intervals into a real journal; measure each round."""
    journal = jr.Journal(path)
    await journal.open()
    side = sqlite3.connect(path)  # bulk writes and instrumentation, beside the journal's own
    try:
        await journal.save_subscriptions([(i, SUB, ("echo",)) for i in range(1, subscriptions + 1)])
        for n in range(IN_FLIGHT):
            await journal.record_tx(
                jr.TxRecord(f"0xsent{n}", f"s:{n + 1}", 10**6, n, b"\x00", 1, 1, 1, time.time())
            )
        if before:
            with side:
                for name in INDEXES:
                    side.execute(f"DROP INDEX {name}")
        out: list[Round] = []
        per_sub = per_round // subscriptions
        for number in range(rounds):
            now = START + number * HOUR
            _deliver(side, subscriptions, 1 + number * per_sub, per_round, now)
            pruned = 0
            if retention:
                cutoff = now - keep_rounds * HOUR + 1
                while len(batch := await journal.prune(cutoff, 5000)) == 5000:
                    pruned += len(batch)
                pruned += len(batch)
            tracemalloc.start()
            handled = await journal.load_handled(3)
            handled_bytes = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            assert len(await journal.unconfirmed()) == IN_FLIGHT
            query = BEFORE if before else jr.UNCONFIRMED
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                side.execute(query).fetchall()
                timings.append((time.perf_counter() - started) * 1000)
            pages = side.execute("PRAGMA page_count").fetchone()[0]
            free = side.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = side.execute("PRAGMA page_size").fetchone()[0]
            out.append(
                Round(
                    delivered=(number + 1) * per_round,
                    pruned=pruned,
                    rows=side.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0],
                    txs=side.execute("SELECT COUNT(*) FROM txs").fetchone()[0],
                    handled=len(handled),
                    handled_kib=round(handled_bytes / 1024, 1),
                    unconfirmed_steps=_steps(side, query),
                    unconfirmed_ms=round(statistics.median(timings), 3),
                    live_kib=round((pages - free) * page_size / 1024, 1),
                )
            )
        return out
    finally:
        side.close()
        await journal.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=10_000)
    parser.add_argument("--subscriptions", type=int, default=1000)
    args = parser.parse_args()
    variants = {
        "retention": {"retention": True},
        "no_retention": {"retention": False},
        "before": {"retention": False, "before": True},
    }
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in variants.items():
            rounds = await simulate(
                Path(tmp) / f"{name}.sqlite",
                subscriptions=args.subscriptions,
                rounds=args.rounds,
                per_round=args.per_round,
                **options,
            )
            results[name] = [asdict(r) for r in rounds]
    columns = list(Round.__dataclass_fields__)
    for name, rows in results.items():
        print(f"\n{name}")
        print(" ".join(f"{c:>17}" for c in columns))
        for row in rows:
            print(" ".join(f"{row[c]:>17}" for c in columns))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = ROOT / "bench" / "results" / f"journal-{stamp}.json"
    target.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(f"\nwritten: {target.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
