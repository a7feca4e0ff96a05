"""Pure retry timing: capped exponential backoff with full jitter, and ``Retry-After``."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay before retry *n* is uniform in [0, min(cap, initial * 2**n)) ("full jitter").

    Full jitter spreads a fleet's retries after an orchestrator outage instead of having every
    node come back in lock-step.
    """

    initial: float = 1.0
    cap: float = 60.0
    rand: Callable[[], float] = field(default=random.random)
    attempts: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * 2 ** min(self.attempts, 32))
        self.attempts += 1
        return float(self.rand() * ceiling)

    def reset(self) -> None:
        self.attempts = 0


def jittered(interval: float, jitter: float, rand: Callable[[], float]) -> float:
    """``interval`` ± ``jitter`` (a fraction), so heartbeats of many nodes do not align."""
    return interval * (1 + jitter * (2 * rand() - 1))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)
