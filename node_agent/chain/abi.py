"""The slice of the Infernet SDK ABI the node calls, as signatures encoded with eth-abi.

Identical on our contracts and on an existing SDK deployment, so one code path serves both.
Encoding by hand (rather than web3 contract objects) keeps calls independent of web3's
contract API, which changed between v6, v7 and v8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

SUBSCRIPTION_TUPLE = (
    "(address,uint32,uint32,uint32,uint16,bytes32,bool,address,uint256,address,address)"
)


@dataclass(frozen=True)
class Function:
    """One contract function: ``name(inputs) -> outputs``."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...] = ()

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.inputs)})"

    @cached_property
    def selector(self) -> bytes:
        # cached: a burst encodes thousands of calls, and a keccak each is a good part of it
        return keccak(text=self.signature)[:4]

    def encode_call(self, *args: Any) -> bytes:
        return self.selector + encode(list(self.inputs), list(args))

    def decode_result(self, data: bytes) -> tuple[Any, ...]:
        return tuple(decode(list(self.outputs), data))


def _fn(name: str, inputs: Sequence[str], outputs: Sequence[str] = ()) -> Function:
    return Function(name, tuple(inputs), tuple(outputs))


# Registry
REGISTRY_COORDINATOR = _fn("COORDINATOR", [], ["address"])
REGISTRY_READER = _fn("READER", [], ["address"])

# Coordinator
COORDINATOR_ID = _fn("id", [], ["uint32"])
GET_SUBSCRIPTION = _fn("getSubscription", ["uint32"], [SUBSCRIPTION_TUPLE])
DELEGATE_CREATED_IDS = _fn("delegateCreatedIds", ["bytes32"], ["uint32"])
NODE_RESPONDED = _fn("nodeResponded", ["bytes32"], ["bool"])
DELIVER_COMPUTE = _fn("deliverCompute", ["uint32", "uint32", "bytes", "bytes", "bytes", "address"])
DELIVER_COMPUTE_DELEGATEE = _fn(
    "deliverComputeDelegatee",
    [
        "uint32",
        "uint32",
        SUBSCRIPTION_TUPLE,
        "uint8",
        "bytes32",
        "bytes32",
        "uint32",
        "bytes",
        "bytes",
        "bytes",
        "address",
    ],
)

# Reader
READ_SUBSCRIPTION_BATCH = _fn(
    "readSubscriptionBatch", ["uint32", "uint32"], [SUBSCRIPTION_TUPLE + "[]"]
)
READ_REDUNDANCY_COUNT_BATCH = _fn(
    "readRedundancyCountBatch", ["uint32[]", "uint32[]"], ["uint16[]"]
)

# Consumer / Delegator
GET_CONTAINER_INPUTS = _fn(
    "getContainerInputs", ["uint32", "uint32", "uint32", "address"], ["bytes"]
)
GET_SIGNER = _fn("getSigner", [], ["address"])

# Payments (SDK v1.1): Registry getters, Fee, WalletFactory, Wallet, verifier, proof requests
REGISTRY_FEE = _fn("FEE", [], ["address"])
REGISTRY_WALLET_FACTORY = _fn("WALLET_FACTORY", [], ["address"])
FEE_AND_RECIPIENT = _fn("feeAndRecipient", [], ["uint16", "address"])
IS_VALID_WALLET = _fn("isValidWallet", ["address"], ["bool"])
CREATE_WALLET = _fn("createWallet", ["address"], ["address"])
WALLET_OWNER = _fn("owner", [], ["address"])
WALLET_ALLOWANCE = _fn("allowance", ["address", "address"], ["uint256"])
WALLET_APPROVE = _fn("approve", ["address", "address", "uint256"])
UNLOCKED_BALANCE = _fn("unlockedBalance", ["address"], ["uint256"])
LOCKED_BALANCE = _fn("lockedBalance", ["address"], ["uint256"])
VERIFIER_SUPPORTS = _fn("isSupportedToken", ["address"], ["bool"])
VERIFIER_FEE = _fn("fee", ["address"], ["uint256"])
PROOF_REQUESTS = _fn("proofRequests", ["bytes32"], ["uint32", "address", "uint256"])
FINALIZE_PROOF = _fn("finalizeProofVerification", ["uint32", "uint32", "address", "bool"])
# ProofVerified(uint32 indexed id, uint32 indexed interval, address indexed node, bool active,
#               address verifier, bool valid)
PROOF_VERIFIED_TOPIC = keccak(text="ProofVerified(uint32,uint32,address,bool,address,bool)")
WALLET_CREATED_TOPIC = keccak(text="WalletCreated(address,address,address)")


def delegate_key(owner: str, nonce: int) -> bytes:
    """``keccak256(abi.encode(address owner, uint32 nonce))``: the delegateCreatedIds key."""
    return keccak(encode(["address", "uint32"], [owner, nonce]))


def node_key(sub_id: int, interval: int, node: str) -> bytes:
    """``keccak256(abi.encode(uint32, uint32, address))``: the key of nodeResponded and
    proofRequests."""
    return keccak(encode(["uint32", "uint32", "address"], [sub_id, interval, node]))
