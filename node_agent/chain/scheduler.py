"""Pure scheduling: container-set lookup and the "is this (subscription, interval) due" rule."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from node_agent.chain.eip712 import container_set_hash
from node_agent.chain.subscription import Subscription


class ContainerLookup:
    """Container-set hash → container ids, for the chains this node can actually run.

    Infernet hashes every permutation of every subset (factorial). Here: every configured
    pipeline, plus chains of up to ``max_length`` distinct containers whose first one is
    external, shortened until the count fits ``max_sets``.
    """

    def __init__(
        self,
        external: Mapping[str, bool],
        *,
        pipelines: Iterable[Sequence[str]] = (),
        max_length: int = 2,
        max_sets: int = 100_000,
    ) -> None:
        self._by_hash: dict[bytes, tuple[str, ...]] = {}
        ids = list(external)
        heads = [cid for cid in ids if external[cid]]
        length = max_length
        while length > 1 and _chain_count(len(heads), len(ids), length) > max_sets:
            length -= 1
        self.max_length = length
        for size in range(1, length + 1):
            for head in heads:
                rest = [cid for cid in ids if cid != head]
                for tail in itertools.permutations(rest, size - 1):
                    self._add((head, *tail))
        for pipeline in pipelines:
            self._add(tuple(pipeline))

    def _add(self, chain: tuple[str, ...]) -> None:
        self._by_hash[container_set_hash(chain)] = chain

    def __len__(self) -> int:
        return len(self._by_hash)

    def containers(self, container_id: bytes) -> tuple[str, ...] | None:
        return self._by_hash.get(bytes(container_id))


def _chain_count(heads: int, total: int, length: int) -> int:
    count = 0
    for size in range(1, length + 1):
        tails = 1
        for k in range(size - 1):
            tails *= max(total - 1 - k, 0)
        count += heads * tails
    return count


@dataclass(frozen=True)
class Due:
    """One unit of work: deliver ``interval`` of ``subscription_id``."""

    subscription_id: int
    interval: int


def current_interval(sub: Subscription, now: int, *, margin: int = 0) -> int | None:
    """The interval worth starting at block time ``now``; None when nothing can be delivered.

    Inactive, cancelled, past the last interval, or within ``margin`` seconds of the interval's
    end (a tx sent then would land in the next interval and revert ``IntervalMismatch``).
    """
    if not sub.is_active(now):
        return None
    interval = sub.interval_at(now)
    if interval > sub.frequency:
        return None
    left = sub.seconds_left_in_interval(now)
    if left is not None and left <= margin and sub.period > margin:
        return None
    return interval


def is_finished(sub: Subscription, now: int, last_interval_count: int | None = None) -> bool:
    """Nothing more will ever be deliverable (drop it from tracking).

    Cancelled, past its last interval, or on its last interval with redundancy reached.
    """
    if sub.cancelled or sub.is_past(now):
        return True
    if sub.is_active(now) and sub.interval_at(now) >= sub.frequency:
        return last_interval_count is not None and last_interval_count >= sub.redundancy
    return False


def candidates(
    subs: Mapping[int, Subscription],
    now: int,
    *,
    done: Callable[[int, int], bool],
    margin: int = 0,
) -> list[Due]:
    """Subscriptions whose current interval this node has not handled yet (no RPC needed)."""
    out = []
    for sub_id, sub in subs.items():
        interval = current_interval(sub, now, margin=margin)
        if interval is not None and not done(sub_id, interval):
            out.append(Due(sub_id, interval))
    return out


def due_after_counts(
    subs: Mapping[int, Subscription], work: Sequence[Due], counts: Sequence[int]
) -> tuple[list[Due], list[Due]]:
    """Split candidates by redundancy: (still open, already full)."""
    open_: list[Due] = []
    full: list[Due] = []
    for item, count in zip(work, counts, strict=True):
        (full if count >= subs[item.subscription_id].redundancy else open_).append(item)
    return open_, full


def next_opening(subs: Iterable[Subscription], now: int) -> int | None:
    """The earliest chain time after ``now`` at which one of ``subs`` opens an interval (its
    first, or its next one); None when none will."""
    best: int | None = None
    for sub in subs:
        if sub.cancelled:
            continue
        if now < sub.active_at:
            opens = sub.active_at
        elif sub.period > 0 and sub.interval_at(now) < sub.frequency:
            opens = sub.active_at + sub.interval_at(now) * sub.period
        else:
            continue
        if best is None or opens < best:
            best = opens
    return best
