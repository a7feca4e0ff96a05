"""Coordinator custom errors, decoded by name from revert data.

web3 surfaces a custom error only as ``0x<selector>``; the node keeps its own selector table
(built from the error signatures, so it cannot drift from a typo in a hex literal).
"""

from __future__ import annotations

from eth_utils.crypto import keccak

from node_agent.errors import NodeAgentError

_ERROR_NAMES = (
    "SubscriptionNotFound",
    "SubscriptionNotActive",
    "IntervalMismatch",
    "SubscriptionCompleted",
    "IntervalCompleted",
    "NodeRespondedAlready",
    "NotSubscriptionOwner",
    "InvalidWallet",
    "UnsupportedVerifierToken",
    "UnauthorizedVerifier",
    "ProofRequestNotFound",
    "SignatureExpired",
    "SignerMismatch",
    "InvalidSignature",
    "Reentrancy",
    "NotCoordinator",
    "NodeNotAllowed",
    "InsufficientFunds",
    "InsufficientAllowance",
    "TransferFailed",
    "ETHTransferFailed",
    "InsufficientBalance",
    # added by node-agent's own contracts (validation, payments, ownership)
    "DelegateNonceReused",
    "ZeroFrequency",
    "ZeroRedundancy",
    "EmptyContainerId",
    "OneShotFrequencyNotOne",
    "VerifierRequiresPayment",
    "VerifierFeeTooHigh",
    "FeeTooHigh",
    "FeeRecipientRequired",
    "Unauthorized",
    "NotOwner",
    "NewOwnerIsZeroAddress",
    "RegistryMismatch",
    "NoPendingProof",
)

SELECTORS: dict[bytes, str] = {keccak(text=f"{name}()")[:4]: name for name in _ERROR_NAMES}

# Reverts that mean "this (subscription, interval) needs nothing more from us" — not failures.
BENIGN = frozenset(
    {"NodeRespondedAlready", "IntervalCompleted", "SubscriptionCompleted", "IntervalMismatch"}
)
# Reverts after which the subscription itself is not worth tracking any more.
TERMINAL = frozenset(
    {
        "SubscriptionCompleted",
        "SubscriptionNotFound",
        "SignatureExpired",
        "SignerMismatch",
        "InvalidSignature",
        "DelegateNonceReused",
        "ZeroFrequency",
        "ZeroRedundancy",
        "EmptyContainerId",
        "OneShotFrequencyNotOne",
        "VerifierRequiresPayment",
        "NodeNotAllowed",
    }
)


def _as_bytes(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    text = data[2:] if data[:2].lower() == "0x" else data
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def decode_error_name(data: bytes | str | None) -> str | None:
    """The custom error's name for revert data, or None when it is not one we know."""
    raw = _as_bytes(data)
    return SELECTORS.get(raw[:4]) if len(raw) >= 4 else None


class ChainUnavailable(NodeAgentError):
    """Every RPC endpoint failed for a call; the caller may retry later."""

    status = 503
    default_message = "Chain RPC unavailable"


class Reverted(Exception):
    """An ``eth_call``/``eth_estimateGas`` reverted; ``name`` is the decoded custom error."""

    def __init__(self, data: bytes | str | None, message: str = "") -> None:
        self.data = _as_bytes(data)
        self.name = decode_error_name(self.data)
        super().__init__(self.name or message or "execution reverted")
