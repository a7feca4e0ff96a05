"""Deploy the contract set (Coordinator + Inbox, Reader, Registry) from forge artifacts to any RPC.

Used by the node's integration tests, the demo and real deployments. The Coordinator creates its
Inbox in its constructor and the Registry is deployed last, so no CREATE addresses are precomputed.
Bytecode comes from ``contracts/out`` (``forge build``) in a checkout; an installed package uses
the artifacts it ships in ``node_agent/abi/deploy`` (written by ``scripts/export-abi.py``, which
CI keeps in step with the sources), so no forge is needed to deploy from a wheel.

CLI: ``python -m node_agent.chain.deploy --rpc-url URL [--examples] [--out FILE]`` with the deployer
key in ``$DEPLOYER_PRIVATE_KEY`` (or ``--private-key-file``): keys never go on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import structlog
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3
from web3.types import TxParams

from node_agent.chain.tools import CONTRACTS_DIR, build_contracts
from node_agent.chain.transport import web3_client
from node_agent.errors import ConfigError, InternalError

log = structlog.get_logger(__name__)

DEFAULT_TX_TIMEOUT = 60.0


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str


@dataclass(frozen=True)
class Deployment:
    """Addresses of one deployment (checksummed). Point the node at ``registry``."""

    chain_id: int
    coordinator: str
    inbox: str
    reader: str
    registry: str
    block_number: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExampleConsumers:
    """Example consumers for demos and tests (see contracts/src/examples)."""

    subscription: str
    callback: str
    delegator: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_artifact(name: str, out_dir: Path | None = None) -> Artifact:
    """ABI and creation bytecode of ``name``: from forge's ``out/<name>.sol/<name>.json``
    (``out_dir``, else the checkout's ``contracts/out`` when built), else from the package."""
    path = (out_dir or CONTRACTS_DIR / "out") / f"{name}.sol" / f"{name}.json"
    if out_dir is None and not path.is_file():
        return packaged_artifact(name)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(
            "contract artifact missing; run forge build", {"path": str(path)}
        ) from exc
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"]["object"])


def packaged_artifact(name: str) -> Artifact:
    """The artifact shipped inside the package (only the contracts this module deploys)."""
    resource = importlib.resources.files("node_agent") / "abi" / "deploy" / f"{name}.json"
    try:
        data = json.loads(resource.read_text())
    except FileNotFoundError:
        raise ConfigError(
            "contract artifact missing from the package and no contracts/out; run forge build",
            {"contract": name},
        ) from None
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"])


def in_checkout() -> bool:
    """Whether the contracts' sources are here to build (a checkout, not an installed wheel)."""
    return (CONTRACTS_DIR / "foundry.toml").is_file()


class Deployer:
    """Sends signed contract-creation transactions from one key, tracking the nonce locally."""

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        private_key: str,
        *,
        out_dir: Path | None = None,
        tx_timeout: float = DEFAULT_TX_TIMEOUT,
    ) -> None:
        self._w3 = w3
        self._account: LocalAccount = Account.from_key(private_key)
        self._out_dir = out_dir
        self._tx_timeout = tx_timeout
        self._nonce: int | None = None

    def __repr__(self) -> str:  # never show the key
        return f"Deployer(address={self._account.address})"

    @property
    def address(self) -> str:
        return str(self._account.address)

    async def deploy(self, name: str, *args: Any) -> tuple[str, int]:
        """Deploy contract ``name`` with constructor ``args``; return (address, block number)."""
        artifact = await asyncio.to_thread(load_artifact, name, self._out_dir)
        factory = self._w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        if self._nonce is None:
            self._nonce = await self._w3.eth.get_transaction_count(self._account.address, "pending")
        tx: TxParams = await factory.constructor(*args).build_transaction(
            {"from": self._account.address, "nonce": self._nonce}
        )
        signed = self._account.sign_transaction(cast(dict[str, Any], tx))
        tx_hash = await self._w3.eth.send_raw_transaction(signed.raw_transaction)
        self._nonce += 1
        receipt = await self._w3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=self._tx_timeout, poll_latency=0.05
        )
        address = receipt.get("contractAddress")
        if receipt["status"] != 1 or not address:
            raise InternalError(
                "contract deployment failed", {"contract": name, "tx": tx_hash.to_0x_hex()}
            )
        log.info("contract_deployed", contract=name, address=address, gas=receipt["gasUsed"])
        return str(address), int(receipt["blockNumber"])

    async def call_view(self, name: str, address: str, fn: str, *args: Any) -> Any:
        artifact = await asyncio.to_thread(load_artifact, name, self._out_dir)
        checksummed = self._w3.to_checksum_address(address)
        contract = self._w3.eth.contract(address=checksummed, abi=artifact.abi)
        return await contract.functions[fn](*args).call()


