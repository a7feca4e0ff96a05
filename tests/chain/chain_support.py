"""Real anvil, the project's compiled contracts, a real HTTP service container, a real runner."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_account import Account
from web3 import AsyncHTTPProvider, AsyncWeb3

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "contracts" / "out"
# anvil's well-known test keys (mnemonic "test test ... junk"), accounts 0-3
KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9ad4a6f62fb0a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
]


def find_anvil() -> str | None:
    candidates = [
        ROOT / "contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
        Path("/tmp/chaintools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
    ]
    for path in candidates:
        if path.exists():
            return str(path)
    return shutil.which("anvil")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--silent", *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("anvil did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    binary = find_anvil()
    if binary is None or not (OUT / "Coordinator.sol" / "Coordinator.json").exists():
        pytest.skip(
            "needs anvil and compiled contracts (scripts/setup-chain-tools.sh, forge build)"
        )
    node = Anvil(binary, free_port())
    node.start()
    yield node
    node.stop()


def artifact(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((OUT / f"{name}.sol" / f"{name}.json").read_text())
    return data


class Chain:
    """Deploys and drives contracts from the deployer account (key 0)."""

    def __init__(self, url: str) -> None:
        self.w3 = AsyncWeb3(AsyncHTTPProvider(url))
        self.account = Account.from_key(KEYS[0])

    async def transact(self, tx: dict[str, Any]) -> dict[str, Any]:
        tx.setdefault("from", self.account.address)
        tx_hash = await self.w3.eth.send_transaction(tx)  # type: ignore[arg-type]
        receipt = await self.w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.02)
        assert receipt["status"] == 1, receipt
        return dict(receipt)

    async def deploy(self, name: str, *args: Any) -> Any:
        data = artifact(name)
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


@dataclass
class Result:
    container: str
    output: Any | None = None
    error: str | None = None


@dataclass
class Outcome:
    results: list[Result] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.error is None for r in self.results)


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
    ) -> Outcome:
        outcome = Outcome()
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
                    outcome.results.append(Result(container, error=str(exc)))
                    return outcome
                outcome.results.append(Result(container, output=data))
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

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._conns):
            writer.close()
        self._conns.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._conns.update({writer, up_writer})

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


def node_config(registry: str, key: str, rpc_url: str, state: Path, **chain: Any) -> Any:
    from node_agent.config import parse_config

    raw = {
        "manage_containers": False,
        "containers": [
            {"id": "echo", "url": "http://unused"},
            {"id": "second", "url": "http://unused"},
            {"id": "broken", "url": "http://unused"},
            {
                "id": "restricted",
                "url": "http://unused",
                "allowed_delegate_addresses": ["0x000000000000000000000000000000000000dead"],
            },
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
        "onchain": {"stuck_after_seconds": 2.0},
    }
    return parse_config(raw)


os.environ.setdefault("PYTHONASYNCIODEBUG", "0")
