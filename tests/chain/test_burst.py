"""Burst delivery on anvil: many subscriptions whose interval opens in the same block.

The node must send them all without waiting for any receipt (nonces assigned locally, the
pool holding the whole queue), deliver each once, repair a queue whose pool lost a
transaction, and deliver each interval exactly once when it is killed mid-burst. Blocks are
mined by the test (automine off) so what the node has in flight is seen as it is.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
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
    send_at_nonce,
    settle,
    start_node,
    subscription_consumer,
)
from eth_account import Account
from test_agent_processes import funded_agent, http_client, nonce_of
from web3.exceptions import TransactionNotFound

from node_agent.chain import journal as jr
from node_agent.chain.devnet import Anvil
from node_agent.chain.service import ChainService
from node_agent.chain.tracker import FULFILLED_TOPIC
from tests.support.net import serving

pytestmark = pytest.mark.chain
NODE_KEY = KEYS[1]
NODE = Account.from_key(NODE_KEY).address
QUIET = {"stuck_after_seconds": 60}  # nothing is stuck while the test holds the blocks back


async def open_together(dep: Deployment, consumer: Any, count: int) -> list[int]:
    """``count`` subscriptions created in one block (automine off from here on): the first
    interval of each opens at the same time, PERIOD seconds later. Their ids."""
    await rpc(dep, "evm_setAutomine", False)
    w3, sender = dep.chain.w3, dep.chain.account.address
    first = int(await dep.coordinator.functions.id().call())
    nonce = await w3.eth.get_transaction_count(sender, "pending")
    create = consumer.functions.createSubscription("echo", 1, PERIOD, 1, False)
    for index in range(count):
        tx = await create.build_transaction(
            {"from": sender, "nonce": nonce + index, "gas": 500_000}
        )
        await w3.eth.send_transaction(tx)
    await rpc(dep, "evm_mine")
    assert int(await dep.coordinator.functions.id().call()) == first + count
    return list(range(first, first + count))


async def pool_count(dep: Deployment) -> int:
    return int(await dep.chain.w3.eth.get_transaction_count(NODE, "pending"))


async def delivered_by_interval(consumer: Any) -> dict[tuple[int, int], list[str]]:
    """(subscription, interval) -> the nodes that delivered it, from the consumer's events."""
    found: dict[tuple[int, int], list[str]] = {}
    for event in await consumer.events.OutputReceived.get_logs(from_block=0):
        key = (event["args"]["subscriptionId"], event["args"]["interval"])
        found.setdefault(key, []).append(event["args"]["node"])
    return found


def calls(node: ChainService, before: dict[str, int]) -> dict[str, int]:
    after = node.rpc.calls_by_method()
    return {m: n - before.get(m, 0) for m, n in after.items() if n - before.get(m, 0)}


async def journaled_nonces(node: ChainService) -> list[int]:
    pending = await node.journal.unconfirmed()
    return sorted(t.nonce for txs in pending.values() for t in txs)


