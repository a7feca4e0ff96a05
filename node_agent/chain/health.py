"""Loop health (pure): a chain loop that keeps failing must show in ``/health``, not only in logs.

Each supervised loop reports every step's outcome to its ``FailureStreak``. One failure is
normal on a public RPC (a timeout, a 429) and is retried with backoff; ``threshold`` failures in
a row mean the loop is not doing its job (discovery frozen, deliveries not confirmed), so
``checks.chain`` turns unhealthy with the loop's last error until a step succeeds again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Consecutive failed steps after which a loop counts as broken (with the supervisor's backoff,
# 0.5 + 1 + 2 + 4 s: about 8 s of failing, plus the RPC timeouts).
DEFAULT_THRESHOLD = 5


@dataclass
class FailureStreak:
    """Consecutive failures of one loop's steps, reset by the first success."""

    name: str
    threshold: int = DEFAULT_THRESHOLD
    count: int = 0
    total: int = 0
    error: str | None = None

    @property
    def broken(self) -> bool:
        return self.count >= self.threshold

    def failed(self, error: str) -> bool:
        """Count a failed step; True exactly when this failure makes the loop broken."""
        self.count += 1
        self.total += 1
        self.error = error
        return self.count == self.threshold

    def succeeded(self) -> bool:
        """Reset the streak; True when the loop was broken until now (it recovered)."""
        was_broken = self.broken
        self.count = 0
        return was_broken

    def reason(self) -> str:
        return f"{self.name} failed {self.count} times in a row: {self.error}"


def chain_health(connected: bool, streaks: Iterable[FailureStreak]) -> dict[str, Any]:
    """``checks.chain``'s verdict: unhealthy while a loop is broken, degraded until connected."""
    broken = [streak.reason() for streak in streaks if streak.broken]
    if broken:
        return {"status": "unhealthy", "reason": "; ".join(broken)[:500]}
    return {"status": "ok" if connected else "degraded"}
