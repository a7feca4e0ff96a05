"""Faults that cost providers gas: stuck transactions, crashes mid-delivery, cancelled
subscriptions, reverting consumers. Real anvil, real contracts, real HTTP containers."""

from __future__ import annotations

from pathlib import Path

import pytest
from chain_support import (
    KEYS,
    PERIOD,
    Deployment,
    HttpRunner,
    deliveries,
    equals,
    eventually,
    is_true,
    rpc,
    settle,
    start_node,
    subscription_consumer,
)
from eth_account import Account

from node_agent.chain import journal as jr

pytestmark = pytest.mark.chain
NODE_KEY = KEYS[1]
NODE = Account.from_key(NODE_KEY).address


async def mined_nonce(dep: Deployment) -> int:
    return int(await dep.chain.w3.eth.get_transaction_count(NODE, "latest"))


async def test_stuck_transaction_is_replaced_with_a_fee_bump(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    dep = deployment
    consumer = await subscription_consumer(dep)
    await dep.chain.call_fn(consumer.functions.createSubscription("echo", 1, PERIOD, 1, False))
    node = await start_node(dep, service_container, NODE_KEY, tmp_path)  # stuck after 2 s
    try:
        await eventually(lambda: is_true(node.status()["tracked_subscriptions"] == 1))
        await rpc(dep, "evm_setAutomine", False)  # transactions now wait in the mempool
        await dep.chain.advance(PERIOD + 1)  # evm_mine still mines this one block

        async def replaced() -> bool:
            return len((await node.journal.unconfirmed()).get(("s:1", 1), [])) >= 2

        await eventually(replaced, what="stuck transaction replaced")
        txs = (await node.journal.unconfirmed())[("s:1", 1)]
        first, bump = txs[0], txs[1]
        assert bump.nonce == first.nonce == 0
        assert bump.max_fee >= first.max_fee * 115 // 100
        assert bump.priority_fee > first.priority_fee
        assert await deliveries(consumer) == 0
        assert len(service_container.calls) == 1  # replacement re-signs, never recomputes

        await rpc(dep, "evm_mine")
        await rpc(dep, "evm_setAutomine", True)
        await eventually(lambda: equals(deliveries(consumer), 1))
        await settle(node, dep)
        hashes = [t.tx_hash for t in txs] + [
            t.tx_hash for t in (await node.journal.unconfirmed()).get(("s:1", 1), [])
        ]
        receipts = [await dep.chain.w3.eth.get_transaction_receipt(h) for h in hashes[1:]]
        assert receipts[0]["status"] == 1  # the bumped one was mined ...
        assert await mined_nonce(dep) == 1  # ... and it is the only transaction
        assert len(service_container.calls) == 1
        states = {(k, i): s for k, i, s, _ in await node.journal.deliveries()}
        assert states[("s:1", 1)] == jr.CONFIRMED
    finally:
        await node.stop(1)


async def test_cancelled_subscription_stops_being_served(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    dep = deployment
    consumer = await subscription_consumer(dep)
    await dep.chain.call_fn(consumer.functions.createSubscription("echo", 5, PERIOD, 1, False))
    await dep.chain.advance(PERIOD + 1)
    node = await start_node(dep, service_container, NODE_KEY, tmp_path)
    try:
        await eventually(lambda: equals(deliveries(consumer), 1))
        await settle(node, dep)
        await dep.chain.call_fn(consumer.functions.cancelSubscription(1))
        for _ in range(3):  # three more intervals open; none may be served
            await dep.chain.advance(PERIOD)
        await eventually(lambda: is_true(node.status()["tracked_subscriptions"] == 0))
        await settle(node, dep)
        assert await deliveries(consumer) == 1
        assert await mined_nonce(dep) == 1  # no transaction after the cancellation
        assert len(service_container.calls) == 1  # and no container run
    finally:
        await node.stop(1)


async def test_reverting_consumer_costs_no_transactions(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    dep = deployment
    hostile = await dep.chain.deploy(
        "RevertingConsumer", dep.registry.address, source="HostileConsumers"
    )
    await dep.chain.call_fn(hostile.functions.request(1))  # callback subscription 1, "hostile"
    node = await start_node(dep, service_container, NODE_KEY, tmp_path)
    max_attempts = node.onchain.max_attempts
    try:

        async def given_up() -> bool:
            await rpc(dep, "evm_mine")  # each new block is a new scheduling pass
            rows = {(k, i): (s, a) for k, i, s, a in await node.journal.deliveries()}
            return rows.get(("s:1", 1)) == (jr.FAILED, max_attempts)

        await eventually(given_up, what="node gave up on the reverting consumer")
        calls = len(service_container.calls)
        assert 1 <= calls <= max_attempts
        for _ in range(5):
            await rpc(dep, "evm_mine")
        await settle(node, dep)
        assert len(service_container.calls) == calls  # no more attempts
        assert await dep.chain.w3.eth.get_transaction_count(NODE, "pending") == 0  # no gas spent
    finally:
        await node.stop(1)
