"""Delegated subscriptions signed like infernet-client 1.4.0 are accepted and delivered on anvil.

The typed data is built twice, independently: by our own code below (from the EIP-712 types in the
reference) and by the real client's ``Subscription`` class loaded from its wheel. Both must give
the digest the Coordinator computes on-chain, and the signature must create and deliver.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import keccak
from web3 import AsyncWeb3
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from tests.support.anvil import DELEGATE_SIGNER_KEY, NODE_KEYS, DeployedChain, transact
from tests.support.infernet_client import load_subscription_class

pytestmark = pytest.mark.chain

ZERO = "0x0000000000000000000000000000000000000000"
SUBSCRIPTION_FIELDS = [
    ("owner", "address"),
    ("activeAt", "uint32"),
    ("period", "uint32"),
    ("frequency", "uint32"),
    ("redundancy", "uint16"),
    ("containerId", "bytes32"),
    ("lazy", "bool"),
    ("verifier", "address"),
    ("paymentAmount", "uint256"),
    ("paymentToken", "address"),
    ("wallet", "address"),
]


def container_hash(containers: list[str]) -> bytes:
    return keccak(encode(["string"], [",".join(containers)]))


def our_typed_data(
    sub: dict[str, Any], nonce: int, expiry: int, chain_id: int, coordinator: str
) -> SignableMessage:
    """EIP-712 message built from the reference's domain and type strings (not the client's)."""
    return encode_typed_data(
        full_message={
            "types": {
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
                "Subscription": [{"name": n, "type": t} for n, t in SUBSCRIPTION_FIELDS],
            },
            "primaryType": "DelegateSubscription",
            "domain": {
                "name": "InfernetCoordinator",
                "version": "1",
                "chainId": chain_id,
                "verifyingContract": coordinator,
            },
            "message": {"nonce": nonce, "expiry": expiry, "sub": sub},
        }
    )


def as_tuple(sub: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sub[name] for name, _ in SUBSCRIPTION_FIELDS)


async def _now(w3: AsyncWeb3[Any]) -> int:
    return int((await w3.eth.get_block("latest"))["timestamp"])


def _callback_sub(owner: str, now: int, containers: list[str], redundancy: int) -> dict[str, Any]:
    return {
        "owner": owner,
        "activeAt": now,
        "period": 0,
        "frequency": 1,
        "redundancy": redundancy,
        "containerId": container_hash(containers),
        "lazy": False,
        "verifier": ZERO,
        "paymentAmount": 0,
        "paymentToken": ZERO,
        "wallet": ZERO,
    }


def _signature_args(signed: Any) -> tuple[int, bytes, bytes]:
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


async def test_client_signed_subscription_is_created_and_delivered(
    chain: DeployedChain, w3: AsyncWeb3[Any]
) -> None:
    coordinator = chain.contract(w3, "Coordinator", chain.deployment.coordinator)
    consumer = chain.contract(w3, "ExampleDelegatorConsumer", chain.examples.delegator)
    now = await _now(w3)
    nonce, expiry = secrets.randbelow(2**31) + 1, now + 3600
    containers = ["hello-world", "postprocess"]
    sub = _callback_sub(chain.examples.delegator, now, containers, redundancy=2)

    # The real client's typed data (infernet-client 1.4.0, chain/subscription.py).
    client_sub = load_subscription_class()(
        chain.examples.delegator, now, 0, 1, 2, containers, False, ZERO, 0, ZERO, ZERO
    )
    client_message = client_sub.get_delegate_subscription_typed_data(
        nonce, expiry, chain.anvil.chain_id, chain.deployment.coordinator
    )
    ours = our_typed_data(sub, nonce, expiry, chain.anvil.chain_id, chain.deployment.coordinator)
    assert client_message == ours

    signed = Account.sign_message(client_message, DELEGATE_SIGNER_KEY)
    assert signed == Account.sign_message(ours, DELEGATE_SIGNER_KEY)
    on_chain = await coordinator.functions.hashDelegateSubscription(
        nonce, expiry, as_tuple(sub)
    ).call()
    assert bytes(on_chain) == bytes(signed.message_hash)

    v, r, s = _signature_args(signed)
    deliver = coordinator.functions.deliverComputeDelegatee(
        nonce, expiry, as_tuple(sub), v, r, s, 1, b"input", b"output-1", b"", ZERO
    )
    receipt = await transact(w3, NODE_KEYS[0], deliver)
    assert receipt["status"] == 1
    created = coordinator.events.SubscriptionCreated().process_receipt(receipt, errors=DISCARD)
    fulfilled = coordinator.events.SubscriptionFulfilled().process_receipt(receipt, errors=DISCARD)
    sub_id = created[0]["args"]["id"]
    assert fulfilled[0]["args"]["id"] == sub_id
    assert fulfilled[0]["args"]["node"] == Account.from_key(NODE_KEYS[0]).address

    key = keccak(encode(["address", "uint32"], [chain.examples.delegator, nonce]))
    assert await coordinator.functions.delegateCreatedIds(key).call() == sub_id
    delivery = await consumer.functions.getDelivery(sub_id, 1).call()
    assert delivery[0] == Account.from_key(NODE_KEYS[0]).address
    assert delivery[3] == b"output-1"

    # A second node reuses the same signature: same subscription, second redundancy slot.
    deliver_again = coordinator.functions.deliverComputeDelegatee(
        nonce, expiry, as_tuple(sub), v, r, s, 1, b"input", b"output-2", b"", ZERO
    )
    receipt = await transact(w3, NODE_KEYS[1], deliver_again)
    assert receipt["status"] == 1
    count_key = keccak(encode(["uint32", "uint32"], [sub_id, 1]))
    assert await coordinator.functions.redundancyCount(count_key).call() == 2
    assert (
        await coordinator.functions.createSubscriptionDelegatee(
            nonce, expiry, as_tuple(sub), v, r, s
        ).call()
        == sub_id
    )


async def _custom_error(call: Any, sender: str) -> str:
    with pytest.raises(ContractCustomError) as raised:
        await call.call({"from": sender})
    return str(raised.value.data)[:10]


def _error_selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


async def test_nonce_reuse_wrong_signer_and_expiry_are_rejected(
    chain: DeployedChain, w3: AsyncWeb3[Any]
) -> None:
    coordinator = chain.contract(w3, "Coordinator", chain.deployment.coordinator)
    node = Account.from_key(NODE_KEYS[0]).address
    now = await _now(w3)
    nonce, expiry = secrets.randbelow(2**31) + 1, now + 3600
    chain_id, address = chain.anvil.chain_id, chain.deployment.coordinator

    sub = _callback_sub(chain.examples.delegator, now, ["a"], redundancy=1)
    signed = Account.sign_message(
        our_typed_data(sub, nonce, expiry, chain_id, address), DELEGATE_SIGNER_KEY
    )
    create = coordinator.functions.createSubscriptionDelegatee(
        nonce, expiry, as_tuple(sub), *_signature_args(signed)
    )
    assert (await transact(w3, NODE_KEYS[0], create))["status"] == 1

    other = _callback_sub(chain.examples.delegator, now, ["b"], redundancy=1)
    other_signed = Account.sign_message(
        our_typed_data(other, nonce, expiry, chain_id, address), DELEGATE_SIGNER_KEY
    )
    reuse = coordinator.functions.deliverComputeDelegatee(
        nonce, expiry, as_tuple(other), *_signature_args(other_signed), 1, b"", b"x", b"", ZERO
    )
    assert await _custom_error(reuse, node) == _error_selector("DelegateNonceReused()")

    fresh = nonce + 1
    wrong = Account.sign_message(
        our_typed_data(other, fresh, expiry, chain_id, address), NODE_KEYS[1]
    )
    wrong_signer = coordinator.functions.createSubscriptionDelegatee(
        fresh, expiry, as_tuple(other), *_signature_args(wrong)
    )
    assert await _custom_error(wrong_signer, node) == _error_selector("SignerMismatch()")

    expired = Account.sign_message(
        our_typed_data(other, fresh, now - 1, chain_id, address), DELEGATE_SIGNER_KEY
    )
    late = coordinator.functions.createSubscriptionDelegatee(
        fresh, now - 1, as_tuple(other), *_signature_args(expired)
    )
    assert await _custom_error(late, node) == _error_selector("SignatureExpired()")
