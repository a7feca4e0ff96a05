"""The slice of the Infernet SDK ABI the node calls, as signatures encoded with eth-abi.

Identical on our contracts and on an existing SDK deployment, so one code path serves both.
Encoding by hand (rather than web3 contract objects) keeps calls independent of web3's
contract API, which changed between v6, v7 and v8.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
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
        return self.selector + encode_args(self.inputs, args)

    def decode_result(self, data: bytes) -> tuple[Any, ...]:
        if self.outputs == ("bytes",):
            value = _decode_lone_bytes(data)
            if value is not None:
                return (value,)
        return tuple(decode(list(self.outputs), data))


# --- a fast path for the flat signatures a delivery encodes ----------------------------------
#
# Why: eth-abi validates and dispatches through several layers per value; a burst encodes a
# thousand deliverCompute calls twice (a precheck and the real one) and a getContainerInputs
# each, and that was a fifth of the chain side's CPU. Flat signatures of integers, addresses,
# booleans, bytesN, bytes and string are encoded here; anything else, or a value that is not
# exactly of the expected Python type and range, goes to eth-abi (which encodes it or raises
# its own error). The tests compare both on random values.

_FLAT = re.compile(r"(u?int)(\d*)|address|bool|bytes(\d+)|bytes|string")


@cache
def _flat_kinds(types: tuple[str, ...]) -> tuple[tuple[str, int], ...] | None:
    """(kind, size) per type, or None when a type is not flat (tuples, arrays)."""
    kinds = []
    for name in types:
        match = _FLAT.fullmatch(name)
        if match is None:
            return None
        if match.group(1):
            bits = int(match.group(2) or 256)
            if bits % 8 or not 8 <= bits <= 256:
                return None
            kinds.append((match.group(1), bits))
        elif match.group(3):
            size = int(match.group(3))
            if not 1 <= size <= 32:
                return None
            kinds.append(("fixed", size))
        else:
            kinds.append((name, 0))
    return tuple(kinds)


@lru_cache(maxsize=1024)
def _address_word(value: str) -> bytes:
    # eth-abi's own checks (checksum included) once per address: a node repeats a few
    return encode(["address"], [value])


def encode_args(types: tuple[str, ...], args: Sequence[Any]) -> bytes:
    """``abi.encode(types, args)``: eth-abi's bytes, faster for flat signatures."""
    kinds = _flat_kinds(types)
    if kinds is None or len(args) != len(kinds):
        return encode(list(types), list(args))
    head: list[bytes] = []
    tail: list[bytes] = []
    offset = 32 * len(kinds)
    for (kind, size), value in zip(kinds, args, strict=True):
        value_type = type(value)
        if kind == "uint" and value_type is int and 0 <= value < 1 << size:
            head.append(value.to_bytes(32, "big"))
        elif kind == "int" and value_type is int and -(1 << (size - 1)) <= value < 1 << (size - 1):
            head.append(value.to_bytes(32, "big", signed=True))
        elif kind == "address" and value_type is str:
            head.append(_address_word(value))
        elif kind == "bool" and value_type is bool:
            head.append((1 if value else 0).to_bytes(32, "big"))
        elif kind == "fixed" and value_type is bytes and len(value) <= size:
            head.append(value.ljust(32, b"\x00"))
        elif kind in ("bytes", "string") and value_type is (bytes if kind == "bytes" else str):
            data = value if kind == "bytes" else value.encode("utf-8")
            padded = len(data).to_bytes(32, "big") + data + b"\x00" * (-len(data) % 32)
            head.append(offset.to_bytes(32, "big"))
            tail.append(padded)
            offset += len(padded)
        else:  # not what the fast path knows: eth-abi decides (and raises its own errors)
            return encode(list(types), list(args))
    return b"".join(head) + b"".join(tail)


def _decode_lone_bytes(data: bytes) -> bytes | None:
    """``abi.decode(["bytes"], data)`` when ``data`` is exactly as encoders write it."""
    if len(data) < 64 or data[:32] != (32).to_bytes(32, "big"):
        return None
    length = int.from_bytes(data[32:64], "big")
    end = 64 + length
    if len(data) < end or len(data) > end + 31 or any(data[end:]):
        return None
    return bytes(data[64:end])


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
WALLET_WITHDRAW = _fn("withdraw", ["address", "uint256"])
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
    return keccak(encode_args(("address", "uint32"), (owner, nonce)))


def node_key(sub_id: int, interval: int, node: str) -> bytes:
    """``keccak256(abi.encode(uint32, uint32, address))``: the key of nodeResponded and
    proofRequests."""
    return keccak(encode_args(("uint32", "uint32", "address"), (sub_id, interval, node)))
