"""EIP-1559 fees of the node's transactions (pure): under the operator's cap, bumped to replace."""

from __future__ import annotations

from dataclasses import dataclass

GWEI = 10**9
MAX_RISES = 64  # base fee rises priced in at most (1.125**64 ~ 1,900x)


@dataclass(frozen=True)
class FeePolicy:
    max_fee_cap: int | None  # wei; None = uncapped
    priority_fee: int  # wei
    bump_percent: int
    stuck_after: float  # seconds without a receipt before a replacement
    gas_margin_percent: int
    max_gas_limit: int
    confirmations: int

    def fees(self, base_fee: int, blocks_ahead: int = 0) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas) for the current base fee, under the cap.

        Twice the base fee covers about six full blocks in a row (+12.5 % each). A burst of
        the node's own transactions fills blocks itself: a transaction with ``blocks_ahead``
        blocks' worth of the node's gas queued before it gets that many more rises on top, or
        the tail of the burst would be priced out by the head and wait (a cap is a cap: what is
        paid is the base fee of the block it lands in, plus the tip).
        """
        priority = self.priority_fee
        rises = min(max(blocks_ahead, 0), MAX_RISES)
        max_fee = 2 * base_fee * 9**rises // 8**rises + priority
        if self.max_fee_cap is not None:
            max_fee = min(max_fee, self.max_fee_cap)
            priority = min(priority, max_fee)
        return max_fee, priority

    def bumped(self, old_max: int, old_priority: int, base_fee: int) -> tuple[int, int] | None:
        """Replacement fees (at least bump_percent more), or None when the cap forbids it."""
        factor = 100 + self.bump_percent
        priority = max(old_priority * factor // 100 + 1, self.priority_fee)
        max_fee = max(old_max * factor // 100 + 1, 2 * base_fee + priority)
        if self.max_fee_cap is not None and max_fee > self.max_fee_cap:
            return None
        return max_fee, priority

    def gas_limit(self, needed: int) -> int:
        """The limit to send with for ``needed`` gas: the margin on top, under the maximum."""
        return min(needed * (100 + self.gas_margin_percent) // 100, self.max_gas_limit)
