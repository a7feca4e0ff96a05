"""The pure core of workloads: draft validation, callback URL rule, final status, placement and
the container spec. No Docker, no HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from node_agent.errors import BadRequest
from node_agent.gpu.assign import GpuAllocator, GpuUnit
from node_agent.workloads.config import WorkloadsConfig
from node_agent.workloads.model import (
    Workload,
    WorkloadStatus,
    final_outcome,
    parse_draft,
)
from node_agent.workloads.placement import place
from node_agent.workloads.spec import container_spec

GIB = 1024**3
BASE = {"image": "python:3.11", "command": "python", "args": ["-c", "print(42)"]}


def bad(body: Any) -> dict[str, Any]:
    with pytest.raises(BadRequest) as caught:
        parse_draft(body)
    assert caught.value.params is not None
    return caught.value.params


def test_orchestrator_examples_parse() -> None:
    draft = parse_draft(
        {
            **BASE,
            "name": "demo",
            "workload_type": "inference",
            "model_size_gb": 7,
            "optimize_for": "balanced",
            "constraints": {
                "max_price_per_hour": 2.5,
                "preferred_gpu_family": "l4",
                "avoid_gpu_families": ["a100"],
                "region_preference": "us-east",
                "future_knob": 1,
            },
            "callback_url": "https://example.com/hook",
            "callback_auth_token": "secret-token",
            "callback_metadata": {"request_id": "req_123", "customer_id": "cus_456"},
            "unknown_top_level": True,
        }
    )
    assert draft.command == ["python"] and draft.model_size_gb == 7.0
    assert draft.unknown_fields() == ["unknown_top_level"]
    stored = draft.stored()
    assert "callback_auth_token" not in stored and "unknown_top_level" not in stored
    assert stored["callback_metadata"] == {"request_id": "req_123", "customer_id": "cus_456"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BASE, "workload_type": "training"}, "workload_type"),
        ({"command": "python"}, "image"),
        ({**BASE, "image": ""}, "image"),
        ({**BASE, "image": "bad image name"}, "image"),
        ({**BASE, "args": "not-a-list"}, "args"),
        ({**BASE, "args": [1, 2]}, "args.0"),
        ({**BASE, "args": ["a\x00b"]}, "args"),
        ({**BASE, "env": {"1BAD": "x"}}, "env"),
        ({**BASE, "env": {"OK": 5}}, "env.OK"),
        ({**BASE, "gpus": -1}, "gpus"),
        ({**BASE, "gpus": True}, "gpus"),
        ({**BASE, "gpus": 1.5}, "gpus"),
        ({**BASE, "model_size_gb": "7"}, "model_size_gb"),
        ({**BASE, "max_runtime": 0}, "max_runtime"),
        ({**BASE, "callback_url": "http://example.com/hook"}, "callback_url"),
        ({**BASE, "callback_url": "ftp://localhost/x"}, "callback_url"),
        ({**BASE, "callback_url": "https://user:pw@example.com/"}, "callback_url"),
        ({**BASE, "callback_metadata": ["not", "object"]}, "callback_metadata"),
        ({**BASE, "callback_metadata": {"big": "x" * 20000}}, "callback_metadata"),
        ({**BASE, "constraints": {"max_price_per_hour": -1}}, "constraints.max_price_per_hour"),
        ({**BASE, "constraints": {"avoid_gpu_families": "a100"}}, "constraints.avoid_gpu_families"),
        ({**BASE, "ports": [8000]}, "ports"),
        ({**BASE, "workload_type": "inference", "ports": [70000]}, "ports.0"),
        ({**BASE, "workload_type": "inference", "infernet_service": True}, "infernet_service"),
    ],
)
def test_every_field_is_checked_and_named(body: dict[str, Any], field: str) -> None:
    assert bad(body)["field"] == field


def test_non_object_body() -> None:
    assert bad([1, 2])["problem"] == "expected a JSON object"


@pytest.mark.parametrize(
    "url",
    ["http://localhost:9/x", "http://127.0.0.1/x", "http://[::1]:80/", "https://hooks.example"],
)
def test_callback_url_https_or_loopback(url: str) -> None:
    assert parse_draft({**BASE, "callback_url": url}).callback_url == url


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"exit_code": 0, "cancel_requested": False}, "succeeded", None),
        ({"exit_code": 3, "cancel_requested": False}, "failed", "command exited with code 3"),
        ({"exit_code": 0, "cancel_requested": True}, "cancelled", "cancelled by the client"),
        ({"exit_code": 137, "cancel_requested": False, "timed_out": 5.0}, "failed", None),
        ({"exit_code": None, "cancel_requested": False, "error": "image x"}, "failed", "image x"),
    ],
)
def test_final_outcome_is_decided_in_one_place(
    kwargs: dict[str, Any], status: str, error: str | None
) -> None:
    outcome = final_outcome(**kwargs)
    assert outcome.status.value == status
    if error is not None:
        assert outcome.error == error
    if kwargs.get("timed_out"):
        assert outcome.error == "max_runtime exceeded (5 s)"


def units() -> list[GpuUnit]:
    return [
        GpuUnit("GPU-l4-0", "l4", 0, memory_total=24 * GIB),
        GpuUnit("GPU-l4-1", "l4", 1, memory_total=24 * GIB),
        GpuUnit("GPU-h100-0", "h100", 2, memory_total=80 * GIB),
    ]


PRICES = {"l4": 0.5, "h100": 2.5}


def verdict(body: dict[str, Any], free: list[GpuUnit] | None = None) -> Any:
    all_units = units()
    return place(
        parse_draft({**BASE, **body}),
        all_units=all_units,
        free_units=all_units if free is None else free,
        prices=PRICES,
        overhead=1.2,
    )


def test_placement_cpu_only_and_explicit_count() -> None:
    assert verdict({}).placement.units == ()
    placed = verdict({"gpus": 2}).placement
    assert [u.uuid for u in placed.units] == ["GPU-l4-0", "GPU-l4-1"]  # cheapest family first
    assert placed.hourly_price == 1.0


def test_placement_derives_gpus_from_model_size() -> None:
    # 30 GB × 1.2 = 36 GB: two 24 GB L4s, or one 80 GB H100; L4 is cheaper.
    assert verdict({"model_size_gb": 30}).needed == 2
    assert verdict({"model_size_gb": 30, "constraints": {"avoid_gpu_families": ["l4"]}}).needed == 1


def test_placement_never_fits_says_why() -> None:
    never = verdict({"gpus": 3}).never
    assert "needs 3 l4 GPU(s), the node has 2" in never and "needs 3 h100" in never
    capped = verdict({"gpus": 1, "constraints": {"max_price_per_hour": 0.1}}).never
    assert "max_price_per_hour" in capped
    avoided = verdict({"gpus": 1, "constraints": {"avoid_gpu_families": ["l4", "h100"]}}).never
    assert "avoid_gpu_families" in avoided
    no_gpus = place(
        parse_draft({**BASE, "gpus": 1}), all_units=[], free_units=[], prices={}, overhead=1.2
    )
    assert no_gpus.never is not None and "no healthy GPU" in no_gpus.never


def test_preferred_family_is_soft_and_reported_when_relaxed() -> None:
    preferred = verdict({"gpus": 1, "constraints": {"preferred_gpu_family": "h100"}}).placement
    assert [u.uuid for u in preferred.units] == ["GPU-h100-0"] and preferred.relaxed == ()
    busy_h100 = [u for u in units() if u.family == "l4"]
    relaxed = verdict(
        {"gpus": 1, "constraints": {"preferred_gpu_family": "h100"}}, free=busy_h100
    ).placement
    assert relaxed.units[0].family == "l4"
    assert relaxed.relaxed == ("preferred_gpu_family",)


def test_busy_gpus_wait_instead_of_failing() -> None:
    result = verdict({"gpus": 2}, free=[units()[0]])
    assert result.placement is None and result.never is None and "waiting" in result.busy


def test_allocator_never_gives_a_gpu_twice() -> None:
    allocator = GpuAllocator()
    allocator.grant("workload:a", ["GPU-l4-0"])
    assert [u.uuid for u in allocator.free_units(units())] == ["GPU-l4-1", "GPU-h100-0"]
    with pytest.raises(Exception, match="already given"):
        allocator.grant("workload:b", ["GPU-l4-0"])
    allocator.retain([])  # a config reload keeps workload grants
    assert "workload:a" in allocator.grants()
    allocator.release("workload:a")
    assert len(allocator.free_units(units())) == 3


def test_container_spec_is_hardened_and_grants_gpus_by_uuid() -> None:
    job = Workload(
        id="0190a1b2-0000-7000-8000-000000000000",
        owner="key:x",
        draft=parse_draft(
            {**BASE, "env": {"A": "1"}, "workload_type": "inference", "ports": [8000]}
        ).stored(),
        status=WorkloadStatus.QUEUED,
        created_at=0,
        updated_at=0,
    )
    spec = container_spec(job, ("GPU-l4-1",), WorkloadsConfig())
    assert spec["entrypoint"] == ["python"] and spec["command"] == ["-c", "print(42)"]
    assert spec["environment"] == {"A": "1", "NVIDIA_VISIBLE_DEVICES": "GPU-l4-1"}
    (request,) = spec["device_requests"]
    assert request["DeviceIDs"] == ["GPU-l4-1"] and request["Capabilities"] == [["gpu"]]
    assert spec["cap_drop"] == ["ALL"] and spec["security_opt"] == ["no-new-privileges"]
    assert spec["privileged"] is False and spec["mem_limit"] == "16g"
    assert spec["ports"] == {"8000/tcp": ("127.0.0.1", None)}
    assert spec["labels"]["io.node-agent.workload"] == job.id
    cpu_only = container_spec(job, (), WorkloadsConfig())
    assert cpu_only["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "device_requests" not in cpu_only
