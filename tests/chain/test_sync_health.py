"""Discovery never stalls on one subscription, and a failing loop shows in ``checks.chain``.

No chain here: the streak logic is pure, and ``SubscriptionSync`` runs against a scripted RPC
and a real SQLite journal (the anvil versions are in test_hostile_subscriptions.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from chain_support import KEYS, node_config

from node_agent.chain import abi, eip712
from node_agent.chain import journal as jr
from node_agent.chain.guardian import Rejection
from node_agent.chain.health import FailureStreak, chain_health
from node_agent.chain.journal import Journal, SkippedSubscription
from node_agent.chain.rpc import Rpc
from node_agent.chain.service import CONFIRM, SYNC, ChainService
from node_agent.chain.subscription import ZERO_ADDRESS, Subscription
from node_agent.chain.sync import SubscriptionSync

OWNER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ZERO = "0x" + "00" * 20

# --- the streak (pure) ----------------------------------------------------------------------


def test_streak_breaks_at_the_threshold_and_a_success_resets_it() -> None:
    streak = FailureStreak("chain-sync", threshold=3)
    assert not streak.failed("TimeoutError: a") and not streak.broken
    assert not streak.failed("TimeoutError: b")
    assert streak.failed("ChainUnavailable: c")  # True exactly once: when it breaks
    assert streak.broken
    assert not streak.failed("ChainUnavailable: d")  # still broken, not "newly" broken
    assert streak.reason() == "chain-sync failed 4 times in a row: ChainUnavailable: d"
    assert streak.succeeded()  # recovered
    assert not streak.broken and streak.count == 0 and streak.total == 4
    assert not streak.succeeded()  # a success while healthy is no recovery


def test_failures_between_successes_never_break_a_loop() -> None:
    streak = FailureStreak("chain-confirm", threshold=3)
    for _ in range(100):
        streak.failed("TimeoutError")
        streak.failed("TimeoutError")
        streak.succeeded()
    assert not streak.broken and streak.total == 200


def test_chain_health_verdicts() -> None:
    sync, confirm = FailureStreak("chain-sync", 2), FailureStreak("chain-confirm", 2)
    assert chain_health(True, [sync, confirm]) == {"status": "ok"}
    assert chain_health(False, [sync, confirm]) == {"status": "degraded"}
    sync.failed("boom")
    assert chain_health(True, [sync, confirm]) == {"status": "ok"}  # one failure is retried
    sync.failed("boom")
    confirm.failed("x")
    confirm.failed("y")
    verdict = chain_health(True, [sync, confirm])
    assert verdict["status"] == "unhealthy"
    assert verdict["reason"] == (
        "chain-sync failed 2 times in a row: boom; chain-confirm failed 2 times in a row: y"
    )
    assert chain_health(False, [sync])["status"] == "unhealthy"  # worse than not connected
    sync.failed("x" * 1000)
    assert len(chain_health(True, [sync])["reason"]) <= 500


async def test_service_health_follows_its_loops_steps(tmp_path: Path) -> None:
    """The service's step reporter feeds ``health()``: broken after the threshold, then back."""
    config = node_config(ZERO, KEYS[1], "http://127.0.0.1:9", tmp_path)
    node = ChainService(config, tmp_path, cast(Any, None))
    threshold = node._streaks[SYNC].threshold
    for attempt in range(threshold):
        assert node.health()["status"] == "degraded"  # never connected: degraded, not broken
        with pytest.raises(ConnectionError), node._step(SYNC):
            raise ConnectionError(f"refused {attempt}")
    health = node.health()
    assert health["status"] == "unhealthy"
    assert health["reason"] == (
        f"chain-sync failed {threshold} times in a row: ConnectionError: refused {threshold - 1}"
    )
    assert health["loop_failures"][SYNC] == threshold
    with node._step(CONFIRM):
        pass  # another loop's success does not heal the sync loop
    assert node.health()["status"] == "unhealthy"
    with node._step(SYNC):
        pass
    assert node.health()["status"] == "degraded"
    assert "reason" not in node.health()
    await node.rpc.close()


# --- SubscriptionSync over a scripted RPC and a real journal ---------------------------------


def raw_sub(container: str = "echo", owner: str = OWNER) -> tuple[Any, ...]:
    return Subscription(
        owner=owner,
        active_at=1000,
        period=60,
        frequency=2,
        redundancy=1,
        container_id=eip712.container_set_hash([container]),
        lazy=False,
        verifier=ZERO_ADDRESS,
        payment_amount=0,
        payment_token=ZERO_ADDRESS,
        wallet=ZERO_ADDRESS,
    ).to_tuple()


