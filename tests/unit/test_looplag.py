"""The loop-lag monitor sees a step that holds the event loop, on a real loop."""

from __future__ import annotations

import asyncio
import time

from node_agent.looplag import WINDOW, LoopLagMonitor
from node_agent.metrics import AgentMetrics


def lag_observations(metrics: AgentMetrics, over: float) -> float:
    """How many lag samples were above ``over`` seconds, from the exported histogram."""
    (family,) = (f for f in metrics.registry.collect() if f.name.endswith("loop_lag_seconds"))
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    total = samples[("node_agent_event_loop_lag_seconds_count", None)]
    return total - samples[("node_agent_event_loop_lag_seconds_bucket", str(over))]


class CountingMonitor(LoopLagMonitor):
    """Sets ``seen`` once ``wanted`` samples were taken (a condition to wait on)."""

    def __init__(self, metrics: AgentMetrics) -> None:
        super().__init__(metrics, period=0.005)
        self.wanted = 3
        self.seen = asyncio.Event()

    def record(self, lag: float, now: float) -> None:
        super().record(lag, now)
        if self.samples >= self.wanted:
            self.seen.set()


async def test_a_blocked_loop_is_measured_in_the_histogram_and_info() -> None:
    metrics = AgentMetrics()
    monitor = CountingMonitor(metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    await asyncio.wait_for(monitor.seen.wait(), 10)
    time.sleep(0.08)  # a step that holds the loop, as a blocking call would  # noqa: ASYNC251
    monitor.wanted, monitor.seen = monitor.samples + 1, asyncio.Event()
    await asyncio.wait_for(monitor.seen.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 5)
    status = monitor.status()
    assert status["worst_last_minute_ms"] >= 50
    assert status["worst_ever_ms"] >= status["worst_last_minute_ms"]
    metrics_text = metrics.render()[0].decode()
    assert "node_agent_event_loop_lag_seconds_bucket" in metrics_text
    assert lag_observations(metrics, 0.05) >= 1


def test_the_last_minute_forgets_old_stalls() -> None:
    monitor = LoopLagMonitor(AgentMetrics(), period=0.02)
    monitor.record(0.5, now=100.0)
    monitor.record(0.001, now=100.0 + WINDOW / 2)
    assert monitor.status(now=100.0 + WINDOW / 2)["worst_last_minute_ms"] == 500.0
    assert monitor.status(now=100.0 + WINDOW + 1)["worst_last_minute_ms"] == 0.0
    assert monitor.status(now=100.0 + WINDOW + 1)["worst_ever_ms"] == 500.0
    assert monitor.status()["samples"] == 2
