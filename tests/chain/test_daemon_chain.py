"""End to end through the real daemon: HTTP API, pipeline, chain service, anvil, contracts.

The node-agent ``Daemon`` runs with ``chain.enabled: true`` against a fresh anvil with the
project's contracts and example consumers deployed by ``node_agent.chain.deploy``; its container
is a real in-process HTTP service speaking the Infernet container protocol. A consumer creates a
subscription on-chain, and a client POSTs delegated subscriptions exactly as infernet-client
1.4.0 does (its own ``Subscription`` class and its own ``NodeClient`` method).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from chain_support import PERIOD, Devnet, agent_config, client_body, eventually, get_json
from eth_abi.abi import decode
from eth_account import Account
from web3.contract import AsyncContract

from node_agent.chain.devnet import (
    DELEGATE_SIGNER_KEY,
    DEPLOYER_KEY,
    NODE_KEYS,
)
from tests.support.agent import running_agent
from tests.support.anvil import advance_time, transact
from tests.support.infernet_client import load_node_client, load_subscription_class
from tests.support.service import running_service

pytestmark = pytest.mark.chain
ZERO = "0x" + "00" * 20
NODE = Account.from_key(NODE_KEYS[0]).address


class ChainIdOnly:
    """infernet-client's ``request_delegated_subscription`` asks its RPC for the chain id only."""

    def __init__(self, chain_id: int) -> None:
        self.chain_id = chain_id

    async def get_chain_id(self) -> int:
        return self.chain_id