class ScriptedRpc:
    """The three calls discovery makes, answered from a list of raw subscriptions (id 1..n)."""

    def __init__(self, subs: list[tuple[Any, ...]]) -> None:
        self.subs = subs
        self.fail_batches = 0

    async def block_number(self) -> int:
        return 100

    async def eth_call(self, to: str, fn: abi.Function, *args: Any, block: int) -> Any:
        if fn is abi.COORDINATOR_ID:
            return (len(self.subs) + 1,)
        assert fn is abi.READ_SUBSCRIPTION_BATCH
        if self.fail_batches:
            self.fail_batches -= 1
            raise TimeoutError("scripted")
        start, end = args
        return (self.subs[start - 1 : end - 1],)


def screen(sub_id: int, sub: Subscription) -> tuple[tuple[str, ...], Rejection | None]:
    """Like the guardian, with the kinds of trouble a hostile subscription causes."""
    if sub.container_id == eip712.container_set_hash(["paid"]):
        # every key a structured log call might also use
        return ("paid",), Rejection("Invalid payment", {"reason": "pay", "id": 0, "event": "x"})
    if sub.container_id == eip712.container_set_hash(["explodes"]):
        raise KeyError("explodes")
    return ("echo",), None


async def make_sync(tmp_path: Path, rpc: ScriptedRpc, batch_size: int = 2) -> SubscriptionSync:
    journal = Journal(tmp_path / "chain.sqlite")
    await journal.open()
    sync = SubscriptionSync(
        cast(Rpc, rpc),
        journal,
        coordinator=ZERO,
        reader=ZERO,
        screen=screen,
        trail_head_blocks=0,
        batch_size=batch_size,
        starting_sub_id=0,
    )
    await sync.load()
    return sync


async def test_bad_subscriptions_are_recorded_and_passed_over(tmp_path: Path) -> None:
    rpc = ScriptedRpc(
        [
            raw_sub(),  # 1 accepted
            raw_sub("paid"),  # 2 refused by the guardian; its params hold "reason"
            raw_sub("explodes"),  # 3 screening raises
            raw_sub(owner="0xnot-an-address"),  # 4 decoding raises
            raw_sub(owner=ZERO_ADDRESS),  # 5 does not exist: nothing to record
            raw_sub(),  # 6 accepted
        ]
    )
    sync = await make_sync(tmp_path, rpc)
    try:
        accepted = await sync.step()
        assert [sub_id for sub_id, _, _ in accepted] == [1, 6]
        assert sync.cursor == 6 and sync.skipped == 3
        assert await sync.journal.get_meta("sync_cursor") == "6"
        assert [row[0] for row in await sync.journal.load_subscriptions()] == [1, 6]
        skipped = await sync.journal.skipped_subscriptions()
        assert [(s.sub_id, s.kind) for s in skipped] == [
            (4, "failed"),
            (3, "failed"),
            (2, "rejected"),
        ]
        assert skipped[0].reason.startswith("ValueError")
        assert skipped[1].reason == "KeyError: 'explodes'"
        assert skipped[2].reason == 'Invalid payment {"event": "x", "id": 0, "reason": "pay"}'
        assert await sync.step() == []  # nothing is looked at twice
        assert sync.skipped == 3
    finally:
        await sync.journal.close()


async def test_a_failed_batch_keeps_the_cursor_and_is_retried(tmp_path: Path) -> None:
    rpc = ScriptedRpc([raw_sub(), raw_sub("paid"), raw_sub()])
    sync = await make_sync(tmp_path, rpc, batch_size=1)
    try:
        rpc.fail_batches = 1
        with pytest.raises(TimeoutError):
            await sync.step()
        assert sync.cursor == 0 and await sync.journal.get_meta("sync_cursor") is None
        assert [sub_id for sub_id, _, _ in await sync.step()] == [1, 3]
        assert sync.cursor == 3
    finally:
        await sync.journal.close()


async def test_the_skipped_record_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone can create refused subscriptions: the journal keeps the newest few only."""
    monkeypatch.setattr(jr, "SKIPPED_KEPT", 3)
    rpc = ScriptedRpc([raw_sub("paid")] * 10)
    sync = await make_sync(tmp_path, rpc, batch_size=4)
    try:
        assert await sync.step() == []
        kept = await sync.journal.skipped_subscriptions()
        assert [s.sub_id for s in kept] == [10, 9, 8]
        assert sync.skipped == 10
        assert kept[0] == SkippedSubscription(10, "rejected", kept[0].reason)
    finally:
        await sync.journal.close()
