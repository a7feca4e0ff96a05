"""``gpus_command`` output and the Prometheus exposition, from board fixtures."""

from __future__ import annotations

import io
import json

import pytest

from node_agent.gpu.cli import gpus_command
from node_agent.gpu.config import GpusConfig
from node_agent.metrics import AgentMetrics, Registry
from tests.gpu.fake_nvml import FakeNvml, board


def test_gpus_table_and_json_from_fixtures() -> None:
    fake = FakeNvml([board("h100-sxm"), board("a100-mig"), board("rtx4090")])
    table = io.StringIO()
    assert gpus_command(False, library=fake, docker_client=None, out=table) == 0
    text = table.getvalue()
    assert "h100" in text and "rtx4090" in text and "MIG" in text
    assert "GPU-5c3a1e2f-8b7d-4c1a-9e21-0a1b2c3d4e5f" in text
    assert "570.86.15" in text

    as_json = io.StringIO()
    assert gpus_command(True, library=FakeNvml([board("l4")]), out=as_json) == 0
    data = json.loads(as_json.getvalue())
    assert data["gpus"][0]["inventory"]["family"] == "l4"
    assert data["gpus"][0]["telemetry"]["processes"] == [{"pid": 4242, "used_memory": 268435456}]
    assert data["nvml_available"] is True


def test_gpus_command_without_a_driver_exits_1_with_a_remedy() -> None:
    out = io.StringIO()
    assert gpus_command(False, config=GpusConfig(), out=out) == 1  # the real pynvml, no driver
    assert "LibraryNotFound" in out.getvalue() and "remedy:" in out.getvalue()


async def test_metrics_exposition_from_a_capacity_snapshot() -> None:
    from node_agent.gpu.cli import collect_once

    snapshot = await collect_once(GpusConfig(), library=FakeNvml([board("h100-sxm"), board("l4")]))
    metrics = AgentMetrics()
    metrics.observe_capacity(snapshot)
    metrics.jobs.inc(container="echo", status="success")
    metrics.jobs.inc(2, container="echo", status="failed")
    metrics.queue_depth.set(3, container="echo")
    text = metrics.render()
    assert "# TYPE node_agent_gpu_memory_used_bytes gauge" in text
    assert (
        'node_agent_gpu_temperature_celsius{uuid="GPU-14000000-0000-4000-8000-000000000004",'
        'index="1",family="l4"} 44' in text
    )
    assert 'node_agent_gpu_utilization_ratio{uuid="GPU-14000000' in text
    assert "node_agent_gpus 2" in text and "node_agent_gpu_up 1" in text
    assert 'node_agent_jobs_total{container="echo",status="failed"} 2' in text
    assert 'node_agent_queue_depth{container="echo"} 3' in text
    # A GPU that disappears stops being reported.
    metrics.observe_capacity(await collect_once(GpusConfig(), library=FakeNvml([board("l4")])))
    assert "GPU-5c3a1e2f" not in metrics.render()


def test_registry_rules() -> None:
    registry = Registry()
    counter = registry.counter("x_total", "x", ("a",))
    with pytest.raises(ValueError, match="labels"):
        counter.inc(b="1")
    with pytest.raises(ValueError, match="only go up"):
        counter.inc(-1, a="1")
    with pytest.raises(ValueError, match="twice"):
        registry.gauge("x_total", "again")
    gauge = registry.gauge("y", "quote\\test", ("path",))
    gauge.set(0.25, path='a"b\nc')
    assert 'y{path="a\\"b\\nc"} 0.25' in registry.render()
    assert "# HELP y quote\\\\test" in registry.render()
