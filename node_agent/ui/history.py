"""The status page's history: a fixed-size ring of samples (pure, no I/O, no clock).

The sampler (``ui.page``) hands in what it read each interval; the charts of the last
``history_seconds`` are drawn from these samples, so a browser asks for one document instead of
polling per metric, and every viewer sees the same numbers. Memory is bounded by the ring's
capacity whatever the number of viewers or jobs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

QUANTILES = (50, 90, 99)


@dataclass(frozen=True, slots=True)
class GpuPoint:
    """One GPU's readings at a sample; ``None`` where NVML did not report the value."""

    util_pct: float | None = None
    memory_used: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None

    def to_wire(self) -> list[float | None]:
        return [self.util_pct, self.memory_used, self.temperature_c, self.power_w]


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    jobs_per_second: float | None
    running: int
    queued: int
    # Seconds from submission to final status of the Infernet jobs that finished since the
    # previous sample (p50, p90, p99, from the /metrics histogram); None when none finished.
    latency: tuple[float | None, ...]
    gpus: Mapping[str, GpuPoint] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "jobs_per_second": self.jobs_per_second,
            "running": self.running,
            "queued": self.queued,
            "latency": dict(zip(("p50", "p90", "p99"), self.latency, strict=True)),
            "gpus": {key: point.to_wire() for key, point in self.gpus.items()},
        }


# A cumulative histogram as Prometheus keeps one: (upper bound, observations at or below it),
# bounds ascending, the last one +Inf.
Buckets = Sequence[tuple[float, float]]


def bucket_quantiles(before: Buckets | None, now: Buckets) -> tuple[float | None, ...]:
    """p50/p90/p99 of what a cumulative histogram observed between two readings, linear
    within a bucket (as Prometheus' ``histogram_quantile``). A bucket missing from ``before``
    (``None``: the first reading) counts as empty: a labelled histogram has no buckets until
    its first observation. ``None`` each when nothing was observed, or when the histogram was
    reset (a count went down)."""
    unknown = (None,) * len(QUANTILES)
    prior = dict(before or ())
    counts = [n - prior.get(bound, 0.0) for bound, n in now]
    if not counts or counts[-1] <= 0 or any(c < 0 for c in counts):
        return unknown
    total = counts[-1]
    out: list[float | None] = []
    for q in QUANTILES:
        rank = q / 100 * total
        i = next(i for i, c in enumerate(counts) if c >= rank)
        upper = now[i][0]
        lower = now[i - 1][0] if i else 0.0
        if math.isinf(upper):  # past the last finite bound: that bound is all that is known
            out.append(lower)
            continue
        below = counts[i - 1] if i else 0.0
        inside = counts[i] - below
        out.append(lower + (upper - lower) * ((rank - below) / inside if inside else 1.0))
    return tuple(out)


class History:
    """The newest ``capacity`` samples, oldest first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError("a history needs room for at least two samples")
        self._samples: deque[Sample] = deque(maxlen=capacity)
        self._completed: tuple[float, int] | None = None  # (at, jobs completed) of the last
        self._buckets: Buckets | None = None  # the latency histogram at the last sample

    @property
    def capacity(self) -> int:
        return self._samples.maxlen or 0

    @property
    def last_at(self) -> float | None:
        return self._samples[-1].at if self._samples else None

    def __len__(self) -> int:
        return len(self._samples)

    def record(
        self,
        at: float,
        *,
        completed: int,
        running: int,
        queued: int,
        latency_buckets: Buckets = (),
        gpus: Mapping[str, GpuPoint] | None = None,
    ) -> Sample:
        """Add one sample; the job rate comes from ``completed`` (a counter) and the previous
        sample. A counter that went back (a restart of its owner) gives no rate once; the
        latency percentiles are those of the jobs that finished since the previous sample."""
        rate: float | None = None
        if self._completed is not None:
            before_at, before = self._completed
            if at > before_at and completed >= before:
                rate = (completed - before) / (at - before_at)
        self._completed = (at, completed)
        latency = bucket_quantiles(self._buckets, latency_buckets)
        self._buckets = list(latency_buckets)
        sample = Sample(
            at=at,
            jobs_per_second=rate,
            running=running,
            queued=queued,
            latency=latency,
            gpus=dict(gpus or {}),
        )
        self._samples.append(sample)
        return sample

    def since(self, after: float | None) -> list[Sample]:
        """Samples newer than ``after`` (all of them for ``None``): a page that already has
        the older ones asks only for what it lacks."""
        if after is None:
            return list(self._samples)
        newer: list[Sample] = []
        for sample in reversed(self._samples):
            if sample.at <= after:
                break
            newer.append(sample)
        newer.reverse()
        return newer
