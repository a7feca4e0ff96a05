"""Pure pieces of burst delivery: the nonce allocator, the queue repair plan, fee caps for a
queue of the node's own gas, the direct EIP-1559 signer, the coalescer and the loop budget."""

from __future__ import annotations

import asyncio
import time

import pytest
from eth_account import Account

from node_agent.chain import abi
from node_agent.chain.coalesce import Coalescer
from node_agent.chain.fees import FeePolicy
from node_agent.chain.nonce import NonceAllocator, QueuePlan, QueueState, plan_queue
from node_agent.chain.pacing import LoopBudget
from node_agent.chain.simulate import _parse
from node_agent.chain.wallet import NodeKey

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
GWEI = 10**9


# --- nonce allocator ---------------------------------------------------------------------------


def test_allocator_starts_after_the_chain_and_the_journal() -> None:
    allocator = NonceAllocator()
    assert not allocator.synced
    with pytest.raises(RuntimeError):
        allocator.take(1)
    assert allocator.sync(chain_pending=5, journaled_max=None) == 5
    assert allocator.sync(chain_pending=5, journaled_max=9) == 10  # journaled, maybe not sent
    assert allocator.sync(chain_pending=12, journaled_max=9) == 12  # the chain moved on
    assert allocator.sync(chain_pending=0, journaled_max=None) == 0


def test_allocator_hands_out_consecutive_blocks_and_takes_back_only_the_latest() -> None:
    allocator = NonceAllocator()
    allocator.sync(3, None)
    first, second = allocator.take(4), allocator.take(2)
    assert list(first) == [3, 4, 5, 6] and list(second) == [7, 8]
    assert not allocator.give_back(first)  # would leave 7 and 8 above a hole
    assert allocator.give_back(second) and allocator.next == 7
    assert list(allocator.take(1)) == [7]
    assert list(allocator.take(0)) == []
    allocator.invalidate()
    assert not allocator.synced and not allocator.give_back(range(7, 8))


# --- queue repair --------------------------------------------------------------------------------


def plan(**overrides: object) -> QueuePlan:
    args: dict[str, object] = dict(
        mined=10,
        pool=15,
        top=14,
        unmined={n: 0.0 for n in range(10, 15)},
        max_fees={n: 100 for n in range(10, 15)},
        base_fee=10,
        now=100.0,
        stuck_after=30.0,
        stuck=False,
    )
    args.update(overrides)
    return plan_queue(**args)  # type: ignore[arg-type]


def test_a_full_pool_moving_on_needs_nothing() -> None:
    assert plan().idle
    assert plan(top=None).idle
    assert plan(mined=15, pool=15).idle


def test_a_gap_resends_from_the_first_missing_nonce_and_fills_unjournaled_ones() -> None:
    # the pool lost nonce 12 (and, as anvil does, what depended on it)
    result = plan(pool=12)
    assert result.resend == (12, 13, 14) and result.fill == () and result.gap_at == 12
    # nonce 13 was never journaled (nothing will ever use it): a no-op takes it
    result = plan(pool=12, unmined={10: 0.0, 11: 0.0, 12: 0.0, 14: 0.0})
    assert result.resend == (12, 14) and result.fill == (13,)
    assert result.replace == ()


def test_a_stuck_queue_replaces_its_lowest_and_the_unminable_only() -> None:
    assert plan(stuck=True, now=10.0).idle  # too young
    assert plan(stuck=True).replace == (10,)
    fees = {10: 100, 11: 100, 12: 5, 13: 100, 14: 3}
    assert plan(stuck=True, max_fees=fees).replace == (10, 12, 14)
    assert plan(stuck=False, max_fees=fees).idle  # moving: leave it


def test_queue_state_reads_the_pool_only_when_the_queue_may_be_broken() -> None:
    state = QueueState()
    assert state.observe(5, now=0.0, new_block=True)
    assert state.pool_worth_reading(0.0, gap_blocks=2, stuck_after=30.0)  # never read yet
    state.checked_pool = True
    assert not state.pool_worth_reading(1.0, gap_blocks=2, stuck_after=30.0)
    assert not state.observe(5, now=1.0, new_block=True)
    assert not state.pool_worth_reading(1.0, gap_blocks=2, stuck_after=30.0)
    state.observe(5, now=2.0, new_block=True)
    assert state.pool_worth_reading(2.0, gap_blocks=2, stuck_after=30.0)  # two still blocks
    assert state.observe(6, now=3.0, new_block=True)  # moved: fine again
    assert not state.pool_worth_reading(3.0, gap_blocks=2, stuck_after=30.0)
    assert state.pool_worth_reading(33.0, gap_blocks=2, stuck_after=30.0)  # no block at all
    state.acted(33.0)
    assert not state.pool_worth_reading(34.0, gap_blocks=2, stuck_after=30.0)


# --- fees ----------------------------------------------------------------------------------------


def policy(cap: int | None = None) -> FeePolicy:
    return FeePolicy(
        max_fee_cap=cap,
        priority_fee=GWEI,
        bump_percent=15,
        stuck_after=30,
        gas_margin_percent=20,
        max_gas_limit=5_000_000,
        confirmations=1,
    )


