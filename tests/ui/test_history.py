"""The sampler's pure core: a bounded ring, job rates from a counter, latency percentiles
from the /metrics histogram's bucket deltas, and the ``since`` view the page polls."""

from __future__ import annotations

import math

import pytest

from node_agent.ui.config import MAX_SAMPLES, UiConfig
from node_agent.ui.history import GpuPoint, History, bucket_quantiles

INF = math.inf
BOUNDS = (0.1, 1.0, 10.0, INF)


def buckets(*counts: float) -> list[tuple[float, float]]:
    """Cumulative buckets from per-bucket counts."""
    total, out = 0.0, []
    for bound, count in zip(BOUNDS, counts, strict=True):
        total += count
        out.append((bound, total))
    return out


def test_the_ring_keeps_only_the_newest_samples() -> None:
    history = History(3)
    for at in range(5):
        history.record(float(at), completed=0, running=0, queued=0)
    assert len(history) == 3 and history.capacity == 3
    assert [s.at for s in history.since(None)] == [2.0, 3.0, 4.0]
    assert [s.at for s in history.since(3.0)] == [4.0]
    assert history.since(4.0) == [] and history.last_at == 4.0
    with pytest.raises(ValueError):
        History(1)


def test_job_rate_comes_from_the_counter_between_samples() -> None:
    history = History(10)
    first = history.record(100.0, completed=10, running=1, queued=2)
    assert first.jobs_per_second is None  # nothing to compare with yet
    assert history.record(105.0, completed=60, running=0, queued=0).jobs_per_second == 10.0
    # A counter that went back (its owner restarted) gives no rate, then counts again.
    assert history.record(110.0, completed=5, running=0, queued=0).jobs_per_second is None
    assert history.record(112.0, completed=9, running=0, queued=0).jobs_per_second == 2.0


def test_latency_percentiles_are_those_of_the_jobs_between_two_samples() -> None:
    # 100 jobs, all within (0.1, 1]: linear inside the bucket.
    p50, p90, p99 = bucket_quantiles(buckets(0, 0, 0, 0), buckets(0, 100, 0, 0))
    assert p50 == pytest.approx(0.55) and p90 == pytest.approx(0.91)
    assert p99 == pytest.approx(0.991)
    # Only the difference counts: old observations do not weigh on the new window.
    before = buckets(1000, 0, 0, 0)
    p50, _, p99 = bucket_quantiles(before, buckets(1000, 0, 10, 0))
    assert 1.0 < p50 < 10.0 and 1.0 < p99 <= 10.0
    # Beyond the last finite bound: that bound is all a histogram can tell.
    assert bucket_quantiles(buckets(0, 0, 0, 0), buckets(0, 0, 0, 5)) == (10.0, 10.0, 10.0)
    # No job, or a reset histogram: no percentile (a gap in the chart, not a zero).
    assert bucket_quantiles(buckets(1, 1, 1, 1), buckets(1, 1, 1, 1)) == (None, None, None)
    assert bucket_quantiles(buckets(5, 5, 5, 5), buckets(1, 0, 0, 0)) == (None, None, None)
    assert bucket_quantiles(None, []) == (None, None, None)


def test_a_histogram_without_buckets_yet_counts_as_empty() -> None:
    """prometheus_client's labelled histogram has no series before its first observation:
    the first job after start must still show up."""
    history = History(10)
    assert history.record(1.0, completed=0, running=0, queued=0).latency == (None,) * 3
    sample = history.record(
        2.0, completed=1, running=0, queued=0, latency_buckets=buckets(1, 0, 0, 0)
    )
    assert sample.latency[0] == pytest.approx(0.05)
    assert sample.to_wire()["latency"] == pytest.approx({"p50": 0.05, "p90": 0.09, "p99": 0.099})


def test_gpu_points_travel_as_four_numbers() -> None:
    history = History(2)
    point = GpuPoint(util_pct=40, memory_used=2**30, temperature_c=55, power_w=None)
    sample = history.record(1.0, completed=0, running=0, queued=0, gpus={"GPU-1": point})
    assert sample.to_wire()["gpus"] == {"GPU-1": [40, 2**30, 55, None]}


def test_the_history_is_bounded_whatever_the_settings() -> None:
    assert UiConfig().capacity == 180  # 15 minutes at one sample every 5 s
    assert UiConfig(sample_interval=0.2, history_seconds=60).capacity == 300
    with pytest.raises(ValueError, match="at most 2000 samples"):
        UiConfig(sample_interval=0.1, history_seconds=3600)
    assert UiConfig(sample_interval=1, history_seconds=MAX_SAMPLES).capacity == MAX_SAMPLES
