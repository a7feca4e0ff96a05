"""Anyone can create subscriptions on a shared Coordinator: none of them may stop discovery.

Real anvil and contracts. A subscription the guardian refuses with ``reason`` in its params (a
free one to a container with ``accepted_payments``) once froze the sync cursor for good (its
log call raised on every retry); here it sits between free ones, before the node starts and
while it runs, and every free one is still delivered. (A loop that keeps failing turning
``checks.chain`` unhealthy is tested with an RPC outage in test_chain_service.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    start_node,
    subscription_consumer,
)

pytestmark = pytest.mark.chain
ZERO = "0x" + "00" * 20
# Asks for payment: the guardian refuses free subscriptions to it with params {"reason": ...}.
PAID = {"id": "paid", "url": "http://unused", "accepted_payments": {ZERO: 1}}


async def hostile_subscription(dep: Deployment) -> None:
    """What anyone can send: one createSubscription, straight to the Coordinator, from an EOA."""
    await dep.chain.call_fn(
        dep.coordinator.functions.createSubscription(
            "paid", 1, PERIOD, 1, False, ZERO, 0, ZERO, ZERO
        )
    )


async def free_subscription(dep: Deployment) -> Any:
    consumer = await subscription_consumer(dep)
    await dep.chain.call_fn(consumer.functions.createSubscription("echo", 1, PERIOD, 1, False))
    return consumer


async def test_refused_subscription_between_free_ones_is_skipped_and_recorded(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    dep = deployment
    first = await free_subscription(dep)  # id 1
    await hostile_subscription(dep)  # id 2
    second = await free_subscription(dep)  # id 3
    node = await start_node(dep, service_container, KEYS[1], tmp_path, containers=[PAID])
    try:
        await eventually(
            lambda: is_true(node.sync is not None and node.sync.cursor == 3),
            what="cursor past the refused subscription",
        )
        assert node.status()["tracked_subscriptions"] == 2
        await dep.chain.advance(PERIOD + 1)
        await eventually(lambda: equals(deliveries(first), 1), what="first free delivered")
        await eventually(lambda: equals(deliveries(second), 1), what="second free delivered")

        # The same while the node runs: a refused one (id 4), then a free one (id 5).
        await hostile_subscription(dep)
        third = await free_subscription(dep)
        await eventually(
            lambda: is_true(node.sync is not None and node.sync.cursor == 5),
            what="cursor past the second refused subscription",
        )
        await dep.chain.advance(PERIOD + 1)
        await eventually(lambda: equals(deliveries(third), 1), what="third free delivered")

        skipped = await node.journal.skipped_subscriptions()
        assert [(s.sub_id, s.kind) for s in skipped] == [(4, "rejected"), (2, "rejected")]
        for record in skipped:
            assert record.reason.startswith("Invalid payment {")
            assert '"reason": "container requires payment: paid"' in record.reason
        status = node.status()
        assert status["skipped_subscriptions"] == 2
        assert {call["data"] for call in service_container.calls} == {"0102"}
        assert len(service_container.calls) == 3  # the refused ones never reach a container
    finally:
        await node.stop(1)
