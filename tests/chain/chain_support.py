"""Real anvil, the project's compiled contracts, a real HTTP service container, a real runner."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_account import Account
from web3 import AsyncWeb3
from web3.contract import AsyncContract

from node_agent.chain.deploy import Deployment as DevnetDeployment
from node_agent.chain.deploy import ExampleConsumers, load_artifact
from node_agent.chain.devnet import (
    DELEGATE_SIGNER_KEY,
    DEPLOYER_KEY,
    NODE_KEYS,
    Anvil,
    deploy_devnet,
    start_anvil,
)
from node_agent.chain.service import ChainService
from node_agent.chain.tools import build_contracts
from node_agent.chain.transport import web3_client
from node_agent.jobs.model import ContainerResult
from node_agent.jobs.pipeline import PipelineOutcome

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "contracts" / "out"
# anvil's well-known test keys (mnemonic "test test ... junk"), accounts 0-3
KEYS = [DEPLOYER_KEY, *NODE_KEYS, DELEGATE_SIGNER_KEY]


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A fresh anvil per test (installs the npm toolchain and builds the contracts if needed)."""
    build_contracts()
    node = start_anvil()
    yield node
    node.stop()


# Generous: the machine may be loaded by other suites. Polls end as soon as the condition holds.
WITHIN = 90.0
PERIOD = 600  # long intervals: block time never crosses an interval by accident under load


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = WITHIN, what: str = "condition"
) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not met within {within} s")


def artifact(name: str, source: str | None = None) -> dict[str, Any]:
    """forge's artifact of contract ``name`` (from ``source``.sol, by default ``name``.sol)."""
    path = OUT / f"{source or name}.sol" / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


class Chain:
    """Deploys and drives contracts from the deployer account (key 0)."""

    def __init__(self, url: str) -> None:
        self.w3 = web3_client(url)
        self.account = Account.from_key(KEYS[0])

    async def transact(self, tx: dict[str, Any]) -> dict[str, Any]:
        tx.setdefault("from", self.account.address)
        tx_hash = await self.w3.eth.send_transaction(tx)  # type: ignore[arg-type]
        receipt = await self.w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.02)
        assert receipt["status"] == 1, receipt
        return dict(receipt)

    async def deploy(self, name: str, *args: Any, source: str | None = None) -> Any:
        data = artifact(name, source)
        factory = self.w3.eth.contract(abi=data["abi"], bytecode=data["bytecode"]["object"])
        tx = await factory.constructor(*args).build_transaction({"from": self.account.address})
        receipt = await self.transact(tx)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=data["abi"])

    async def call_fn(self, fn: Any) -> dict[str, Any]:
        tx = await fn.build_transaction({"from": self.account.address})
        return await self.transact(tx)

    async def advance(self, seconds: int) -> None:
        await self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        await self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    async def now(self) -> int:
        return int((await self.w3.eth.get_block("latest"))["timestamp"])


@dataclass
class Deployment:
    chain: Chain
    coordinator: Any
    reader: Any
    registry: Any


@pytest.fixture
async def deployment(anvil: Anvil) -> AsyncIterator[Deployment]:
    chain = Chain(anvil.url)
    coordinator = await chain.deploy("Coordinator")
    inbox = await coordinator.functions.inbox().call()
    reader = await chain.deploy("Reader", coordinator.address)
    zero = "0x" + "00" * 20
    registry = await chain.deploy(
        "Registry", coordinator.address, inbox, reader.address, zero, zero
    )
    yield Deployment(chain, coordinator, reader, registry)
    await chain.w3.provider.disconnect()


# --- a service container (real HTTP) and a runner that calls it -----------------------------


