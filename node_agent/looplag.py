"""Event-loop lag: how late the loop runs a callback that asked to run at a given time.

Every request, job and container call of the node shares the main event loop (the chain
side runs in a process of its own, watched the same way: ``/info`` chain.event_loop), so a
step that holds it (a CPU-heavy batch, a blocking call that slipped in) delays all of them at
once, and no per-request latency says which. A sleeper that wakes every ``PERIOD`` and
measures how late it woke sees exactly that: the lag is the wait any callback ready at that
moment had. The samples go to the recorder (``node_agent_event_loop_lag_seconds``) and the
worst of the last minute to ``/info``, so a provider can tell a slow loop from a slow network
or container.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from node_agent.recorder import Recorder

PERIOD = 0.02  # 50 wakeups per second: ~0.1 % of a core, sees any stall over a few ms
WINDOW = 60.0  # seconds the worst recent lag in /info looks back


class LoopLagMonitor:
    def __init__(self, recorder: Recorder, *, period: float = PERIOD) -> None:
        self.recorder = recorder
        self.period = period
        self.samples = 0
        self.worst_ever = 0.0
        # (when, lag) of lags above the period, newest last; bounded by the window's length
        self._recent: deque[tuple[float, float]] = deque(maxlen=int(WINDOW / period) + 1)

    async def run(self, stop: asyncio.Event) -> None:
        """Measure until ``stop`` is set."""
        clock = time.monotonic
        while not stop.is_set():
            expected = clock() + self.period
            await asyncio.sleep(self.period)
            lag = max(clock() - expected, 0.0)
            self.record(lag, clock())

    def record(self, lag: float, now: float) -> None:
        self.samples += 1
        self.worst_ever = max(self.worst_ever, lag)
        self.recorder.loop_lagged(lag)
        if lag >= self.period:
            self._recent.append((now, lag))

    def status(self, now: float | None = None) -> dict[str, float | int]:
        """The worst lag in the last minute and ever, in milliseconds, for ``/info``."""
        now = time.monotonic() if now is None else now
        recent = [lag for at, lag in self._recent if now - at <= WINDOW]
        return {
            "worst_last_minute_ms": round(max(recent, default=0.0) * 1000, 1),
            "worst_ever_ms": round(self.worst_ever * 1000, 1),
            "samples": self.samples,
        }
