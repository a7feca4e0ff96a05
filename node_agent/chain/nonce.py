"""Nonces assigned locally (pure): one sequence per signing key, no RPC per transaction.

The allocator is synced from the chain and the journal (at start, and again after the chain
said ``nonce too low``) and then hands out consecutive blocks of nonces, so a burst of
deliveries is signed and sent without asking the chain for a nonce each time. A block that was
never journaled is given back (the journal write failed), so no hole is left behind.

``plan_queue`` is the decision half of gap and stall handling: from the chain's view of the
key's transactions (mined count, and the pool's count when read) and the transactions the
journal still follows, it says what to re-broadcast, what to fill, what to replace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class NonceAllocator:
    """The next nonce of one key. Not thread-safe: the sender holds its lock around
    ``take`` → journal → (``give_back`` on failure)."""

    def __init__(self) -> None:
        self._next: int | None = None

    @property
    def synced(self) -> bool:
        return self._next is not None

    @property
    def next(self) -> int | None:
        """The nonce the next ``take`` starts at (None until synced)."""
        return self._next

    def sync(self, chain_pending: int, journaled_max: int | None) -> int:
        """Start after both the chain's pending count and the journal's highest nonce: a crash
        between journaling and broadcasting never makes a nonce be used twice."""
        journaled_next = -1 if journaled_max is None else journaled_max + 1
        self._next = max(chain_pending, journaled_next, 0)
        return self._next

    def take(self, count: int) -> range:
        """``count`` consecutive nonces."""
        if self._next is None:
            raise RuntimeError("nonce allocator not synced")
        if count < 0:
            raise ValueError("count must be >= 0")
        taken = range(self._next, self._next + count)
        self._next += count
        return taken

    def give_back(self, taken: range) -> bool:
        """Return the latest block taken (its transactions were never journaled). A block
        that is not the latest cannot be returned without leaving a hole: False then."""
        if self._next is None or taken.stop != self._next:
            return False
        self._next = taken.start
        return True

    def invalidate(self) -> None:
        """Sync again before the next ``take`` (the chain refused a nonce as too low)."""
        self._next = None


@dataclass(frozen=True)
class QueuePlan:
    """What to do about the key's queue of unmined transactions.

    ``resend``: journaled nonces to broadcast again (missing from the pool), lowest first;
    ``fill``: nonces with nothing journaled that block the ones above them (a no-op
    transaction takes each); ``replace``: nonces to re-sign with higher fees (stuck while
    in the pool).
    """

    resend: tuple[int, ...] = ()
    fill: tuple[int, ...] = ()
    replace: tuple[int, ...] = ()
    gap_at: int | None = None

    @property
    def idle(self) -> bool:
        return not (self.resend or self.fill or self.replace)


@dataclass
class QueueState:
    """Progress of the key's mined count, to tell a moving queue from a stuck one."""

    mined: int | None = None
    progress_at: float = 0.0  # when the mined count last moved (or the queue was acted on)
    blocks_still: int = 0  # new blocks seen without the mined count moving
    checked_pool: bool = False  # the pool's count was read at least once since start

    def observe(self, mined: int, now: float, new_block: bool) -> bool:
        """Record the chain's mined count; True when it moved."""
        moved = self.mined is None or mined > self.mined
        if moved:
            self.mined = mined
            self.progress_at = now
            self.blocks_still = 0
        elif new_block:
            self.blocks_still += 1
        return moved

    def pool_worth_reading(self, now: float, *, gap_blocks: int, stuck_after: float) -> bool:
        """Read the pool's count only when the queue may be broken: at start, after
        ``gap_blocks`` blocks or ``stuck_after`` seconds without progress."""
        if not self.checked_pool:
            return True
        return self.blocks_still >= gap_blocks or now - self.progress_at >= stuck_after

    def acted(self, now: float) -> None:
        """The queue was just repaired: give it time before judging it again."""
        self.progress_at = now
        self.blocks_still = 0


def plan_queue(
    *,
    mined: int,
    pool: int,
    top: int | None,
    unmined: Mapping[int, float],
    max_fees: Mapping[int, int],
    base_fee: int,
    now: float,
    stuck_after: float,
    stuck: bool,
) -> QueuePlan:
    """Decide how to repair the key's queue (pure).

    ``mined``: the chain's count of the key's mined transactions; ``pool``: its pending count
    (mined plus the unbroken run of pool transactions above it); ``top``: the highest nonce
    journaled and still followed; ``unmined``: each such nonce (≥ ``mined``) → when its latest
    transaction was signed; ``max_fees``: their fee caps; ``stuck``: the mined count has not
    moved for ``stuck_after`` seconds.

    A pool count below ``top + 1`` is a gap: the pool lost (or never got) the transaction at
    that nonce, and every one above waits behind it. The journaled ones from there up are sent
    again (the pool answers ``already known`` for those it has); a nonce with nothing journaled
    gets a filler. Without a gap, a stuck queue has its lowest transaction re-signed with
    higher fees, plus any whose fee cap is below the base fee (they cannot be mined at all),
    each only once it is ``stuck_after`` old: never the whole queue at once.
    """
    if top is None or top < mined:
        return QueuePlan()
    start = max(pool, mined)
    if start <= top:
        resend = tuple(n for n in range(start, top + 1) if n in unmined)
        fill = tuple(n for n in range(start, top + 1) if n not in unmined)
        return QueuePlan(resend=resend, fill=fill, gap_at=start)
    if not stuck:
        return QueuePlan()
    old = {n for n, signed in unmined.items() if n >= mined and now - signed >= stuck_after}
    if not old:
        return QueuePlan()
    lowest = min(n for n in unmined if n >= mined)
    replace = {n for n in old if n == lowest or max_fees.get(n, base_fee) < base_fee}
    return QueuePlan(replace=tuple(sorted(replace)))