async def test_daemon_fulfils_subscriptions_and_delegated_requests(
    devnet: Devnet, tmp_path: Path
) -> None:
    net = devnet
    consumer = net.contract("ExampleSubscriptionConsumer", net.examples.subscription)
    delegator = net.contract("ExampleDelegatorConsumer", net.examples.delegator)
    await net.w3.provider.make_request(  # type: ignore[arg-type]
        "anvil_setBalance", [NODE, hex(10**20)]
    )
    async with (
        running_service("echo") as (service, service_url),
        running_agent(agent_config(net, service_url, tmp_path / "state"), tmp_path) as (
            daemon,
            base,
        ),
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):

        async def chain_health_ok() -> bool:
            health = await get_json(http, f"{base}/health")
            return bool(health["checks"]["chain"]["status"] == "ok")

        await eventually(chain_health_ok, what="chain check ok in /health")

        async def head_seen() -> bool:  # /info's chain fields: a snapshot (chain/process.py)
            info = await get_json(http, f"{base}/info")
            return bool(info["chain"]["head"] == await net.w3.eth.block_number)

        await eventually(head_seen, what="/info shows the chain's head")
        info = await get_json(http, f"{base}/info")
        chain = info["chain"]
        assert chain["enabled"] is True and chain["ready"] is True
        assert chain["address"] == NODE
        assert chain["chain_id"] == 31337
        assert chain["coordinator"] == net.deployment.coordinator
        assert chain["event_loop"]["samples"] > 0  # the chain thread's loop, watched
        assert info["health"]["chain"]["status"] == "ok"

        # 1. A subscription created on-chain by the consumer contract.
        await transact(
            net.w3, DEPLOYER_KEY, consumer.functions.createSubscription("echo", 1, PERIOD, 1, False)
        )
        await advance_time(net.w3, PERIOD + 1)

        async def delivered(contract: AsyncContract, count: int) -> bool:
            return bool(await contract.functions.deliveryCount().call() == count)

        await eventually(lambda: delivered(consumer, 1), what="subscription delivered")
        record = record_one = await consumer.functions.getDelivery(1, 1).call()
        assert record[0] == NODE
        (text,) = decode(["string"], record[3])
        assert json.loads(text) == {"service": "echo", "input": "6869", "source": 0}

        # 2. A delegated subscription, POSTed with the body infernet-client sends.
        subscription_cls = load_subscription_class()
        now = int((await net.w3.eth.get_block("latest"))["timestamp"])
        sub = subscription_cls(
            net.examples.delegator, now - 1, 0, 1, 1, ["echo"], False, ZERO, 0, ZERO, ZERO
        )
        bad = client_body(
            net, sub, nonce=1, expiry=now + 600, key=NODE_KEYS[1], data={"prompt": "x"}
        )
        async with http.post(f"{base}/api/jobs", json=bad) as response:
            assert response.status in (400, 401, 403)
            assert (await response.json())["error"] == "Signer mismatch"
        good = client_body(
            net, sub, nonce=1, expiry=now + 600, key=DELEGATE_SIGNER_KEY, data={"prompt": "hi"}
        )
        async with http.post(f"{base}/api/jobs", json=good) as response:
            assert response.status == 200
            assert await response.json() == {}
        await eventually(lambda: delivered(delegator, 1), what="delegated delivered")
        (sub_id,) = [await delegator.functions.lastInterval(i).call() for i in (2,)]
        assert sub_id == 1  # subscription 2 (the delegated one), interval 1
        record = await delegator.functions.getDelivery(2, 1).call()
        (text,) = decode(["string"], record[3])
        assert json.loads(text) == {"service": "echo", "input": {"prompt": "hi"}, "source": 1}

        # 3. The client's own request_delegated_subscription (nonce 2, a new subscription).
        client = load_node_client()(base)
        await client.request_delegated_subscription(
            sub,
            ChainIdOnly(net.deployment.chain_id),
            net.deployment.coordinator,
            now + 600,
            2,
            DELEGATE_SIGNER_KEY,
            {"prompt": "again"},
        )
        await eventually(lambda: delivered(delegator, 2), what="client's delegated delivered")
        record = await delegator.functions.getDelivery(3, 1).call()
        (text,) = decode(["string"], record[3])
        assert json.loads(text)["input"] == {"prompt": "again"}

        info = await get_json(http, f"{base}/info")
        assert info["chain"]["rpc_calls"] > 0
        assert info["chain"]["synced_block"] is not None
        assert (
            info["pending"]["onchain"]
            == info["chain"]["deliveries_in_flight"] + (info["chain"]["delegated_subscriptions"])
        )
        assert len(service.requests) == 3
        assert daemon.chain.status()["address"] == NODE
        # the chain side ran in a process of its own, which stops with the daemon
        chain_pid = daemon.chain.pid
        assert chain_pid is not None and chain_pid != os.getpid()
        os.kill(chain_pid, 0)

        # 4. Killed (the OOM killer), the chain process is started again and resumes from its
        # journal: what it delivered stays delivered once, new intervals are delivered.
        os.kill(chain_pid, signal.SIGKILL)

        async def started_again() -> bool:
            return daemon.chain.pid != chain_pid and await chain_health_ok()

        await eventually(started_again, what="chain process started again")
        assert daemon.chain.status()["process_restarts"] == 1
        await transact(
            net.w3, DEPLOYER_KEY, consumer.functions.createSubscription("echo", 1, PERIOD, 1, False)
        )
        await advance_time(net.w3, PERIOD + 1)
        await eventually(lambda: delivered(consumer, 2), what="delivered after the restart")
        assert await consumer.functions.getDelivery(1, 1).call() == record_one
        assert len(service.requests) == 4  # nothing computed twice
        chain_pid = daemon.chain.pid
        os.kill(chain_pid, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(chain_pid, 0)


async def test_chain_that_cannot_start_is_reported_and_offchain_still_serves(
    devnet: Devnet, tmp_path: Path
) -> None:
    async with running_service("echo") as (_, service_url):
        raw = agent_config(devnet, service_url, tmp_path / "state")
        key_file = tmp_path / "garbled-key"
        key_file.write_text("0xnot-a-key\n")
        raw["chain"]["wallet"] = {"private_key": {"file": str(key_file)}}
        async with (
            running_agent(raw, tmp_path) as (_, base),
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        ):
            health = await get_json(http, f"{base}/health")
            assert health["checks"]["chain"]["status"] == "unhealthy"
            assert "not-a-key" not in json.dumps(health)  # a reason, never the secret
            assert health["checks"]["chain"]["reason"]
            client = load_node_client()(base)
            job_id = await client.request_job({"containers": ["echo"], "data": {"x": 1}})
            result = await client.get_job_result_sync(job_id)
            assert result["status"] == "success"
            async with http.post(f"{base}/api/jobs", json={"subscription": {}}) as response:
                assert response.status >= 400
                assert "error" in await response.json()
