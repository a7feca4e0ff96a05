"""The NVML adapter and monitor against board fixtures (fake NVML) and the real library."""

from __future__ import annotations

import asyncio
import threading
import time

import pynvml
import pytest

from node_agent.gpu.config import GpusConfig
from node_agent.gpu.monitor import GpuMonitor
from node_agent.gpu.nvml import NvmlAdapter
from tests.gpu.fake_nvml import FakeNvml, board


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def monitor_for(fake: FakeNvml, clock: Clock | None = None, **config: object) -> GpuMonitor:
    clock = clock or Clock()
    cfg = GpusConfig(event_wait_ms=50, **config)  # type: ignore[arg-type]
    return GpuMonitor.from_config(cfg, library=fake, clock=clock)


async def test_real_library_missing_is_reported_not_raised() -> None:
    """This machine has no driver: the real pynvml raises LibraryNotFound inside nvmlInit."""
    monitor = GpuMonitor(NvmlAdapter(), config=GpusConfig())
    snapshot = await monitor.refresh()
    await monitor.stop()
    assert snapshot.health == "unhealthy"
    assert snapshot.nvml_available is False
    assert snapshot.gpus == ()
    assert "NVMLError_LibraryNotFound" in snapshot.reasons[0]
    assert snapshot.remedy is not None and "libnvidia-ml.so.1" in snapshot.remedy
    assert snapshot.node.cpu_count and snapshot.node.memory_total  # host facts still there