class HttpRunner:
    """A small real JobRunner: POSTs each container's /service_output, chaining outputs."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.calls: list[dict[str, Any]] = []

    async def run(
        self,
        containers: Sequence[str],
        data: Any,
        *,
        source: int,
        destination: int,
        requires_proof: bool,
    ) -> PipelineOutcome:
        outcome = PipelineOutcome()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for index, container in enumerate(containers):
                last = index == len(containers) - 1
                body = {
                    "source": source if index == 0 else 1,
                    "destination": destination if last else 1,
                    "data": data,
                    "requires_proof": requires_proof,
                }
                self.calls.append({"container": container, **body})
                try:
                    async with session.post(
                        f"{self.base_url}/{container}/service_output", json=body
                    ) as response:
                        response.raise_for_status()
                        data = await response.json()
                except aiohttp.ClientError as exc:
                    outcome.results.append(ContainerResult(container, error=str(exc)))
                    return outcome
                outcome.results.append(ContainerResult(container, output=data))
        return outcome


@pytest.fixture
async def service_container() -> AsyncIterator[HttpRunner]:
    """Echo service: returns {"echo": data, "container": id}; 'broken' answers 500."""

    async def handle(request: web.Request) -> web.Response:
        container = request.match_info["container"]
        body = await request.json()
        if container == "broken":
            return web.json_response({"error": "boom"}, status=500)
        return web.json_response({"container": container, "echo": body["data"]})

    app = web.Application()
    app.router.add_post("/{container}/service_output", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield HttpRunner(f"http://127.0.0.1:{port}")
    await runner.cleanup()


# --- a TCP proxy the test can cut and restore ------------------------------------------------


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._cut = False

    async def start(self) -> None:
        self._cut = False
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        self._cut = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._conns):
            writer.close()
        self._conns.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Tracked at once: a connection accepted just before a cut, still opening its way
        # upstream, must not survive it (the node's pool would keep using it).
        self._conns.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        if self._cut:
            writer.close()
            up_writer.close()
            return
        self._conns.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def node_config(
    registry: str,
    key: str,
    rpc_url: str,
    state: Path,
    *,
    containers: Sequence[dict[str, Any]] = (),
    onchain: dict[str, Any] | None = None,
    **chain: Any,
) -> Any:
    """A node serving the test containers (plus ``containers``) from ``registry``; ``onchain``
    replaces keys of the onchain section (stuck after 2 s)."""
    from node_agent.config import parse_config

    raw = {
        "manage_containers": False,
        "containers": [
            {"id": "echo", "url": "http://unused"},
            {"id": "second", "url": "http://unused"},
            {"id": "broken", "url": "http://unused"},
            {"id": "hostile", "url": "http://unused"},
            {
                "id": "restricted",
                "url": "http://unused",
                "allowed_delegate_addresses": ["0x000000000000000000000000000000000000dead"],
            },
            *containers,
        ],
        "agent": {"state_dir": str(state)},
        "chain": {
            "enabled": True,
            "rpc_url": rpc_url,
            "registry_address": registry,
            "trail_head_blocks": 0,
            "wallet": {"private_key": key, "max_fee_per_gas_gwei": 50},
            "snapshot_sync": {"sync_period": 0.1, "batch_size": 50},
            "rpc_timeout": 2.0,
            **chain,
        },
        "onchain": {"stuck_after_seconds": 2.0, **(onchain or {})},
    }
    return parse_config(raw)


# --- helpers for tests that drive a ChainService -------------------------------------------


async def settle(node: ChainService, dep: Deployment) -> None:
    """Wait until the node has seen the current head, scheduled it, and has no work left.

    Replaces "sleep a while, then assert nothing happened": once settled, anything the node
    would do about the current chain state has been done.
    """

    async def settled() -> bool:
        head = await dep.chain.w3.eth.block_number
        status = node.status()
        scheduled = status["scheduled_block"]
        if scheduled is None or scheduled < head or status["deliveries_in_flight"]:
            return False
        return not await node.journal.unconfirmed()

    await eventually(settled, what="node settled")


async def start_node(
    dep: Deployment,
    runner: HttpRunner,
    key: str,
    state: Path,
    rpc_url: str | None = None,
    *,
    containers: Sequence[dict[str, Any]] = (),
    onchain: dict[str, Any] | None = None,
) -> ChainService:
    url = rpc_url or str(dep.chain.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    address = Account.from_key(key).address
    await dep.chain.w3.provider.make_request(  # type: ignore[arg-type]
        "anvil_setBalance", [address, hex(10**20)]
    )
    config = node_config(
        dep.registry.address, key, url, state, containers=containers, onchain=onchain
    )
    service = ChainService(config, state, runner)
    await service.start()
    return service


async def subscription_consumer(dep: Deployment, inputs: bytes = b"\x01\x02") -> Any:
    return await dep.chain.deploy("ExampleSubscriptionConsumer", dep.registry.address, inputs)


async def inbox_contract(dep: Deployment) -> Any:
    """The Inbox the Coordinator writes lazy deliveries to (deployed by the Coordinator)."""
    address = await dep.coordinator.functions.inbox().call()
    return dep.chain.w3.eth.contract(address=address, abi=artifact("Inbox")["abi"])


async def deliveries(consumer: Any) -> int:
    return int(await consumer.functions.deliveryCount().call())


async def send_at_nonce(
    dep: Deployment, key: str, nonce: int, max_fee: int, priority_fee: int
) -> Any:
    """1 wei from ``key`` to the deployer at ``nonce``: another program using a node's key.
    The transaction's hash."""
    w3 = dep.chain.w3
    signed = Account.from_key(key).sign_transaction(
        {
            "type": 2,
            "chainId": await w3.eth.chain_id,
            "nonce": nonce,
            "to": dep.chain.account.address,
            "value": 1,
            "gas": 21_000,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": priority_fee,
        }
    )
    return await w3.eth.send_raw_transaction(signed.raw_transaction)


