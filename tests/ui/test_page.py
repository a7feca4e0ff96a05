"""The status page's adapters: the /metrics latency histogram as buckets, GPU readings as
chart points, the ``since`` parameter."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Histogram

from node_agent.errors import BadRequest
from node_agent.gpu.model import GpuInventory, GpuState, GpuTelemetry
from node_agent.ui.history import GpuPoint, bucket_quantiles
from node_agent.ui.page import gpu_points, histogram_buckets, since_arg


def test_the_latency_histogram_is_read_across_its_labels() -> None:
    histogram = Histogram(
        "jobs_seconds", "test", ("status",), registry=CollectorRegistry(), buckets=(0.1, 1.0)
    )
    assert histogram_buckets(histogram) == []  # no series before the first observation
    histogram.labels("success").observe(0.05)
    histogram.labels("failed").observe(0.5)
    histogram.labels("failed").observe(5.0)
    assert histogram_buckets(histogram) == [(0.1, 1.0), (1.0, 2.0), (math.inf, 3.0)]
    p50, _, p99 = bucket_quantiles(None, histogram_buckets(histogram))
    assert p50 == pytest.approx(0.55) and p99 == 1.0


def test_gpu_readings_become_points_by_uuid_or_index() -> None:
    gpus = [
        GpuState(
            GpuInventory(index=0, uuid="GPU-a"),
            GpuTelemetry(util_gpu_pct=5, memory_used=10, temperature_c=40, power_draw_w=70.5),
        ),
        GpuState(GpuInventory(index=1)),
    ]
    assert gpu_points(gpus) == {"GPU-a": GpuPoint(5, 10, 40, 70.5), "index-1": GpuPoint()}


def test_since_must_be_a_finite_number() -> None:
    assert since_arg(None) is None and since_arg("1796121496.454954") == 1796121496.454954
    for bad in ("soon", "nan", "inf", "-inf", ""):
        with pytest.raises(BadRequest) as caught:
            since_arg(bad)
        assert caught.value.params == {"param": "since", "value": bad}