async def deploy_contracts(
    w3: AsyncWeb3[Any],
    private_key: str,
    *,
    out_dir: Path | None = None,
    tx_timeout: float = DEFAULT_TX_TIMEOUT,
) -> Deployment:
    """Deploy Coordinator (+ its Inbox), Reader and Registry; return their addresses."""
    deployer = Deployer(w3, private_key, out_dir=out_dir, tx_timeout=tx_timeout)
    coordinator, _ = await deployer.deploy("Coordinator")
    inbox = await deployer.call_view("Coordinator", coordinator, "inbox")
    reader, _ = await deployer.deploy("Reader", coordinator)
    zero = "0x0000000000000000000000000000000000000000"
    registry, block = await deployer.deploy("Registry", coordinator, inbox, reader, zero, zero)
    return Deployment(
        chain_id=await w3.eth.chain_id,
        coordinator=coordinator,
        inbox=str(inbox),
        reader=reader,
        registry=registry,
        block_number=block,
    )


async def deploy_examples(
    w3: AsyncWeb3[Any],
    private_key: str,
    registry: str,
    *,
    delegate_signer: str,
    subscription_inputs: bytes = b"",
    out_dir: Path | None = None,
    tx_timeout: float = DEFAULT_TX_TIMEOUT,
) -> ExampleConsumers:
    """Deploy the example consumers against ``registry``; the deployer key becomes their owner."""
    deployer = Deployer(w3, private_key, out_dir=out_dir, tx_timeout=tx_timeout)
    subscription, _ = await deployer.deploy(
        "ExampleSubscriptionConsumer", registry, subscription_inputs
    )
    callback, _ = await deployer.deploy("ExampleCallbackConsumer", registry)
    delegator, _ = await deployer.deploy("ExampleDelegatorConsumer", registry, delegate_signer)
    return ExampleConsumers(subscription=subscription, callback=callback, delegator=delegator)


def _read_key(args: argparse.Namespace) -> str:
    if args.private_key_file:
        return Path(args.private_key_file).read_text().strip()
    key = os.environ.get("DEPLOYER_PRIVATE_KEY")
    if not key:
        raise SystemExit("set DEPLOYER_PRIVATE_KEY or pass --private-key-file")
    return key


async def _deploy_from_cli(args: argparse.Namespace, key: str) -> dict[str, Any]:
    if not args.no_build and in_checkout():
        await asyncio.to_thread(build_contracts)
    w3 = web3_client(args.rpc_url)
    try:
        deployment = await deploy_contracts(w3, key)
        result: dict[str, Any] = deployment.to_dict()
        if args.examples:
            signer = args.delegate_signer or Account.from_key(key).address
            examples = await deploy_examples(w3, key, deployment.registry, delegate_signer=signer)
            result["examples"] = examples.to_dict()
    finally:
        await w3.provider.disconnect()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--private-key-file", help="file holding the deployer key (hex)")
    parser.add_argument("--examples", action="store_true", help="also deploy example consumers")
    parser.add_argument("--delegate-signer", help="delegator example's signer (default: deployer)")
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="use existing contracts/out (an installed package never builds: it ships artifacts)",
    )
    parser.add_argument("--out", help="write addresses as JSON here (default: stdout)")
    args = parser.parse_args(argv)
    result = asyncio.run(_deploy_from_cli(args, _read_key(args)))
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