def test_fee_caps_cover_the_base_fee_rises_of_the_queue_ahead() -> None:
    base = 10 * GWEI
    assert policy().fees(base) == (2 * base + GWEI, GWEI)
    # eight full blocks of the node's own transactions ahead: +12.5 % each
    max_fee, _ = policy().fees(base, blocks_ahead=8)
    assert max_fee == 2 * base * 9**8 // 8**8 + GWEI
    assert max_fee > 2 * base * 1.125**8  # still twice the base fee where it lands
    assert policy(cap=30 * GWEI).fees(base, blocks_ahead=8) == (30 * GWEI, GWEI)  # the cap rules
    assert policy().fees(base, blocks_ahead=10_000) == policy().fees(base, blocks_ahead=64)


def test_gas_limit_keeps_the_margin_under_the_maximum() -> None:
    assert policy().gas_limit(100_000) == 120_000
    assert policy().gas_limit(4_900_000) == 5_000_000


# --- signing -------------------------------------------------------------------------------------


def test_direct_eip1559_signature_is_eth_accounts_byte_for_byte() -> None:
    account = Account.from_key(KEY)
    key = NodeKey(account)
    data = abi.DELIVER_COMPUTE.encode_call(7, 3, b"in", b"\x00" * 96, b"", "0x" + "ab" * 20)
    for nonce in (0, 1, 127, 128, 2**20):
        tx = {
            "type": 2,
            "chainId": 31337,
            "nonce": nonce,
            "to": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "data": data,
            "value": 0,
            "gas": 250_000 + nonce,
            "maxFeePerGas": 7 * GWEI + nonce,
            "maxPriorityFeePerGas": GWEI,
        }
        signed = account.sign_transaction(tx)
        raw, tx_hash = key.sign(tx)
        assert raw == bytes(signed.raw_transaction)
        assert tx_hash == "0x" + bytes(signed.hash).hex()
        assert Account.recover_transaction(raw) == account.address
    legacy = {"nonce": 0, "to": account.address, "value": 1, "gas": 21_000, "gasPrice": GWEI}
    raw, _ = key.sign({**legacy, "chainId": 1})  # anything else: eth-account itself
    assert raw == bytes(account.sign_transaction({**legacy, "chainId": 1}).raw_transaction)


# --- simulation answers --------------------------------------------------------------------------


def test_simulation_answers_parsed_with_their_revert_data() -> None:
    ok = _parse({"status": "0x1", "gasUsed": "0x5208", "returnData": "0x01"})
    assert ok.ok and ok.gas == 21_000 and ok.output == b"\x01" and ok.error_name is None
    # anvil: the revert data in returnData; geth: in error.data
    anvil = _parse({"status": "0x0", "gasUsed": "0x7ad4", "returnData": "0x1a00354f"})
    geth = _parse(
        {
            "status": "0x0",
            "gasUsed": "0x7ad4",
            "returnData": "0x",
            "error": {"code": 3, "message": "execution reverted", "data": "0x1a00354f"},
        }
    )
    assert anvil.error_name == geth.error_name == "SubscriptionNotFound"
    assert not _parse({"status": "0x0", "gasUsed": "0x0"}).output


# --- coalescer and loop budget -------------------------------------------------------------------


async def test_coalescer_batches_concurrent_callers_and_fails_items_alone() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int | Exception]:
        batches.append(items)
        await asyncio.sleep(0)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(flush, name="t", max_batch=4, window=0.01)
    results = await asyncio.gather(
        *(coalescer.submit(i) for i in range(10)), return_exceptions=True
    )
    assert [r if isinstance(r, int) else str(r) for r in results] == [
        0, "odd 1", 20, "odd 3", 40, "odd 5", 60, "odd 7", 80, "odd 9"
    ]  # fmt: skip
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert all(len(b) <= 4 for b in batches) and len(batches) == 3
    assert coalescer.items == 10 and coalescer.flushes == 3


async def test_coalescer_failure_of_a_whole_flush_reaches_every_caller() -> None:
    async def flush(items: list[int]) -> list[int | Exception]:
        raise RuntimeError("endpoint down")

    coalescer: Coalescer[int, int] = Coalescer(flush, name="t", window=0.001)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(3)), return_exceptions=True)
    assert [str(r) for r in results] == ["endpoint down"] * 3


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_loop_budget_lets_other_work_run_between_slices() -> None:
    budget = LoopBudget(slice_seconds=0.001, per_turn=2)
    ticks: list[int] = []
    stop = asyncio.Event()

    async def other() -> None:  # stands for the HTTP API: one step per turn of the loop
        while not stop.is_set():
            ticks.append(len(done))
            await asyncio.sleep(0)

    done: list[int] = []

    async def work(i: int) -> None:
        await budget.turn()
        busy(0.0005)  # CPU work the budget must spread out
        done.append(i)

    watcher = asyncio.create_task(other())
    await asyncio.sleep(0)
    await asyncio.gather(*(work(i) for i in range(40)))
    stop.set()
    await watcher
    assert sorted(done) == list(range(40))
    assert budget.yields > 0
    # the other task ran while the work was under way, not only before and after it
    assert len({t for t in ticks if 0 < t < 40}) >= 10
