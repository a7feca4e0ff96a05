"""A real ``anvil`` chain for tests, plus the deployed contract set.

Any suite can use it: ``start_anvil()`` picks a free port, waits until JSON-RPC answers and
returns a handle whose ``stop()`` terminates it; ``deploy_all(anvil)`` deploys Coordinator, Inbox,
Reader, Registry and the example consumers with the well-known anvil keys.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.contract import AsyncContract
from web3.contract.async_contract import AsyncContractFunction
from web3.types import TxReceipt

from node_agent.chain.deploy import (
    Deployment,
    ExampleConsumers,
    deploy_contracts,
    deploy_examples,
    load_artifact,
)
from node_agent.chain.tools import build_contracts, find_tool
from tests.support.net import free_port

# Keys of anvil's default test mnemonic (public knowledge; funded with 10k ETH on every anvil).
DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
NODE_KEYS = (
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
)
DELEGATE_SIGNER_KEY = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"


@dataclass
class Anvil:
    process: subprocess.Popen[bytes]
    port: int
    chain_id: int = 31337

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def rpc(self, method: str, params: list[Any] | None = None, timeout: float = 5.0) -> Any:
        """Synchronous JSON-RPC call (for fixtures; async tests use their AsyncWeb3)."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        request = urllib.request.Request(
            self.url, body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.loads(response.read())
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_anvil(*extra_args: str, timeout: float = 15.0, attempts: int = 3) -> Anvil:
    """Start anvil on a free loopback port and wait until it answers ``eth_chainId``."""
    binary = find_tool("anvil")
    last_error = "anvil did not start"
    for _ in range(attempts):  # another process may grab the port between probe and bind
        port = free_port()
        process = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(port), "--silent", *extra_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        anvil = Anvil(process=process, port=port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                anvil.chain_id = int(anvil.rpc("eth_chainId", timeout=1.0), 16)
                return anvil
            except OSError:
                time.sleep(0.02)
        anvil.stop()
        last_error = (process.stderr.read() if process.stderr else b"").decode()[-2000:]
    raise RuntimeError(f"anvil failed to start: {last_error}")


@contextmanager
def running_anvil(*extra_args: str) -> Iterator[Anvil]:
    anvil = start_anvil(*extra_args)
    try:
        yield anvil
    finally:
        anvil.stop()


@dataclass
class DeployedChain:
    anvil: Anvil
    deployment: Deployment
    examples: ExampleConsumers
    delegate_signer: str = field(default=Account.from_key(DELEGATE_SIGNER_KEY).address)

    def web3(self) -> AsyncWeb3[Any]:
        """A fresh AsyncWeb3 for the calling event loop."""
        return AsyncWeb3(AsyncHTTPProvider(self.anvil.url, request_kwargs={"timeout": 10}))

    def contract(self, w3: AsyncWeb3[Any], name: str, address: str) -> AsyncContract:
        return w3.eth.contract(address=w3.to_checksum_address(address), abi=load_artifact(name).abi)


def deploy_all(anvil: Anvil, subscription_inputs: bytes = b"hello") -> DeployedChain:
    """forge build (cached) and deploy the whole set plus example consumers to ``anvil``."""
    build_contracts()

    async def _deploy() -> tuple[Deployment, ExampleConsumers]:
        w3 = AsyncWeb3(AsyncHTTPProvider(anvil.url, request_kwargs={"timeout": 10}))
        try:
            deployment = await deploy_contracts(w3, DEPLOYER_KEY)
            examples = await deploy_examples(
                w3,
                DEPLOYER_KEY,
                deployment.registry,
                delegate_signer=Account.from_key(DELEGATE_SIGNER_KEY).address,
                subscription_inputs=subscription_inputs,
            )
        finally:
            await w3.provider.disconnect()
        return deployment, examples

    deployment, examples = asyncio.run(_deploy())
    return DeployedChain(anvil=anvil, deployment=deployment, examples=examples)


async def transact(
    w3: AsyncWeb3[Any], key: str, call: AsyncContractFunction, gas: int | None = None
) -> TxReceipt:
    """Sign and send ``call`` from ``key``; return the receipt (raises on revert via estimate)."""
    account = Account.from_key(key)
    params: dict[str, Any] = {
        "from": account.address,
        "nonce": await w3.eth.get_transaction_count(account.address, "pending"),
    }
    if gas is not None:
        params["gas"] = gas
    tx = await call.build_transaction(params)  # type: ignore[arg-type]
    signed = account.sign_transaction(tx)  # type: ignore[arg-type]
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    return await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.02)


async def advance_time(w3: AsyncWeb3[Any], seconds: int) -> None:
    await w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    await w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
