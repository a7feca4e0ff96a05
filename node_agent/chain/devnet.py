"""A local anvil devnet: start it on a free port, wait until it answers, stop it.

Shared by the tests, ``make demo`` and the benchmarks, so all of them run the same real chain.
The keys below belong to anvil's public test mnemonic ("test test ... junk"): every anvil funds
them with 10,000 ETH. They are development keys, never secrets.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eth_account import Account

from node_agent.chain.deploy import Deployment, ExampleConsumers, deploy_contracts, deploy_examples
from node_agent.chain.tools import find_tool
from node_agent.chain.transport import web3_client

DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
NODE_KEYS = (
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
)
DELEGATE_SIGNER_KEY = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        """Synchronous JSON-RPC call (setup code; async code uses its own client)."""
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


def start_anvil(*extra_args: str, timeout: float = 30.0, attempts: int = 3) -> Anvil:
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
                anvil.chain_id = int(anvil.rpc("eth_chainId", timeout=2.0), 16)
                return anvil
            except OSError:
                time.sleep(0.05)
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


async def deploy_devnet(
    url: str, subscription_inputs: bytes = b""
) -> tuple[Deployment, ExampleConsumers]:
    """Deploy the contract set and the example consumers from the deployer key.

    The delegator example accepts signatures of ``DELEGATE_SIGNER_KEY``. Needs ``forge build``.
    """
    w3 = web3_client(url)
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
