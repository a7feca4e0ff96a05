"""A recurring subscription on anvil, observed through the Reader's batch status view."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from web3 import AsyncWeb3
from web3.logs import DISCARD

from tests.support.anvil import DEPLOYER_KEY, NODE_KEYS, DeployedChain, advance_time, transact

pytestmark = pytest.mark.chain

ZERO = "0x0000000000000000000000000000000000000000"


async def test_recurring_subscription_intervals_and_status_batch(
    chain: DeployedChain, w3: AsyncWeb3[Any]
) -> None:
    coordinator = chain.contract(w3, "Coordinator", chain.deployment.coordinator)
    reader = chain.contract(w3, "Reader", chain.deployment.reader)
    consumer = chain.contract(w3, "ExampleSubscriptionConsumer", chain.examples.subscription)
    node = Account.from_key(NODE_KEYS[0]).address

    create = consumer.functions.createSubscription("hello-world", 3, 60, 1, False)
    receipt = await transact(w3, DEPLOYER_KEY, create)
    sub_id = coordinator.events.SubscriptionCreated().process_receipt(receipt, errors=DISCARD)[0][
        "args"
    ]["id"]
    assert await consumer.functions.getContainerInputs(sub_id, 1, 0, node).call() == b"hello"

    def status_of(rows: list[tuple[object, ...]]) -> tuple[object, ...]:
        (row,) = [r for r in rows if r[0] == sub_id]
        return row

    row = status_of(await reader.functions.readStatusBatch(sub_id, sub_id + 1, node).call())
    assert row[2:] == (0, 0, False)  # not active until one period after creation

    await advance_time(w3, 60)
    row = status_of(await reader.functions.readStatusBatchByIds([sub_id], node).call())
    assert row[2:] == (1, 0, False)
    deliver = coordinator.functions.deliverCompute(sub_id, 1, b"", b"out-1", b"", ZERO)
    assert (await transact(w3, NODE_KEYS[0], deliver))["status"] == 1
    row = status_of(await reader.functions.readStatusBatchByIds([sub_id], node).call())
    assert row[2:] == (1, 1, True)

    await advance_time(w3, 60)
    row = status_of(await reader.functions.readStatusBatchByIds([sub_id], node).call())
    assert row[2:] == (2, 0, False)
    deliver = coordinator.functions.deliverCompute(sub_id, 2, b"", b"out-2", b"", ZERO)
    assert (await transact(w3, NODE_KEYS[0], deliver))["status"] == 1
    assert (await consumer.functions.getDelivery(sub_id, 2).call())[3] == b"out-2"
    assert await consumer.functions.lastInterval(sub_id).call() == 2
