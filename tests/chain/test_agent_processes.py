"""node-agent as real, separate ``node-agent run`` processes against anvil: two agents serving one
subscription with redundancy 2, and ``kill -9`` of an agent between broadcast and receipt.

The container is an in-process protocol service (real HTTP) the agents reach over loopback.
"""

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from chain_support import (
    KEYS,
    PERIOD,
    Deployment,
    deliveries,
    equals,
    eventually,
    rpc,
    subscription_consumer,
)
from eth_account import Account

from node_agent.chain.devnet import Anvil
from tests.support.net import free_port
from tests.support.service import running_service

pytestmark = pytest.mark.chain


@dataclass
class Agent:
    """One agent's files, port and key; ``run()`` starts it as its own process."""

    workdir: Path
    key: str
    port: int

    @property
    def address(self) -> str:
        return str(Account.from_key(self.key).address)

    @property
    def state(self) -> Path:
        return self.workdir / "state"

    def configure(self, service_url: str, anvil: Anvil, registry: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "server": {"port": self.port, "rate_limit_enabled": False},
            "manage_containers": False,
            "containers": [{"id": "echo", "url": service_url}],
            "chain": {
                "enabled": True,
                "rpc_url": anvil.url,
                "registry_address": registry,
                "trail_head_blocks": 0,
                "wallet": {"private_key": {"env": "NODE_AGENT_TEST_KEY"}},
                "snapshot_sync": {"sync_period": 0.1},
            },
            "onchain": {"stuck_after_seconds": 600},
        }
        (self.workdir / "config.yaml").write_text(json.dumps(config))

    @asynccontextmanager
    async def run(self) -> AsyncIterator[Process]:
        """``node-agent run`` as a separate process; the key comes from the environment."""
        env = {**os.environ, "NODE_AGENT_TEST_KEY": self.key}
        config, state = str(self.workdir / "config.yaml"), str(self.state)
        with (self.workdir / "agent.log").open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "node_agent.cli", "run", "--config", config, "--state-dir", state),
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

    async def chain_info(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """``/info`` → ``chain``; empty while the agent is not up yet."""
        try:
            async with http.get(f"http://127.0.0.1:{self.port}/info") as response:
                info: dict[str, Any] = await response.json()
        except aiohttp.ClientError:
            return {}
        return dict(info["chain"])

    async def tracking(self, http: aiohttp.ClientSession, count: int) -> bool:
        return (await self.chain_info(http)).get("tracked_subscriptions") == count

    async def settled(self, http: aiohttp.ClientSession, dep: Deployment) -> bool:
        """Scheduled the current head with nothing in flight (see chain_support.settle)."""
        info = await self.chain_info(http)
        head = await dep.chain.w3.eth.block_number
        scheduled = info.get("scheduled_block")
        return scheduled is not None and scheduled >= head and info["deliveries_in_flight"] == 0

    async def kill_9_after_broadcast(self, http: aiohttp.ClientSession, dep: Deployment) -> str:
        """Run the agent tracking one subscription, open its interval with automine off, and
        SIGKILL the agent once its delivery is journaled and broadcast but not mined; returns
        the journaled transaction's hash."""
        async with self.run() as process:
            await eventually(lambda: self.tracking(http, 1), what="agent tracking")
            await rpc(dep, "evm_setAutomine", False)
            await dep.chain.advance(PERIOD + 1)

            async def broadcast() -> bool:
                txs = self.journaled_txs()
                return bool(txs) and await rpc(dep, "eth_getTransactionByHash", txs[0]) is not None

            await eventually(broadcast, what="delivery journaled and broadcast")
            process.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(process.wait(), 30) == -signal.SIGKILL
        [tx_hash] = self.journaled_txs()
        return tx_hash

    def journaled_txs(self) -> list[str]:
        """Tx hashes in the journal, read from its SQLite file like an operator would."""
        path = self.state / "chain.sqlite"
        if not path.exists():
            return []
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                return [row[0] for row in db.execute("SELECT tx_hash FROM txs ORDER BY nonce")]
        except sqlite3.OperationalError:  # table not created yet
            return []


async def funded_agent(dep: Deployment, workdir: Path, key: str) -> Agent:
    agent = Agent(workdir, key, free_port())
    await rpc(dep, "anvil_setBalance", agent.address, hex(10**20))
    return agent


async def nonce_of(dep: Deployment, address: str) -> int:
    return int(await dep.chain.w3.eth.get_transaction_count(address, "latest"))


@asynccontextmanager
async def http_client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        yield http


async def test_redundancy_two_served_by_two_agent_processes(
    deployment: Deployment, anvil: Anvil, tmp_path: Path
) -> None:
    dep = deployment
    consumer = await subscription_consumer(dep)
    await dep.chain.call_fn(consumer.functions.createSubscription("echo", 2, PERIOD, 2, False))
    agents = [
        await funded_agent(dep, tmp_path / "a", KEYS[1]),
        await funded_agent(dep, tmp_path / "b", KEYS[2]),
    ]
    async with running_service("echo") as (service, url), http_client() as http:
        for agent in agents:
            agent.configure(url, anvil, dep.registry.address)
        async with agents[0].run(), agents[1].run():
            for agent in agents:
                await eventually(lambda a=agent: a.tracking(http, 1), what="agents tracking")
            for interval in (1, 2):
                await dep.chain.advance(PERIOD + 1 if interval == 1 else PERIOD)
                await eventually(lambda n=2 * interval: equals(deliveries(consumer), n))
                for agent in agents:
                    await eventually(lambda a=agent: a.settled(http, dep), what="agent settled")
                assert await deliveries(consumer) == 2 * interval  # exactly redundancy times
            events = await consumer.events.OutputReceived.get_logs(from_block=0)
            by_interval: dict[int, list[str]] = {}
            for event in events:
                by_interval.setdefault(event["args"]["interval"], []).append(event["args"]["node"])
            expected = sorted(agent.address for agent in agents)
            assert {i: sorted(n) for i, n in by_interval.items()} == {1: expected, 2: expected}
            for agent in agents:  # one transaction per interval per node, never two
                assert await nonce_of(dep, agent.address) == 2
                assert len(agent.journaled_txs()) == 2
            assert len(service.requests) == 4


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
    agent = await funded_agent(dep, tmp_path, KEYS[1])
    async with running_service("echo") as (service, url), http_client() as http:
        agent.configure(url, anvil, dep.registry.address)
        tx_hash = await agent.kill_9_after_broadcast(http, dep)
        if mempool == "lost":
            await rpc(dep, "anvil_dropTransaction", tx_hash)
            assert await rpc(dep, "eth_getTransactionByHash", tx_hash) is None
        assert len(service.requests) == 1

        async with agent.run():

            async def in_mempool() -> bool:
                return await rpc(dep, "eth_getTransactionByHash", tx_hash) is not None

            await eventually(lambda: agent.tracking(http, 1), what="restarted agent up")
            await eventually(in_mempool, what="journaled transaction in the mempool")
            await rpc(dep, "evm_mine")
            await rpc(dep, "evm_setAutomine", True)
            await eventually(lambda: equals(deliveries(consumer), 1))
            await eventually(lambda: agent.settled(http, dep), what="restarted agent settled")
            receipt = await dep.chain.w3.eth.get_transaction_receipt(tx_hash)
            assert receipt["status"] == 1  # the very transaction journaled before the crash
            assert agent.journaled_txs() == [tx_hash]
            assert len(service.requests) == 1  # never recomputed
            assert await nonce_of(dep, agent.address) == 1
            assert await deliveries(consumer) == 1

            await dep.chain.advance(PERIOD)  # the next interval still works
            await eventually(lambda: equals(deliveries(consumer), 2))
            assert len(service.requests) == 2
            assert await nonce_of(dep, agent.address) == 2
