from __future__ import annotations

import pytest

from node_agent.gpu.health import assess_gpu
from node_agent.gpu.model import (
    GpuInventory,
    GpuState,
    GpuTelemetry,
    XidEvent,
    cuda_version,
    family_slug,
)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H100 PCIe", "h100"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA A100-PCIE-40GB", "a100"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", "l40s"),
        ("Tesla T4", "t4"),
        ("NVIDIA GeForce RTX 4090", "rtx4090"),
        ("NVIDIA GeForce RTX 3090 Ti", "rtx3090ti"),
        ("NVIDIA RTX A6000", "rtxa6000"),
        ("NVIDIA RTX 6000 Ada Generation", "rtx6000ada"),
        ("", None),
        (None, None),
    ],
)
def test_family_slug(name: str | None, slug: str | None) -> None:
    assert family_slug(name) == slug


def test_cuda_version_decoding() -> None:
    assert cuda_version(12040) == "12.4"
    assert cuda_version(11080) == "11.8"
    assert cuda_version(None) is None


def _gpu(**telemetry: object) -> GpuState:
    return GpuState(inventory=GpuInventory(uuid="GPU-1"), telemetry=GpuTelemetry(**telemetry))  # type: ignore[arg-type]


def test_health_marks() -> None:
    assert assess_gpu(_gpu(), now=0).health == "healthy"
    assert assess_gpu(_gpu(remapped_rows_pending=True), now=0).health == "degraded"
    failed = assess_gpu(_gpu(remapped_rows_pending=True, remapped_rows_failure=True), now=0)
    assert failed.health == "unhealthy" and len(failed.reasons) == 2
    assert assess_gpu(_gpu(ecc_uncorrected_volatile=2), now=0).health == "degraded"


def test_xid_marks_expire_and_application_xids_are_ignored() -> None:
    critical = _gpu(last_xid=XidEvent(code=48, at=100.0, gpu_uuid="GPU-1"))
    assert assess_gpu(critical, now=200, xid_hold_seconds=600).health == "unhealthy"
    assert assess_gpu(critical, now=701, xid_hold_seconds=600).health == "healthy"
    app = _gpu(last_xid=XidEvent(code=13, at=100.0, gpu_uuid="GPU-1"))
    assert assess_gpu(app, now=101).health == "healthy"


def test_lost_stays_lost() -> None:
    lost = GpuState(inventory=GpuInventory(uuid="GPU-1"), health="lost", reasons=("gone",))
    assert assess_gpu(lost, now=0) == lost
