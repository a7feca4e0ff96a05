"""The Coordinator's 11-field Subscription and its interval arithmetic (pure).

Time is always the *block* timestamp the caller passes in: the Coordinator checks the interval
against ``block.timestamp``, so the node's wall clock is irrelevant (and may be wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
CANCELLED_ACTIVE_AT = 2**32 - 1


@dataclass(frozen=True)
class Subscription:
    """Field order is the SDK's; it is part of the signed EIP-712 type."""

    owner: str
    active_at: int
    period: int
    frequency: int
    redundancy: int
    container_id: bytes
    lazy: bool
    verifier: str
    payment_amount: int
    payment_token: str
    wallet: str

    @classmethod
    def from_tuple(cls, raw: tuple[Any, ...] | list[Any]) -> Subscription:
        """From the ABI-decoded struct (getSubscription / readSubscriptionBatch)."""
        (
            owner,
            active_at,
            period,
            frequency,
            redundancy,
            cid,
            lazy,
            verifier,
            amount,
            token,
            wallet,
        ) = raw
        return cls(
            owner=to_checksum_address(owner),
            active_at=int(active_at),
            period=int(period),
            frequency=int(frequency),
            redundancy=int(redundancy),
            container_id=bytes(cid),
            lazy=bool(lazy),
            verifier=to_checksum_address(verifier),
            payment_amount=int(amount),
            payment_token=to_checksum_address(token),
            wallet=to_checksum_address(wallet),
        )

    def to_tuple(self) -> tuple[Any, ...]:
        return (
            self.owner,
            self.active_at,
            self.period,
            self.frequency,
            self.redundancy,
            self.container_id,
            self.lazy,
            self.verifier,
            self.payment_amount,
            self.payment_token,
            self.wallet,
        )

    def to_json(self) -> dict[str, Any]:
        """Storage form (container_id as 0x-hex)."""
        data = dict(zip(_FIELDS, self.to_tuple(), strict=True))
        data["container_id"] = "0x" + self.container_id.hex()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Subscription:
        values = dict(data)
        values["container_id"] = bytes.fromhex(str(values["container_id"]).removeprefix("0x"))
        return cls(**values)

    # --- semantics -------------------------------------------------------------------------

    @property
    def exists(self) -> bool:
        return int(self.owner, 16) != 0

    @property
    def cancelled(self) -> bool:
        return self.active_at == CANCELLED_ACTIVE_AT

    @property
    def requires_proof(self) -> bool:
        return int(self.verifier, 16) != 0

    @property
    def pays(self) -> bool:
        return self.payment_amount > 0

    def is_active(self, now: int) -> bool:
        """Deliverable from ``activeAt`` on (the Coordinator reverts when now < activeAt)."""
        return not self.cancelled and now >= self.active_at

    def interval_at(self, now: int) -> int:
        """The interval the Coordinator would compute at block time ``now`` (>= activeAt)."""
        if self.period == 0:
            return 1
        return (now - self.active_at) // self.period + 1

    def is_past(self, now: int) -> bool:
        """Every interval has closed: nothing can be delivered any more."""
        return self.is_active(now) and self.interval_at(now) > self.frequency

    def seconds_left_in_interval(self, now: int) -> int | None:
        """Seconds until the current interval closes; None for a callback (never closes)."""
        if self.period == 0:
            return None
        return self.active_at + self.interval_at(now) * self.period - now


_FIELDS = (
    "owner",
    "active_at",
    "period",
    "frequency",
    "redundancy",
    "container_id",
    "lazy",
    "verifier",
    "payment_amount",
    "payment_token",
    "wallet",
)