async def test_init_failure_is_retried_only_after_the_interval() -> None:
    clock = Clock()
    fake = FakeNvml([board("l4")], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    monitor = monitor_for(fake, clock, init_retry_seconds=60, watch_xid_events=False)
    first = await monitor.refresh()
    assert first.health == "unhealthy" and "modprobe" in (first.remedy or "")
    clock.now += 30
    await monitor.refresh()
    assert fake.calls["nvmlInit"] == 1
    fake.init_error = None  # the operator loaded the driver
    clock.now += 31
    recovered = await monitor.refresh()
    assert fake.calls["nvmlInit"] == 2
    assert recovered.health == "healthy" and recovered.nvml_available
    assert recovered.gpus[0].inventory.family == "l4"
    await monitor.stop()


async def test_h100_inventory_and_telemetry() -> None:
    monitor = monitor_for(FakeNvml([board("h100-sxm")]), watch_xid_events=False)
    snapshot = await monitor.refresh()
    await monitor.stop()
    gpu = snapshot.gpus[0]
    inv, tel = gpu.inventory, gpu.telemetry
    assert snapshot.health == "healthy"
    assert (inv.uuid, inv.family, inv.architecture) == (
        "GPU-5c3a1e2f-8b7d-4c1a-9e21-0a1b2c3d4e5f",
        "h100",
        "hopper",
    )
    assert inv.compute_capability == "9.0"
    assert inv.memory_total == 85520809984
    assert inv.power_limit_w == 700.0
    assert inv.clocks_max.sm_mhz == 1980 and inv.clocks_max.mem_mhz == 2619
    assert (inv.pcie_max.gen, inv.pcie_max.width) == (5, 16)
    assert inv.pci_bus_id == "00000000:18:00.0" and inv.pci_device_id == "0x233110de"
    assert inv.ecc_enabled is True and inv.mig_enabled is False
    assert tel.memory_reserved == 563085312
    assert tel.memory_used is not None and tel.memory_free is not None
    assert tel.power_draw_w == pytest.approx(71.234)
    assert tel.temperature_c == 31 and tel.fan_pct is None
    assert tel.remapped_rows_pending is False and tel.processes == ()
    assert snapshot.node.driver_version == "570.86.15"
    assert snapshot.node.cuda_driver_version == "12.8"


async def test_geforce_not_supported_fields_are_null_and_not_asked_again() -> None:
    fake = FakeNvml([board("rtx4090")])
    monitor = monitor_for(fake, watch_xid_events=False)
    for _ in range(3):
        snapshot = await monitor.refresh()
    await monitor.stop()
    gpu = snapshot.gpus[0]
    assert gpu.inventory.family == "rtx4090"
    assert gpu.inventory.serial is None and gpu.inventory.ecc_enabled is None
    assert gpu.inventory.mig_enabled is None
    assert gpu.telemetry.remapped_rows_pending is None
    assert gpu.telemetry.ecc_uncorrected_volatile is None
    assert gpu.telemetry.processes is None
    assert gpu.telemetry.memory_reserved is None and gpu.telemetry.memory_used == 457179136
    assert gpu.health == "healthy"
    # Unsupported queries were made once, supported ones every cycle.
    assert fake.calls["nvmlDeviceGetSerial"] == 1
    assert fake.calls["nvmlDeviceGetRemappedRows"] == 1
    assert fake.calls["nvmlDeviceGetTotalEccErrors"] == 2  # volatile + aggregate, once each
    assert fake.calls["nvmlDeviceGetMemoryInfo_v2"] == 1
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 3


async def test_function_not_found_falls_back_to_the_older_call() -> None:
    fake = FakeNvml([board("l4")])
    fake.drop("nvmlDeviceGetCurrentClocksEventReasons")
    fake.nvmlDeviceGetCurrentClocksThrottleReasons = lambda handle: 4  # type: ignore[attr-defined]
    monitor = monitor_for(fake, watch_xid_events=False)
    snapshot = await monitor.refresh()
    await monitor.stop()
    assert snapshot.gpus[0].telemetry.throttle_reasons == 4


async def test_a100_mig_instances_are_listed_and_utilisation_is_null() -> None:
    monitor = monitor_for(FakeNvml([board("a100-mig")]), watch_xid_events=False)
    snapshot = await monitor.refresh()
    await monitor.stop()
    gpu = snapshot.gpus[0]
    assert gpu.inventory.family == "a100" and gpu.inventory.architecture == "ampere"
    assert gpu.inventory.mig_enabled is True
    uuids = [m.uuid for m in gpu.inventory.mig_instances]
    assert uuids == [
        "MIG-aaaa0000-0000-5000-8000-000000000001",
        "MIG-aaaa0000-0000-5000-8000-000000000002",
    ]
    assert gpu.inventory.mig_instances[1].gpu_instance_id == 2
    assert gpu.inventory.mig_instances[0].profile == "NVIDIA A100-SXM4-80GB MIG 3g.40gb"
    assert gpu.inventory.mig_instances[0].parent_uuid == gpu.inventory.uuid
    assert gpu.telemetry.util_gpu_pct is None


async def test_mig_change_pending_is_degraded() -> None:
    fake = FakeNvml([board("a100-mig", mig=[0, 1])])
    monitor = monitor_for(fake, watch_xid_events=False)
    snapshot = await monitor.refresh()
    await monitor.stop()
    assert snapshot.gpus[0].health == "degraded"
    assert "mig_mode_change_pending" in snapshot.gpus[0].reasons[0]


async def test_lost_gpu_marks_only_that_gpu_and_is_not_hammered() -> None:
    clock = Clock()
    fake = FakeNvml([board("h100-sxm"), board("l4")])
    monitor = monitor_for(fake, clock, lost_retry_seconds=300, watch_xid_events=False)
    await monitor.refresh()
    fake.lose(1)
    lost = await monitor.refresh()
    assert [g.health for g in lost.gpus] == ["healthy", "lost"]
    assert lost.gpus[1].inventory.uuid == "GPU-14000000-0000-4000-8000-000000000004"
    assert lost.gpus[1].inventory.family == "l4"  # last known inventory kept
    assert lost.health == "degraded" and "gpu_lost" in lost.reasons[0]
    assert not lost.gpus[1].allocatable
    calls_after_loss = fake.calls["nvmlDeviceGetPowerUsage"]
    clock.now += 10
    await monitor.refresh()
    # GPU 0 was read again, GPU 1 was left alone.
    assert fake.calls["nvmlDeviceGetPowerUsage"] == calls_after_loss + 1
    fake.lost.clear()
    clock.now += 300
    back = await monitor.refresh()
    await monitor.stop()
    assert [g.health for g in back.gpus] == ["healthy", "healthy"]


async def test_critical_xid_event_marks_the_gpu_unhealthy_and_recovers() -> None:
    clock = Clock()
    fake = FakeNvml([board("h100-sxm"), board("l4")])
    monitor = monitor_for(fake, clock, xid_hold_seconds=600)
    await monitor.refresh()
    fake.emit_xid(1, 13)  # application error: ignored for health
    fake.emit_xid(1, 79)  # fell off the bus
    for _ in range(100):
        snapshot = await monitor.refresh()
        if snapshot.gpus[1].telemetry.last_xid and snapshot.gpus[1].telemetry.last_xid.code == 79:
            break
        await asyncio.sleep(0.02)
    assert snapshot.gpus[1].health == "unhealthy"
    assert snapshot.gpus[1].reasons == ("xid_79: critical driver error reported",)
    assert snapshot.gpus[0].health == "healthy"
    clock.now += 601
    later = await monitor.refresh()
    await monitor.stop()
    assert later.gpus[1].health == "healthy"


async def test_a_wedged_driver_times_out_without_blocking_the_loop() -> None:
    fake = FakeNvml([board("l4")])
    monitor = monitor_for(fake, call_timeout=0.2, watch_xid_events=False)
    await monitor.refresh()
    fake.block = threading.Event()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    stuck = await monitor.refresh()
    assert time.monotonic() - started < 2
    assert stuck.health == "unhealthy" and "NvmlTimeout" in stuck.reasons[0]
    assert ticks >= 5  # the event loop kept running while the driver hung
    again = await monitor.refresh()  # not queued behind the stuck call
    assert "has not returned" in again.reasons[0]
    fake.block.set()
    task.cancel()
    await asyncio.sleep(0.05)
    recovered = await monitor.refresh()
    await monitor.stop()
    assert recovered.health == "healthy"


async def test_inventory_hash_ignores_telemetry_and_follows_inventory() -> None:
    fake = FakeNvml([board("l4")])
    monitor = monitor_for(fake, watch_xid_events=False)
    first = await monitor.refresh()
    fake.boards[0]["temp"] = 80
    second = await monitor.refresh()
    fake.boards[0]["power_limit_mw"] = 60000
    third = await monitor.refresh()
    await monitor.stop()
    assert first.inventory_hash() == second.inventory_hash() != third.inventory_hash()
