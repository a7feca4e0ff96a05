"""GCRA rate limiting (the algorithm quart-rate-limiter uses), as a pure in-memory core.

A bucket allows ``count`` requests per ``period`` seconds with a burst of ``count``: each
request moves the bucket's theoretical arrival time (TAT) forward by ``period / count``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: float
    remaining: int


class GcraLimiter:
    def __init__(self, count: int, period: float, max_keys: int = 100_000) -> None:
        self.count = count
        self.period = period
        self.interval = period / count
        self._tat: dict[str, float] = {}
        self._max_keys = max_keys

    def check(self, key: str, now: float) -> Verdict:
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + self.interval
        allow_at = new_tat - self.period
        if allow_at > now:
            return Verdict(False, allow_at - now, 0)
        self._tat[key] = new_tat
        if len(self._tat) > self._max_keys:
            self.prune(now)
        remaining = int((now - allow_at) / self.interval)
        return Verdict(True, 0.0, remaining)

    def prune(self, now: float) -> None:
        """Forget buckets that are full again (their TAT is in the past)."""
        self._tat = {k: t for k, t in self._tat.items() if t > now}
