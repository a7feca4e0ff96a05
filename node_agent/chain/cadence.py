"""When to poll the head: on time for the block that opens an interval, lazily otherwise.

The node learns of a new block by polling (``sync_period``, 0.5 s by default). For a burst of
subscriptions that open in the same block, every part of that delay is a part of a block lost:
a node that notices the opening block 0.4 s late sends its first deliveries a block later. The
node knows, though, when the next interval opens (chain time) and roughly when the next block
comes (the chain's block time, learnt from the heads it has seen). So when the next block opens
an interval, the head is polled every ``fast`` seconds from a little before that block is due
until it is seen; otherwise every ``period``. Near openings only (about ``period / fast`` more
calls per such block, none in between), and only on chains whose blocks come within
``FAST_CHAINS`` periods: with 12 s blocks a late look costs nothing, the transaction still makes
the next block.
"""

from __future__ import annotations

import statistics
from collections import deque

FAST = 0.1
FAST_CHAINS = 4.0  # block time / period at or under which polling speeds up near openings


class HeadCadence:
    def __init__(self, period: float, *, fast: float = FAST, window: int = 16) -> None:
        self.period = period
        self.fast = min(fast, period)
        self.number: int | None = None
        self.timestamp: int | None = None
        self.seen_at: float | None = None  # local monotonic time the head was first seen
        self._spacing: deque[float] = deque(maxlen=window)  # chain seconds per block

    @property
    def block_time(self) -> float | None:
        """The chain's seconds per block lately (at least 1: timestamps are whole seconds)."""
        if not self._spacing:
            return None
        return max(statistics.median(self._spacing), 1.0)

    def observe(self, number: int, timestamp: int, now: float) -> None:
        """The head the node just read, at local monotonic time ``now``."""
        if self.number is not None and number <= self.number:
            return
        if self.number is not None and self.timestamp is not None:
            self._spacing.append((timestamp - self.timestamp) / (number - self.number))
        self.number, self.timestamp, self.seen_at = number, timestamp, now

    def delay(self, now: float, next_opening: int | None) -> float:
        """Seconds until the next poll; ``next_opening`` is the chain time at which the next
        interval of a tracked subscription opens (None: none known)."""
        block_time = self.block_time
        if (
            next_opening is None
            or block_time is None
            or self.timestamp is None
            or self.seen_at is None
            or next_opening > self.timestamp + block_time
            or block_time > FAST_CHAINS * self.period
        ):
            return self.period
        # The head was seen up to one period after it arrived, so the next block may come
        # one period before seen_at + block_time: poll fast from then, for a while.
        due = self.seen_at + block_time
        start = due - self.period
        if now < start:
            return min(self.period, start - now)
        if now > due + 2 * block_time:  # the block is late: do not spin
            return self.period
        return self.fast
