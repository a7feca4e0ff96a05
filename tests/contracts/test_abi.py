"""The deployed contracts speak infernet-sdk v1.x's ABI, and the shipped ABI JSON is current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from web3 import AsyncWeb3
from web3.logs import DISCARD

from tests.support.anvil import DEPLOYER_KEY, DeployedChain, transact

pytestmark = pytest.mark.chain

ABI_DIR = Path(__file__).resolve().parents[2] / "node_agent" / "abi"
REPO_ROOT = Path(__file__).resolve().parents[2]

SUB = "(address,uint32,uint32,uint32,uint16,bytes32,bool,address,uint256,address,address)"
DATA = "bytes,bytes,bytes"
PAYMENT = "address,uint256,address,address"
# Selectors as listed in shared/reference/contracts.md (sections 2.1-2.4), i.e. the SDK's.
SDK_COORDINATOR_FUNCTIONS = {
    "deliverCompute(uint32,uint32,bytes,bytes,bytes,address)": "c509543d",
    f"deliverComputeDelegatee(uint32,uint32,{SUB},uint8,bytes32,bytes32,uint32,{DATA},address)": (
        "9fff314a"
    ),
    f"createSubscription(string,uint32,uint32,uint16,bool,{PAYMENT})": "84050893",
    "cancelSubscription(uint32)": "31e451a9",
    "getSubscription(uint32)": "a17b920b",
    "getSubscriptionInterval(uint32,uint32)": "836a6cc9",
    "id()": "af640d0f",
    "redundancyCount(bytes32)": "bc85694f",
    "nodeResponded(bytes32)": "298f7bdc",
    f"createSubscriptionDelegatee(uint32,uint32,{SUB},uint8,bytes32,bytes32)": "9c092514",
    "delegateCreatedIds(bytes32)": "60ed0f61",
    "maxSubscriberNonce(address)": "7fb61b27",
    "eip712Domain()": "84b0196e",
    "proofRequests(bytes32)": "c34cf5c7",
    "finalizeProofVerification(uint32,uint32,address,bool)": "196ab123",
}
SDK_READER_FUNCTIONS = {
    "readSubscriptionBatch(uint32,uint32)": "3ddc29f5",
    "readRedundancyCountBatch(uint32[],uint32[])": "757f1c84",
}
SDK_CONSUMER_FUNCTIONS = {
    "rawReceiveCompute(uint32,uint32,uint16,address,bytes,bytes,bytes,bytes32,uint256)": "7a411a8d",
    "getContainerInputs(uint32,uint32,uint32,address)": "962fad75",
}
SDK_ERRORS = {
    "SubscriptionNotFound()": "1a00354f",
    "SubscriptionNotActive()": "efb74efe",
    "IntervalMismatch()": "4db310c3",
    "SubscriptionCompleted()": "ae6704a7",
    "IntervalCompleted()": "2f4ca85b",
    "NodeRespondedAlready()": "88a21e4f",
    "NotSubscriptionOwner()": "a7fba711",
    "SignatureExpired()": "0819bdcd",
    "SignerMismatch()": "10c74b03",
    "InvalidSignature()": "8baa579f",
    "Reentrancy()": "ab143c06",
    "InvalidWallet()": "23455ba1",
    "UnsupportedVerifierToken()": "e2372799",
    "UnauthorizedVerifier()": "b9857aa1",
    "ProofRequestNotFound()": "1d68b37c",
}
SDK_EVENTS = {
    "SubscriptionCreated(uint32)": (
        "04344ed7a67fec80c444d56ee1cee242f3f75b91fecc8dbce8890069c82eb48e"
    ),
    "SubscriptionCancelled(uint32)": (
        "f4126e31c182db4c4109605c6d50470fc7e8ca90d62d44fd25cbe049fb9cac3e"
    ),
    "SubscriptionFulfilled(uint32,address)": (
        "c68fb0ae5cea2793405d29014d881bcda18f67122e0bcd7d0a577e118b64e4c8"
    ),
}
# The reference gives ProofVerified's topic0 by its first four bytes only.
PROOF_VERIFIED = ("ProofVerified(uint32,uint32,address,bool,address,bool)", "af155661")

# Payments (reference sections 2.1, 2.4, 2.5, 5 and 9): the SDK v1.1 functions by signature, the
# errors with the reference's selectors, the events with the SDK's spelling and indexed fields.
SDK_PAYMENT_FUNCTIONS = {
    "Wallet": [
        "owner()",
        "allowance(address,address)",
        "withdraw(address,uint256)",
        "approve(address,address,uint256)",
        "cTransfer(address,address,address,uint256)",
        "cLock(address,address,uint256)",
        "cUnlock(address,address,uint256)",
    ],
    "WalletFactory": ["createWallet(address)", "isValidWallet(address)"],
    "Fee": ["FEE()", "FEE_RECIPIENT()", "updateFee(uint16)", "owner()"],
    "Verifier": [
        "getWallet()",
        "isSupportedToken(address)",
        "fee(address)",
        "requestProofVerification(uint32,uint32,address,bytes)",
    ],
}
SDK_WALLET_ERRORS = {
    "InsufficientFunds()": "356680b7",
    "InsufficientAllowance()": "13be252b",
    "TransferFailed()": "90b8ec18",
    "ETHTransferFailed()": "b12d13eb",
    "NotCoordinator()": "9ec853e6",
}
# event signature -> indexed flags of its inputs
SDK_PAYMENT_EVENTS = {
    "Wallet": {
        "Withdrawl(address,uint256)": [False, False],
        "Approval(address,address,uint256)": [True, False, False],
        "Escrow(address,address,uint256,bool)": [True, False, False, False],
        "Transfer(address,address,address,uint256)": [True, False, True, False],
    },
    "WalletFactory": {"WalletCreated(address,address,address)": [True, True, False]},
    "Coordinator": {PROOF_VERIFIED[0]: [True, True, True, False, False, False]},
}


def _canonical_type(entry: dict[str, object]) -> str:
    kind = str(entry["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in entry["components"])  # type: ignore[attr-defined]
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _signatures(name: str, kind: str) -> dict[str, dict[str, Any]]:
    abi = json.loads((ABI_DIR / f"{name}.json").read_text())
    return {
        f"{e['name']}({','.join(_canonical_type(i) for i in e['inputs'])})": e
        for e in abi
        if e["type"] == kind
    }


def _selector(signature: str) -> str:
    return keccak(text=signature)[:4].hex()


@pytest.mark.parametrize(
    ("abi_name", "expected"),
    [
        ("Coordinator", SDK_COORDINATOR_FUNCTIONS),
        ("Reader", SDK_READER_FUNCTIONS),
        ("Consumer", SDK_CONSUMER_FUNCTIONS),
    ],
)
def test_function_selectors_match_the_sdk(abi_name: str, expected: dict[str, str]) -> None:
    ours = _signatures(abi_name, "function")
    for signature, selector in expected.items():
        assert _selector(signature) == selector, f"reference table typo for {signature}"
        assert signature in ours, f"{abi_name} lacks {signature}"


@pytest.mark.parametrize(("abi_name", "signatures"), sorted(SDK_PAYMENT_FUNCTIONS.items()))
def test_payment_functions_match_the_sdk(abi_name: str, signatures: list[str]) -> None:
    ours = _signatures(abi_name, "function")
    for signature in signatures:
        assert signature in ours, f"{abi_name} lacks {signature}"


@pytest.mark.parametrize(("abi_name", "events"), sorted(SDK_PAYMENT_EVENTS.items()))
def test_payment_events_match_the_sdk(abi_name: str, events: dict[str, list[bool]]) -> None:
    ours = _signatures(abi_name, "event")
    for signature, indexed in events.items():
        assert signature in ours, f"{abi_name} lacks event {signature}"
        assert [i["indexed"] for i in ours[signature]["inputs"]] == indexed, signature
    assert keccak(text=PROOF_VERIFIED[0]).hex().startswith(PROOF_VERIFIED[1])


def test_wallet_errors_match_the_sdk() -> None:
    wallet = _signatures("Wallet", "error")
    shipped = {f"{e['name']}()" for e in json.loads((ABI_DIR / "Errors.json").read_text())}
    for signature, selector in SDK_WALLET_ERRORS.items():
        assert _selector(signature) == selector, f"reference table typo for {signature}"
        assert signature in wallet and signature in shipped, signature


def test_errors_and_events_match_the_sdk() -> None:
    errors = _signatures("Coordinator", "error")
    for signature, selector in SDK_ERRORS.items():
        assert signature in errors and _selector(signature) == selector
    events = _signatures("Coordinator", "event")
    for signature, topic in SDK_EVENTS.items():
        assert signature in events and keccak(text=signature).hex() == topic


async def test_deployed_coordinator_dispatches_sdk_selectors(
    chain: DeployedChain, w3: AsyncWeb3[Any]
) -> None:
    code = bytes(await w3.eth.get_code(chain.deployment.coordinator))
    for signature, selector in SDK_COORDINATOR_FUNCTIONS.items():
        assert bytes.fromhex(selector) in code, (
            f"deployed Coordinator does not dispatch {signature}"
        )
    reader_code = bytes(await w3.eth.get_code(chain.deployment.reader))
    for selector in SDK_READER_FUNCTIONS.values():
        assert bytes.fromhex(selector) in reader_code


async def test_registry_points_at_the_deployment(chain: DeployedChain, w3: AsyncWeb3[Any]) -> None:
    registry = chain.contract(w3, "Registry", chain.deployment.registry)
    coordinator = chain.contract(w3, "Coordinator", chain.deployment.coordinator)
    d = chain.deployment
    assert await registry.functions.COORDINATOR().call() == d.coordinator
    assert await registry.functions.INBOX().call() == d.inbox
    assert await registry.functions.READER().call() == d.reader
    fee = await registry.functions.FEE().call()
    factory = await registry.functions.WALLET_FACTORY().call()
    assert fee == await coordinator.functions.fee().call() and int(fee, 16) != 0
    assert factory == await coordinator.functions.walletFactory().call() and int(factory, 16) != 0
    assert d.chain_id == chain.anvil.chain_id


async def test_deployed_payment_contracts_dispatch_sdk_selectors(
    chain: DeployedChain, w3: AsyncWeb3[Any]
) -> None:
    registry = chain.contract(w3, "Registry", chain.deployment.registry)
    factory_address = await registry.functions.WALLET_FACTORY().call()
    fee_address = await registry.functions.FEE().call()
    factory = chain.contract(w3, "WalletFactory", factory_address)
    # A Wallet only exists once created: create one and read its runtime code.
    create = factory.functions.createWallet(chain.deployment.coordinator)
    receipt = await transact(w3, DEPLOYER_KEY, create)
    (created,) = factory.events.WalletCreated().process_receipt(receipt, errors=DISCARD)
    wallet = created["args"]["wallet"]
    codes = {
        "Wallet": bytes(await w3.eth.get_code(w3.to_checksum_address(wallet))),
        "WalletFactory": bytes(await w3.eth.get_code(w3.to_checksum_address(factory_address))),
        "Fee": bytes(await w3.eth.get_code(w3.to_checksum_address(fee_address))),
    }
    for name, code in codes.items():
        for signature in SDK_PAYMENT_FUNCTIONS[name]:
            assert bytes.fromhex(_selector(signature)) in code, (
                f"{name} does not dispatch {signature}"
            )


def test_committed_abi_json_matches_a_fresh_build() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "export-abi.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