async def test_burst_is_sent_at_once_with_local_nonces_and_delivered_once_each(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    dep, count = deployment, 30
    consumer = await subscription_consumer(dep)
    ids = await open_together(dep, consumer, count)
    node = await start_node(dep, service_container, NODE_KEY, tmp_path, onchain=QUIET)
    try:
        await eventually(lambda: is_true(node.status()["tracked_subscriptions"] == count))
        await settle(node, dep)
        before = node.rpc.calls_by_method()
        await dep.chain.advance(PERIOD + 1)  # one block: every first interval is open

        # The whole burst is signed, journaled and in the pool before any block is mined:
        # no nonce asked per transaction, no receipt waited for between them.
        await eventually(lambda: equals(pool_count(dep), count), what="the burst in the pool")
        assert await nonce_of(dep, NODE) == 0
        assert await journaled_nonces(node) == list(range(count))
        await rpc(dep, "evm_mine")
        await eventually(lambda: equals(deliveries(consumer), count))
        await settle(node, dep)

        assert await delivered_by_interval(consumer) == {(i, 1): [NODE] for i in ids}
        assert await nonce_of(dep, NODE) == count  # one transaction each, none twice
        assert len(service_container.calls) == count  # each computed once
        states = {(k, i): s for k, i, s, _ in await node.journal.deliveries()}
        assert states == {(f"s:{i}", 1): jr.CONFIRMED for i in ids}
        sending = node.status()["sending"]
        assert sending["gaps"] == sending["replaced"] == sending["resent"] == 0
        used = calls(node, before)
        assert used["eth_sendRawTransaction"] == count
        # simulations and views batched (eth_simulateV1 carries many calls each), receipts
        # found by block: no estimate, nonce or receipt poll per delivery (the head and sync
        # polls go on as they do without a burst)
        assert used.get("eth_simulateV1", 0) <= count // 2, used
        for method in ("eth_estimateGas", "eth_getTransactionReceipt"):
            assert used.get(method, 0) == 0, used
        assert used.get("eth_getTransactionCount", 0) <= 10, used
    finally:
        await node.stop(1)


@asynccontextmanager
async def burst_in_the_pool(
    dep: Deployment, runner: HttpRunner, state: Path, count: int
) -> AsyncIterator[tuple[ChainService, Any, list[int]]]:
    """``count`` subscriptions opening together and a node whose deliveries of them are all
    signed and in the pool, none mined yet: (node, consumer, subscription ids)."""
    consumer = await subscription_consumer(dep)
    ids = await open_together(dep, consumer, count)
    node = await start_node(dep, runner, NODE_KEY, state, onchain=QUIET)
    try:
        await eventually(lambda: is_true(node.status()["tracked_subscriptions"] == count))
        await dep.chain.advance(PERIOD + 1)
        await eventually(lambda: equals(pool_count(dep), count), what="the burst in the pool")
        yield node, consumer, ids
    finally:
        await node.stop(1)


async def signed_at(node: ChainService, nonce: int) -> jr.TxRecord:
    pending = await node.journal.unconfirmed()
    return next(t for txs in pending.values() for t in txs if t.nonce == nonce)


async def delivered_once_each(
    dep: Deployment, node: ChainService, consumer: Any, ids: list[int], runner: HttpRunner
) -> dict[str, Any]:
    """Mine until every interval is delivered; each was delivered and computed once. The
    node's sending counters."""
    await rpc(dep, "evm_mine")
    await eventually(lambda: equals(deliveries(consumer), len(ids)))
    await settle(node, dep)
    assert await delivered_by_interval(consumer) == {(i, 1): [NODE] for i in ids}
    assert len(runner.calls) == len(ids)  # sent again or signed again, never computed again
    states = {(k, i): s for k, i, s, _ in await node.journal.deliveries()}
    assert states == {(f"s:{i}", 1): jr.CONFIRMED for i in ids}
    return dict(node.status()["sending"])


async def test_a_transaction_lost_by_the_pool_is_sent_again_and_the_queue_moves_on(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    dep, count = deployment, 6
    async with burst_in_the_pool(dep, service_container, tmp_path, count) as (node, consumer, ids):
        lost = (await signed_at(node, 2)).tx_hash
        # The pool loses nonce 2 (anvil drops what depends on it too): 3..5 wait behind a gap.
        await rpc(dep, "anvil_dropTransaction", lost)
        assert await pool_count(dep) == 2
        await rpc(dep, "evm_mine")
        assert await nonce_of(dep, NODE) == 2

        await eventually(lambda: equals(pool_count(dep), count), what="the gap sent again")
        sending = await delivered_once_each(dep, node, consumer, ids, service_container)
        assert await nonce_of(dep, NODE) == count  # the same transactions: no filler, no copy
        assert sending["gaps"] >= 1 and sending["resent"] >= count - 2
        assert sending["replaced"] == sending["filled"] == sending["resigned"] == 0


async def test_a_nonce_another_program_of_the_key_used_is_signed_again_and_delivered_once(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    """Another program with the node's key (``node-agent wallet withdraw`` beside the node,
    a second tool) gets a transaction mined at a nonce the node had signed a delivery for: the
    node sees the nonce used with no receipt of its own and signs that delivery again under a
    fresh nonce; every interval is delivered once and computed once."""
    dep, count, w3 = deployment, 3, deployment.chain.w3
    async with burst_in_the_pool(dep, service_container, tmp_path, count) as (node, consumer, ids):
        signed = await signed_at(node, 1)
        # The other program's transaction outbids the node's at nonce 1 and is mined instead.
        other = await send_at_nonce(dep, NODE_KEY, 1, signed.max_fee * 2, signed.priority_fee * 2)
        assert await pool_count(dep) == count
        await rpc(dep, "evm_mine")
        assert (await w3.eth.get_transaction_receipt(other))["status"] == 1
        with pytest.raises(TransactionNotFound):  # the node's, replaced in the pool
            await w3.eth.get_transaction_receipt(signed.tx_hash)

        # The delivery comes again under nonce 3, once the node saw nonce 1 used without it.
        await eventually(lambda: equals(pool_count(dep), count + 1), what="signed again")
        sending = await delivered_once_each(dep, node, consumer, ids, service_container)
        assert await nonce_of(dep, NODE) == count + 1  # the node's 3 and the other's 1
        assert sending["resigned"] == 1
        assert sending["filled"] == sending["replaced"] == 0


def delivery_logs_asked(message: Any, block: int) -> bool:
    """An ``eth_getLogs`` for the node's deliveries up to ``block`` or later (other parts of
    the node read logs too)."""
    if not isinstance(message, dict) or message.get("method") != "eth_getLogs":
        return False
    (query,) = message.get("params") or [{}]
    to_block = int(str(query.get("toBlock", "0x0")), 16)
    return bool((query.get("topics") or [None])[0] == FULFILLED_TOPIC and to_block >= block)


@asynccontextmanager
async def logs_lagging(upstream: str) -> AsyncIterator[tuple[list[int], str]]:
    """A JSON-RPC endpoint in front of anvil whose ``eth_getLogs`` of the node's deliveries
    reaching block ``hide[1]`` answers [] while ``hide[0]`` > 0 (counting down): an endpoint
    that serves a block before its logs."""
    hide = [0, 0]

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        message = json.loads(body)
        if hide[0] > 0 and delivery_logs_asked(message, hide[1]):
            hide[0] -= 1
            return web.json_response({"jsonrpc": "2.0", "id": message.get("id"), "result": []})
        async with (
            ClientSession() as session,
            session.post(
                upstream, data=body, headers={"Content-Type": "application/json"}
            ) as reply,
        ):
            return web.Response(body=await reply.read(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/", forward)
    async with serving(app) as url:
        yield hide, url


async def test_logs_an_endpoint_shows_late_are_read_again_not_looked_up_by_receipt(
    deployment: Deployment, service_container: HttpRunner, tmp_path: Path
) -> None:
    dep, count = deployment, 6
    consumer = await subscription_consumer(dep)
    await open_together(dep, consumer, count)
    upstream = str(dep.chain.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    async with logs_lagging(upstream) as (hide, url):
        node = await start_node(dep, service_container, NODE_KEY, tmp_path, url, onchain=QUIET)
        try:
            await eventually(lambda: is_true(node.status()["tracked_subscriptions"] == count))
            await settle(node, dep)
            await dep.chain.advance(PERIOD + 1)
            await eventually(lambda: equals(pool_count(dep), count), what="the burst in the pool")
            # the mined block's first log read and the re-read right after come back empty
            hide[:] = [2, await dep.chain.w3.eth.block_number + 1]
            await rpc(dep, "evm_mine")
            await eventually(lambda: equals(deliveries(consumer), count))
            await settle(node, dep)
            assert hide[0] == 0
            states = {s for _, _, s, _ in await node.journal.deliveries()}
            assert states == {jr.CONFIRMED}
            sending = node.status()["sending"]
            assert sending["log_waits"] >= count  # waited a step for the logs ...
            assert sending["receipt_lookups"] == 0  # ... instead of a receipt per delivery
        finally:
            await node.stop(1)


@asynccontextmanager
async def slow_echo(seconds: float) -> AsyncIterator[tuple[list[Any], str]]:
    """A container that takes ``seconds`` per request: a burst then takes a while to compute."""
    requests: list[Any] = []

    async def output(request: web.Request) -> web.Response:
        body = await request.json()
        requests.append(body)
        await asyncio.sleep(seconds)
        return web.json_response({"echo": body.get("data")})

    app = web.Application()
    app.router.add_post("/service_output", output)
    async with serving(app) as url:
        yield requests, url


async def test_kill_9_in_the_middle_of_a_burst_delivers_each_interval_exactly_once(
    deployment: Deployment, anvil: Anvil, tmp_path: Path
) -> None:
    """The agent dies with part of the burst journaled (sent, maybe mined) and the rest not
    computed yet, and the pool loses what it had; the restarted agent sends the journaled
    transactions again, computes only what was never journaled, and every interval lands
    once."""
    dep, count = deployment, 40
    consumer = await subscription_consumer(dep)
    ids = await open_together(dep, consumer, count)
    await rpc(dep, "evm_setIntervalMining", 1)  # a block a second from here on
    agent = await funded_agent(dep, tmp_path, KEYS[1])
    async with slow_echo(0.05) as (requests, url), http_client() as http:
        agent.configure(url, anvil, dep.registry.address)
        config = json.loads((agent.workdir / "config.yaml").read_text())
        config["onchain"]["max_concurrent_deliveries"] = 2  # ~1 s to compute the burst
        (agent.workdir / "config.yaml").write_text(json.dumps(config))
        async with agent.run() as first:
            await eventually(lambda: agent.tracking(http, count), what="agent tracking")
            await rpc(dep, "evm_increaseTime", PERIOD + 1)

            async def partly() -> bool:
                return len(agent.journaled_txs()) >= count // 4

            await eventually(partly, what="part of the burst journaled")
            first.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
        journaled = agent.journaled_txs()
        computed = len(requests)
        assert len(journaled) < count  # killed in the middle: some never computed
        await rpc(dep, "anvil_dropAllTransactions")
        async with agent.run():
            await eventually(lambda: equals(deliveries(consumer), count), what="all delivered")
            await eventually(lambda: agent.settled(http, dep), what="agent settled")
            assert await delivered_by_interval(consumer) == {(i, 1): [agent.address] for i in ids}
            assert await nonce_of(dep, agent.address) == count  # no second transaction for any
            after = agent.journaled_txs()
            assert after[: len(journaled)] == journaled  # the journaled bytes, not new ones
            assert len(after) == count
            # only what had not been journaled before the kill was computed again
            assert len(requests) - computed == count - len(journaled)
