"""ChainService against a real anvil, the project's contracts and a real HTTP service container."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from chain_support import (
    KEYS,
    PERIOD,
    Deployment,
    HttpRunner,
    TcpProxy,
    deliveries,
    equals,
    eventually,
    is_true,
    node_config,
    settle,
    start_node,
    subscription_consumer,
)
from eth_abi.abi import decode
from eth_account import Account

from node_agent.chain.service import ChainService
from node_agent.errors import AccessDenied, BadRequest, GuardianRejection
from tests.support.infernet_client import load_subscription_class

pytestmark = pytest.mark.chain
ZERO = "0x" + "00" * 20


async def test_recurring_subscription_each_interval_once(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    dep = deployment
    consumer = await subscription_consumer(dep)
    await dep.chain.call_fn(consumer.functions.createSubscription("echo", 2, PERIOD, 1, False))
    node = await start_node(dep, service_container, KEYS[1], tmp_path)
    try:
        await eventually(lambda: is_true(node.status()["tracked_subscriptions"] == 1))
        await settle(node, dep)
        assert await deliveries(consumer) == 0  # not active yet
        await dep.chain.advance(PERIOD + 1)
        await eventually(lambda: equals(deliveries(consumer), 1))
        record = await consumer.functions.getDelivery(1, 1).call()
        assert record[0] == Account.from_key(KEYS[1]).address
        (text,) = decode(["string"], record[3])
        assert json.loads(text) == {"container": "echo", "echo": "0102"}
        call = service_container.calls[0]
        assert (call["source"], call["destination"], call["data"]) == (0, 0, "0102")
        await dep.chain.advance(PERIOD)
        await eventually(lambda: equals(deliveries(consumer), 2))
        await dep.chain.advance(PERIOD)  # past the last interval
        await eventually(lambda: is_true(node.status()["tracked_subscriptions"] == 0))
        await settle(node, dep)
        assert await deliveries(consumer) == 2
        assert node.status()["lag"] == 0
    finally:
        await node.stop(1)


async def test_redundancy_two_nodes_and_restart_never_redelivers(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    dep = deployment
    consumer = await subscription_consumer(dep)
    await dep.chain.call_fn(consumer.functions.createSubscription("echo", 3, PERIOD, 2, False))
    await dep.chain.advance(PERIOD + 1)
    first = await start_node(dep, service_container, KEYS[1], tmp_path / "a")
    second = await start_node(dep, service_container, KEYS[2], tmp_path / "b")
    try:
        await eventually(lambda: equals(deliveries(consumer), 2))
        await settle(first, dep)
        await settle(second, dep)
        assert await deliveries(consumer) == 2
        assert await dep.coordinator.functions.redundancyCount(_rkey(1, 1)).call() == 2
    finally:
        await first.stop(1)
    calls_before = len(service_container.calls)
    again = await start_node(dep, service_container, KEYS[1], tmp_path / "a")
    try:
        await settle(again, dep)
        assert len(service_container.calls) == calls_before  # nothing recomputed
        assert await dep.chain.w3.eth.get_transaction_count(Account.from_key(KEYS[1]).address) == 1
        await dep.chain.advance(PERIOD)
        await eventually(lambda: equals(deliveries(consumer), 4))
        assert await dep.chain.w3.eth.get_transaction_count(Account.from_key(KEYS[1]).address) == 2
    finally:
        await again.stop(1)
        await second.stop(1)


async def test_rpc_outage_is_survived_and_reported(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path, anvil: Any
) -> None:
    dep = deployment
    proxy = TcpProxy(anvil.port)
    await proxy.start()
    node = await start_node(
        dep, service_container, KEYS[1], tmp_path, rpc_url=f"http://127.0.0.1:{proxy.port}"
    )
    consumer = await subscription_consumer(dep)
    try:
        await eventually(lambda: is_true(node.status()["ready"]))
        await proxy.cut()
        await dep.chain.call_fn(consumer.functions.createSubscription("echo", 1, PERIOD, 1, False))
        await dep.chain.advance(PERIOD + 1)
        await eventually(
            lambda: is_true(node.status()["rpc_failures"] > 0 and node.status()["last_error"]),
            what="RPC failures noticed",
        )
        # Failing step after step, the loops turn checks.chain unhealthy, naming the loop.
        await eventually(
            lambda: is_true("chain-sync failed" in node.health().get("reason", "")),
            what="sync loop reported unhealthy",
        )
        assert node.health()["status"] == "unhealthy"
        assert "times in a row: ChainUnavailable" in node.health()["reason"]
        assert await deliveries(consumer) == 0
        await proxy.start()  # same port again
        await eventually(lambda: equals(deliveries(consumer), 1))
        await eventually(lambda: is_true(node.health()["status"] == "ok"), what="recovered")
        assert "reason" not in node.health()
        assert node.status()["ready"]
    finally:
        await node.stop(1)
        await proxy.cut()


async def test_delegated_subscription_checked_before_reply_and_delivered(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    client_subscription = load_subscription_class()  # infernet-client 1.4.0's own class
    dep = deployment
    signer = Account.create()
    consumer = await dep.chain.deploy(
        "ExampleDelegatorConsumer", dep.registry.address, signer.address
    )
    node = await start_node(dep, service_container, KEYS[1], tmp_path)
    try:
        await eventually(lambda: is_true(node.status()["ready"]))
        now = await dep.chain.now()
        chain_id = await dep.chain.w3.eth.chain_id

        def body(
            containers: list[str], *, key: Any = signer, expiry: int = now + 600, nonce: int = 1
        ) -> dict[str, Any]:
            sub = client_subscription(
                consumer.address, now - 1, 0, 1, 1, containers, False, ZERO, 0, ZERO, ZERO
            )
            typed = sub.get_delegate_subscription_typed_data(
                nonce, expiry, chain_id, dep.coordinator.address
            )
            signed = Account.sign_message(typed, key.key)
            return {
                "subscription": sub.serialized,
                "signature": {
                    "nonce": nonce,
                    "expiry": expiry,
                    "v": signed.v,
                    "r": signed.r,
                    "s": signed.s,
                },
                "data": {"prompt": "hello"},
            }

        with pytest.raises(GuardianRejection) as wrong:
            await node.accept_delegated(body(["echo"], key=Account.create()), "127.0.0.1")
        assert wrong.value.error == "Signer mismatch"
        with pytest.raises(GuardianRejection) as expired:
            await node.accept_delegated(body(["echo"], expiry=now - 5), "127.0.0.1")
        assert expired.value.error == "Signature expired"
        with pytest.raises(GuardianRejection) as unknown:
            await node.accept_delegated(body(["nope"]), "127.0.0.1")
        assert unknown.value.error == "Container-set not supported"
        with pytest.raises(AccessDenied) as denied:
            await node.accept_delegated(body(["restricted"]), "127.0.0.1")
        assert denied.value.error == "Container not allowed for address"
        broken = body(["echo"])
        broken["signature"]["r"] = "12"
        with pytest.raises(BadRequest):
            await node.accept_delegated(broken, "127.0.0.1")
        for error in (wrong, expired, unknown, denied):
            json.dumps(error.value.to_wire())
        assert await deliveries(consumer) == 0

        good = body(["echo"])
        assert not good["subscription"]["containers"].startswith("0x")  # hexbytes >= 1
        await node.accept_delegated(good, "127.0.0.1")
        await eventually(lambda: equals(deliveries(consumer), 1))
        call = service_container.calls[-1]
        assert (call["source"], call["destination"], call["data"]) == (1, 0, {"prompt": "hello"})
        await eventually(lambda: is_true(node.status()["delegated_subscriptions"] == 0))
        await node.accept_delegated(
            dict(
                good,
                subscription={
                    **good["subscription"],
                    "containers": "0x" + good["subscription"]["containers"],
                },
            ),
            "127.0.0.1",
        )  # same (owner, nonce) with 0x-prefixed hash: accepted, nothing new
        assert node.status()["delegated_subscriptions"] == 0
        await settle(node, dep)
        assert await deliveries(consumer) == 1
    finally:
        await node.stop(1)


def _rkey(sub_id: int, interval: int) -> bytes:
    from eth_abi.abi import encode
    from eth_utils.crypto import keccak

    return keccak(encode(["uint32", "uint32"], [sub_id, interval]))


async def test_a_delivery_finished_during_a_pass_is_not_started_again(
    service_container: HttpRunner, tmp_path: Path
) -> None:
    """A pass picks candidates, awaits the redundancy RPC, then starts deliveries; one that
    finished meanwhile (journaled, handled) must not start again (it did, under CPU load)."""
    config = node_config(ZERO, KEYS[1], "http://127.0.0.1:9", tmp_path)
    node = ChainService(config, tmp_path, service_container)
    ran: list[str] = []

    async def deliver(name: str) -> None:
        ran.append(name)

    node._handled.add(("s:1", 1))
    node._start("s:1", 1, deliver("again"))
    node._start("s:1", 2, deliver("next interval"))
    assert ("s:1", 1) not in node._inflight
    assert node._is_done(1, 2)  # in flight counts as done when picking candidates
    await asyncio.gather(*node._inflight.values())
    assert ran == ["next interval"]
