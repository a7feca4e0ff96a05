"""Subscription kinds against a real anvil and the project's contracts: a callback request, a
lazy (Inbox) subscription, and a mixed ``/api/jobs/batch`` to the real daemon with the chain on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from chain_support import (
    KEYS,
    PERIOD,
    Deployment,
    Devnet,
    HttpRunner,
    agent_config,
    client_body,
    deliveries,
    equals,
    eventually,
    get_json,
    inbox_contract,
    settle,
    start_node,
    subscription_consumer,
)
from eth_abi.abi import decode
from eth_account import Account
from web3.contract import AsyncContract

from node_agent.chain.devnet import DELEGATE_SIGNER_KEY, NODE_KEYS
from tests.support.agent import running_agent
from tests.support.infernet_client import load_node_client, load_subscription_class
from tests.support.service import running_service

pytestmark = pytest.mark.chain
ZERO = "0x" + "00" * 20


def decoded_output(raw: bytes) -> Any:
    (text,) = decode(["string"], raw)
    return json.loads(text)


async def test_callback_request_is_delivered_exactly_once(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    dep = deployment
    consumer = await dep.chain.deploy("ExampleCallbackConsumer", dep.registry.address)
    await dep.chain.call_fn(consumer.functions.requestCompute("echo", b"\x0a\x0b", 1))
    node = await start_node(dep, service_container, KEYS[1], tmp_path)
    try:
        await eventually(lambda: equals(deliveries(consumer), 1), what="callback delivered")
        record = await consumer.functions.getDelivery(1, 1).call()
        assert record[0] == Account.from_key(KEYS[1]).address
        assert decoded_output(record[3]) == {"container": "echo", "echo": "0a0b"}
        # Time passing must not make a period-0 subscription due again.
        await dep.chain.advance(PERIOD * 3)
        await settle(node, dep)
        assert await deliveries(consumer) == 1
        assert await consumer.functions.lastInterval(1).call() == 1
        assert len(service_container.calls) == 1
        assert node.status()["tracked_subscriptions"] == 0
    finally:
        await node.stop(1)


async def test_lazy_subscription_lands_in_inbox_once_per_interval(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    dep = deployment
    consumer = await subscription_consumer(dep, b"\x07")
    await dep.chain.call_fn(consumer.functions.createSubscription("echo", 2, PERIOD, 1, True))
    inbox = await inbox_contract(dep)
    node_address = Account.from_key(KEYS[1]).address
    node = await start_node(dep, service_container, KEYS[1], tmp_path)
    try:
        await dep.chain.advance(PERIOD + 1)
        await eventually(lambda: equals(deliveries(consumer), 1), what="interval 1 delivered")
        await dep.chain.advance(PERIOD)
        await eventually(lambda: equals(deliveries(consumer), 2), what="interval 2 delivered")
        await dep.chain.advance(PERIOD)  # past the last interval
        await settle(node, dep)
        assert await deliveries(consumer) == 2
        assert len(service_container.calls) == 2
        for interval in (1, 2):
            record = await consumer.functions.getDelivery(1, interval).call()
            deliverer, _, input_, output, proof, container_id, index = record
            assert deliverer == node_address
            assert (input_, output, proof) == (b"", b"", b"")  # lazy: the data is in the Inbox
            item = await inbox.functions.read(container_id, node_address, index).call()
            _, sub_id, item_interval, item_input, item_output, _ = item
            assert (sub_id, item_interval) == (1, interval)
            assert item_input == b""  # plain JSON output: no input (outputs.py)
            assert decoded_output(item_output) == {"container": "echo", "echo": "07"}
        writes = await inbox.events.NewInboxItem.get_logs(from_block=0)
        assert len(writes) == 2  # once per interval, nothing else written
    finally:
        await node.stop(1)


async def test_batch_mixes_offchain_delegated_and_rejected_items(
    devnet: Devnet, tmp_path: Path
) -> None:
    net = devnet
    delegator = net.contract("ExampleDelegatorConsumer", net.examples.delegator)
    node_address = Account.from_key(NODE_KEYS[0]).address
    await net.w3.provider.make_request(  # type: ignore[arg-type]
        "anvil_setBalance", [node_address, hex(10**20)]
    )
    async with (
        running_service("echo") as (service, service_url),
        running_agent(agent_config(net, service_url, tmp_path / "state"), tmp_path) as (_, base),
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):

        async def chain_ready() -> bool:
            info = await get_json(http, f"{base}/info")
            return bool(info["chain"]["ready"])

        await eventually(chain_ready, what="chain ready")
        now = int((await net.w3.eth.get_block("latest"))["timestamp"])
        sub = load_subscription_class()(
            net.examples.delegator, now - 1, 0, 1, 1, ["echo"], False, ZERO, 0, ZERO, ZERO
        )
        good = client_body(
            net, sub, nonce=1, expiry=now + 600, key=DELEGATE_SIGNER_KEY, data={"prompt": "b"}
        )
        bad = client_body(
            net, sub, nonce=2, expiry=now + 600, key=NODE_KEYS[1], data={"prompt": "x"}
        )
        offchain = {"containers": ["echo"], "data": {"n": 1}}
        async with http.post(f"{base}/api/jobs/batch", json=[offchain, good, bad]) as response:
            assert response.status == 200
            results = await response.json()
        assert len(results) == 3
        assert set(results[0]) == {"id"} and isinstance(results[0]["id"], str)
        assert results[1] == {}
        assert results[2]["error"] == "Signer mismatch"
        assert "params" in results[2]

        job = await load_node_client()(base).get_job_result_sync(results[0]["id"])
        assert job["status"] == "success"

        async def delivered(contract: AsyncContract, count: int) -> bool:
            return bool(await contract.functions.deliveryCount().call() == count)

        await eventually(lambda: delivered(delegator, 1), what="delegated delivered")
        record = await delegator.functions.getDelivery(1, 1).call()
        assert record[0] == node_address
        assert decoded_output(record[3])["input"] == {"prompt": "b"}
        inputs = [r.get("data") for r in service.requests]
        assert sorted(json.dumps(i, sort_keys=True) for i in inputs) == [
            json.dumps({"n": 1}),
            json.dumps({"prompt": "b"}),
        ]
