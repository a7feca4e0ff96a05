"""Faults that cost providers gas: stuck transactions, crashes mid-delivery, cancelled
subscriptions, reverting consumers. Real anvil, real contracts, real HTTP containers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
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
    settle,
    start_node,
    subscription_consumer,
)
from eth_account import Account

from node_agent.chain import journal as jr
from node_agent.chain.devnet import Anvil
from tests.support.net import free_port
from tests.support.service import running_service

pytestmark = pytest.mark.chain
NODE_KEY = KEYS[1]
NODE = Account.from_key(NODE_KEY).address


async def rpc(dep: Deployment, method: str, *params: Any) -> Any:
    reply = await dep.chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in reply, reply
    return reply.get("result")


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


# --- kill -9 of a real agent process between broadcast and receipt ---------------------------


@asynccontextmanager
async def agent_process(config: Path, state: Path, log: Path) -> AsyncIterator[Process]:
    """``node-agent run`` as a separate process; the key comes from the environment."""
    env = {**os.environ, "NODE_AGENT_TEST_KEY": NODE_KEY}
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "node_agent.cli", "run", "--config", str(config), "--state-dir", str(state)),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def journaled_txs(state: Path) -> list[str]:
    """Tx hashes in the agent's journal, read from its SQLite file like an operator would."""
    path = state / "chain.sqlite"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return [row[0] for row in db.execute("SELECT tx_hash FROM txs ORDER BY nonce")]
    except sqlite3.OperationalError:  # table not created yet
        return []


@pytest.mark.parametrize("mempool", ["kept", "lost"])
async def test_kill_9_between_broadcast_and_receipt_never_delivers_twice(
    deployment: Deployment, anvil: Anvil, tmp_path: Path, mempool: str
) -> None:
    """The agent is SIGKILLed after journaling + broadcasting and before the receipt.

    ``lost``: the transaction is also dropped from the mempool, as if the crash came before
    the broadcast; the restarted agent must re-broadcast the journaled bytes, not recompute.
    """
    dep = deployment
    consumer = await subscription_consumer(dep)
    await dep.chain.call_fn(consumer.functions.createSubscription("echo", 2, PERIOD, 1, False))
    await rpc(dep, "anvil_setBalance", NODE, hex(10**20))
    state, port = tmp_path / "state", free_port()
    async with (
        running_service("echo") as (service, service_url),
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        config = tmp_path / "config.yaml"
        config.write_text(
            json.dumps(
                {
                    "server": {"port": port, "rate_limit_enabled": False},
                    "manage_containers": False,
                    "containers": [{"id": "echo", "url": service_url}],
                    "chain": {
                        "enabled": True,
                        "rpc_url": anvil.url,
                        "registry_address": dep.registry.address,
                        "trail_head_blocks": 0,
                        "wallet": {"private_key": {"env": "NODE_AGENT_TEST_KEY"}},
                        "snapshot_sync": {"sync_period": 0.1},
                    },
                    "onchain": {"stuck_after_seconds": 600},
                }
            )
        )
        log = tmp_path / "agent.log"

        async def chain_info() -> dict[str, Any]:
            async with http.get(f"http://127.0.0.1:{port}/info") as response:
                info: dict[str, Any] = await response.json()
                return dict(info["chain"])

        async def tracking() -> bool:
            try:
                return bool((await chain_info()).get("tracked_subscriptions") == 1)
            except aiohttp.ClientError:
                return False

        async with agent_process(config, state, log) as first:
            await eventually(tracking, what="agent tracking the subscription")
            await rpc(dep, "evm_setAutomine", False)
            await dep.chain.advance(PERIOD + 1)

            async def broadcast() -> bool:
                txs = journaled_txs(state)
                return bool(txs) and await rpc(dep, "eth_getTransactionByHash", txs[0]) is not None

            await eventually(broadcast, what="delivery journaled and broadcast")
            first.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
        [tx_hash] = journaled_txs(state)
        if mempool == "lost":
            await rpc(dep, "anvil_dropTransaction", tx_hash)
            assert await rpc(dep, "eth_getTransactionByHash", tx_hash) is None
        assert len(service.requests) == 1

        async with agent_process(config, state, log):

            async def in_mempool() -> bool:
                return await rpc(dep, "eth_getTransactionByHash", tx_hash) is not None

            await eventually(tracking, what="restarted agent up")
            await eventually(in_mempool, what="journaled transaction in the mempool")
            await rpc(dep, "evm_mine")
            await rpc(dep, "evm_setAutomine", True)
            await eventually(lambda: equals(deliveries(consumer), 1))

            async def settled() -> bool:
                info = await chain_info()
                head = await dep.chain.w3.eth.block_number
                return bool(
                    info["scheduled_block"] is not None
                    and info["scheduled_block"] >= head
                    and info["deliveries_in_flight"] == 0
                )

            await eventually(settled, what="restarted agent settled")
            receipt = await dep.chain.w3.eth.get_transaction_receipt(tx_hash)
            assert receipt["status"] == 1  # the very transaction journaled before the crash
            assert journaled_txs(state) == [tx_hash]
            assert len(service.requests) == 1  # never recomputed
            assert await mined_nonce(dep) == 1
            assert await deliveries(consumer) == 1

            await dep.chain.advance(PERIOD)  # the next interval still works
            await eventually(lambda: equals(deliveries(consumer), 2))
            assert len(service.requests) == 2
            assert await mined_nonce(dep) == 2
