"""EIP-712 typed data of a delegated subscription, exactly as infernet-client 1.4.0 signs it.

Also the container-set hash and a strict signer recovery (high-s and zero-address recoveries
are refused, as the contracts refuse them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi.abi import encode
from eth_account.messages import encode_typed_data
from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError

from node_agent.chain.subscription import Subscription

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2

DOMAIN_NAME = "InfernetCoordinator"
DOMAIN_VERSION = "1"

_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "DelegateSubscription": [
        {"name": "nonce", "type": "uint32"},
        {"name": "expiry", "type": "uint32"},
        {"name": "sub", "type": "Subscription"},
    ],
    "Subscription": [
        {"name": "owner", "type": "address"},
        {"name": "activeAt", "type": "uint32"},
        {"name": "period", "type": "uint32"},
        {"name": "frequency", "type": "uint32"},
        {"name": "redundancy", "type": "uint16"},
        {"name": "containerId", "type": "bytes32"},
        {"name": "lazy", "type": "bool"},
        {"name": "verifier", "type": "address"},
        {"name": "paymentAmount", "type": "uint256"},
        {"name": "paymentToken", "type": "address"},
        {"name": "wallet", "type": "address"},
    ],
}


def container_set_hash(container_ids: Sequence[str]) -> bytes:
    """``keccak256(abi.encode(string))`` of the comma-joined ids (not encodePacked)."""
    return keccak(encode(["string"], [",".join(container_ids)]))


def typed_data(
    sub: Subscription, *, nonce: int, expiry: int, chain_id: int, coordinator: str
) -> dict[str, Any]:
    """The full EIP-712 message (domain, types, primary type, message)."""
    return {
        "types": _TYPES,
        "primaryType": "DelegateSubscription",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(coordinator),
        },
        "message": {
            "nonce": nonce,
            "expiry": expiry,
            "sub": {
                "owner": sub.owner,
                "activeAt": sub.active_at,
                "period": sub.period,
                "frequency": sub.frequency,
                "redundancy": sub.redundancy,
                "containerId": sub.container_id,
                "lazy": sub.lazy,
                "verifier": sub.verifier,
                "paymentAmount": sub.payment_amount,
                "paymentToken": sub.payment_token,
                "wallet": sub.wallet,
            },
        },
    }


def digest(sub: Subscription, *, nonce: int, expiry: int, chain_id: int, coordinator: str) -> bytes:
    """``keccak256(0x1901 || domainSeparator || structHash)``: what the signer signed."""
    message = encode_typed_data(
        full_message=typed_data(
            sub, nonce=nonce, expiry=expiry, chain_id=chain_id, coordinator=coordinator
        )
    )
    return keccak(b"\x19" + message.version + message.header + message.body)


class InvalidSignature(ValueError):
    """The signature cannot be recovered, is malleable (high s) or recovers to address(0)."""


def recover_signer(message_digest: bytes, v: int, r: int, s: int) -> str:
    """Checksummed signer address of a (v, r, s) signature over ``message_digest``."""
    if v not in (27, 28, 0, 1):
        raise InvalidSignature("v must be 27 or 28")
    if not (0 < r < SECP256K1_N) or not (0 < s <= _HALF_N):
        raise InvalidSignature("r/s out of range (high-s signatures are refused)")
    try:
        signature = Signature(vrs=(v - 27 if v >= 27 else v, r, s))
        signer = signature.recover_public_key_from_msg_hash(message_digest).to_checksum_address()
    except (BadSignature, ValidationError, ValueError) as exc:
        raise InvalidSignature(str(exc)) from None
    if int(signer, 16) == 0:
        raise InvalidSignature("signature recovers to the zero address")
    return to_checksum_address(signer)
