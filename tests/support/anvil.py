"""A real ``anvil`` chain for tests, plus the deployed contract set.

Any suite can use it: ``start_anvil()`` (from ``node_agent.chain.devnet``, shared with the demo)
picks a free port, waits until JSON-RPC answers and returns a handle whose ``stop()`` terminates
it; ``deploy_all(anvil)`` deploys Coordinator, Inbox, Reader, Registry and the example consumers
with the well-known anvil keys.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.contract.async_contract import AsyncContractFunction
from web3.types import TxReceipt

from node_agent.chain.deploy import (
    Deployment,
    ExampleConsumers,
    load_artifact,
)
from node_agent.chain.devnet import (
    DELEGATE_SIGNER_KEY,
    DEPLOYER_KEY,
    NODE_KEYS,
    Anvil,
    deploy_devnet,
    running_anvil,
    start_anvil,
)
from node_agent.chain.tools import build_contracts
from node_agent.chain.transport import web3_client

__all__ = [
    "DELEGATE_SIGNER_KEY",
    "DEPLOYER_KEY",
    "NODE_KEYS",
    "Anvil",
    "running_anvil",
    "start_anvil",
]


@dataclass
class DeployedChain:
    anvil: Anvil
    deployment: Deployment
    examples: ExampleConsumers
    delegate_signer: str = field(default=Account.from_key(DELEGATE_SIGNER_KEY).address)

    def web3(self) -> AsyncWeb3[Any]:
        """A fresh AsyncWeb3 for the calling event loop."""
        return web3_client(self.anvil.url, timeout=10)

    def contract(self, w3: AsyncWeb3[Any], name: str, address: str) -> AsyncContract:
        return w3.eth.contract(address=w3.to_checksum_address(address), abi=load_artifact(name).abi)


def deploy_all(anvil: Anvil, subscription_inputs: bytes = b"hello") -> DeployedChain:
    """forge build (cached) and deploy the whole set plus example consumers to ``anvil``."""
    build_contracts()

    deployment, examples = asyncio.run(deploy_devnet(anvil.url, subscription_inputs))
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
