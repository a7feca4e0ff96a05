"""``gpus_command`` output and the Prometheus exposition, from board fixtures."""

from __future__ import annotations

import io
import json

from prometheus_client.parser import text_string_to_metric_families

from node_agent.gpu.cli import gpus_command
from node_agent.gpu.config import GpusConfig
from node_agent.metrics import AgentMetrics, NodeReading, mig_profile
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

    library = FakeNvml([board("h100-sxm"), board("l4"), board("a100-mig")])
    snapshot = await collect_once(GpusConfig(), library=library)
    readings = [NodeReading(capacity=snapshot, hostname="gpu-host-1")]
    metrics = AgentMetrics(lambda: readings[-1])
    families = {f.name: f for f in text_string_to_metric_families(metrics.render()[0].decode())}
    assert families["node_agent_gpu_memory_used_bytes"].type == "gauge"
    (l4_temperature,) = [
        s
        for s in families["node_agent_gpu_temperature_celsius"].samples
        if s.labels["index"] == "1"
    ]
    assert l4_temperature.labels == {
        "uuid": "GPU-14000000-0000-4000-8000-000000000004",
        "index": "1",
        "family": "l4",
    }
    assert l4_temperature.value == 44
    assert families["node_agent_gpus"].samples[0].value == 3
    assert families["node_agent_gpu_up"].samples[0].value == 1
    # dcgm-exporter's names, units (MiB) and labels; the MIG slices as their own series.
    (l4_used,) = [s for s in families["DCGM_FI_DEV_FB_USED"].samples if s.labels["gpu"] == "1"]
    assert l4_used.labels["UUID"] == "GPU-14000000-0000-4000-8000-000000000004"
    assert l4_used.labels["modelName"] == "NVIDIA L4"
    assert l4_used.labels["Hostname"] == "gpu-host-1"
    assert (
        l4_used.labels["pci_bus_id"] == "00000000:3B:00.0" and l4_used.labels["device"] == "nvidia2"
    )
    assert snapshot.gpus[1].telemetry.memory_used == l4_used.value * 1024 * 1024
    slices = {
        (s.labels["GPU_I_PROFILE"], s.labels["GPU_I_ID"]): s.value
        for s in families["DCGM_FI_DEV_FB_TOTAL"].samples
        if "GPU_I_ID" in s.labels
    }
    assert slices == {("3g.40gb", "1"): 40960.0, ("3g.40gb", "2"): 40960.0}
    assert "DCGM_FI_DEV_GPU_UTIL" in families  # the MIG board has none; the others do
    assert {s.labels["gpu"] for s in families["DCGM_FI_DEV_GPU_UTIL"].samples} == {"0", "1"}
    assert families["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].type == "unknown"

    # A GPU that disappears stops being reported.
    readings.append(
        NodeReading(capacity=await collect_once(GpusConfig(), library=FakeNvml([board("l4")])))
    )
    text = metrics.render()[0].decode()
    assert "GPU-5c3a1e2f" not in text and "GPU-14000000" in text


def test_mig_profile_from_the_nvml_name() -> None:
    assert mig_profile("NVIDIA A100-SXM4-80GB MIG 3g.40gb") == "3g.40gb"
    assert mig_profile("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me") == "1g.10gb+me"
    assert mig_profile("3g.40gb") == "3g.40gb"
    assert mig_profile(None) == ""
