"""The chain journal stays bounded over months: retention after finality, indexed queries.

No chain: a real SQLite journal. The 100,000-interval run is ``bench/journal_bench.py``'s
simulation (the benchmark prints timings; here only deterministic measures are asserted).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, cast

from chain_support import KEYS, node_config

from bench.journal_bench import simulate
from node_agent.chain import journal as jr
from node_agent.chain.journal import Journal, TxRecord
from node_agent.chain.service import ChainService

SUB = {"owner": "0x" + "11" * 20}
OWNER = "0x" + "AB" * 20
ZERO = "0x" + "00" * 20


def tx(key: str, interval: int, nonce: int) -> TxRecord:
    return TxRecord(f"0x{nonce:064x}", key, interval, nonce, b"\x01", 21000, 1, 1, 0.0)


async def history(path: Path) -> Journal:
    """Tracked s:1 and s:3, untracked s:2, a pending and a created delegated subscription."""
    journal = Journal(path)
    await journal.open()
    await journal.save_subscriptions([(1, SUB, ("echo",)), (3, SUB, ("echo",))])
    for nonce, interval in enumerate((1, 2, 3)):
        await journal.record_tx(tx("s:1", interval, nonce))
        await journal.mark("s:1", interval, jr.CONFIRMED)
    await journal.record_tx(tx("s:3", 1, 3))  # in flight: never pruned, however old
    for interval in (1, 2):
        await journal.mark("s:2", interval, jr.CONFIRMED)
    await journal.mark("s:2", 5, jr.FAILED, "container error")
    await journal.add_delegated(OWNER, 1, {}, ("echo",))
    await journal.add_delegated(OWNER, 2, {}, ("echo",))
    await journal.set_delegated_state(OWNER, 2, "created", 7)
    await journal.mark(f"d:{OWNER.lower()}:1", 1, jr.SKIPPED, "IntervalMismatch")
    await journal.mark(f"d:{OWNER.lower()}:2", 1, jr.CONFIRMED)
    with sqlite3.connect(path) as side:
        side.execute("UPDATE deliveries SET updated = 1000")  # all of it old ...
    await journal.mark("s:2", 6, jr.CONFIRMED)  # ... but this one
    return journal


async def test_prune_deletes_only_what_nothing_can_ask_about_again(tmp_path: Path) -> None:
    journal = await history(tmp_path / "chain.sqlite")
    try:
        pruned: list[tuple[str, int]] = []
        while len(batch := await journal.prune(cutoff=2000, limit=2)) == 2:
            pruned += batch
        pruned += batch
        assert sorted(pruned) == [
            (f"d:{OWNER.lower()}:2", 1),  # delegated, no longer pending
            ("s:1", 1),  # tracked, but not its latest interval
            ("s:1", 2),
            ("s:2", 1),  # not tracked
            ("s:2", 2),
            ("s:2", 5),  # a failure with attempts left counts as final once old
        ]
        left = {(key, interval): state for key, interval, state, _ in await journal.deliveries()}
        assert left == {
            ("s:1", 3): jr.CONFIRMED,  # latest interval of a tracked subscription
            ("s:3", 1): jr.SENT,
            ("s:2", 6): jr.CONFIRMED,  # newer than the cutoff
            (f"d:{OWNER.lower()}:1", 1): jr.SKIPPED,  # latest of a pending delegated one
        }
        with sqlite3.connect(tmp_path / "chain.sqlite") as side:
            txs = side.execute("SELECT sub_key, interval FROM txs ORDER BY nonce").fetchall()
        assert txs == [("s:1", 3), ("s:3", 1)]
        assert list(await journal.unconfirmed()) == [("s:3", 1)]
        assert await journal.max_nonce() == 3
        assert await journal.prune(cutoff=2000) == []  # nothing left to find
    finally:
        await journal.close()


async def test_service_forgets_pruned_deliveries_in_memory_too(tmp_path: Path) -> None:
    config = node_config(ZERO, KEYS[1], "http://127.0.0.1:9", tmp_path)
    node = ChainService(config, tmp_path, cast(Any, None))
    node.journal = await history(tmp_path / "chain.sqlite")
    try:
        node._handled = await node.journal.load_handled(node.onchain.max_attempts)
        assert len(node._handled) == 9  # all but the failure with attempts left
        assert await node.prune(2000) == 6
        assert node._handled == {
            ("s:1", 3),
            ("s:3", 1),
            ("s:2", 6),
            (f"d:{OWNER.lower()}:1", 1),
        }
        assert node._handled == await node.journal.load_handled(node.onchain.max_attempts)
    finally:
        await node.journal.close()
        await node.rpc.close()


async def test_confirm_query_reads_deliveries_in_flight_only(tmp_path: Path) -> None:
    journal = await history(tmp_path / "chain.sqlite")
    await journal.close()
    with sqlite3.connect(tmp_path / "chain.sqlite") as side:
        plan = [row[3] for row in side.execute("EXPLAIN QUERY PLAN " + jr.UNCONFIRMED)]
    assert plan[0] == "SCAN d USING INDEX deliveries_sent"  # the partial index: SENT rows only
    assert plan[1].startswith("SEARCH t USING INDEX txs_delivery")


async def test_100k_delivered_intervals_keep_the_journal_and_memory_flat(tmp_path: Path) -> None:
    """1,000 subscriptions, 10 rounds of 10,000 delivered intervals, 2 rounds kept."""
    rounds = await simulate(tmp_path / "chain.sqlite", rounds=10, per_round=10_000, keep_rounds=2)
    for r in rounds:
        print(r)  # the figures, for the log (-s)
    assert rounds[-1].delivered == 100_000
    steady = rounds[2:]
    assert {(r.rows, r.txs, r.handled) for r in steady} == {(20_010, 20_010, 20_010)}
    assert all(r.pruned == 10_000 for r in steady)
    # The confirm loop's cost follows the 10 deliveries in flight, never the history.
    assert max(r.unconfirmed_steps for r in rounds) <= 5
    # Pruned pages are reused: the live database stops growing once retention kicks in.
    assert steady[-1].live_kib <= steady[0].live_kib * 1.1
    # The handled set a restart loads stays the size of the retention window.
    assert steady[-1].handled_kib <= steady[0].handled_kib * 1.1