async def rpc(dep: Deployment, method: str, *params: Any) -> Any:
    """A raw JSON-RPC call to anvil (evm_mine, evm_setAutomine, anvil_* ...)."""
    reply = await dep.chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in reply, reply
    return reply.get("result")


async def equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def is_true(value: object) -> bool:
    return bool(value)


# --- a devnet deployed by node_agent.chain.deploy, for tests of the real daemon ---------


@dataclass
class Devnet:
    anvil: Anvil
    w3: AsyncWeb3[Any]
    deployment: DevnetDeployment
    examples: ExampleConsumers

    def contract(self, name: str, address: str) -> AsyncContract:
        return self.w3.eth.contract(address=address, abi=load_artifact(name).abi)  # type: ignore[arg-type]


@pytest.fixture
async def devnet(anvil: Anvil) -> AsyncIterator[Devnet]:
    deployment, examples = await deploy_devnet(anvil.url, subscription_inputs=b"hi")
    w3 = web3_client(anvil.url)
    yield Devnet(anvil, w3, deployment, examples)
    await w3.provider.disconnect()


def agent_config(net: Devnet, service_url: str, state: Path) -> dict[str, Any]:
    return {
        "manage_containers": False,
        "containers": [{"id": "echo", "url": service_url, "description": "echo"}],
        "agent": {"state_dir": str(state)},
        "chain": {
            "enabled": True,
            "rpc_url": net.anvil.url,
            "registry_address": net.deployment.registry,
            "trail_head_blocks": 0,
            "wallet": {"private_key": NODE_KEYS[0]},
            "snapshot_sync": {"sync_period": 0.2},
        },
    }


def client_body(
    net: Devnet, sub: Any, *, nonce: int, expiry: int, key: str, data: dict[str, Any]
) -> dict[str, Any]:
    """The exact JSON infernet-client 1.4.0 POSTs (node.py ``request_delegated_subscription``)."""
    typed = sub.get_delegate_subscription_typed_data(
        nonce, expiry, net.deployment.chain_id, net.deployment.coordinator
    )
    signed = Account.sign_message(typed, key)
    return {
        "signature": {
            "nonce": nonce,
            "expiry": expiry,
            "v": signed.v,
            "r": int(signed.r),
            "s": int(signed.s),
        },
        "subscription": sub.serialized,
        "data": data,
    }


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        return await response.json()


os.environ.setdefault("PYTHONASYNCIODEBUG", "0")
