"""GPU assignment: pure decisions, then the real Docker engine carrying the result."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import docker
import pytest

from node_agent.config import GpuRequest, parse_config
from node_agent.gpu.assign import (
    LABEL_GPUS,
    GpuAllocator,
    GpuAssignmentError,
    gpu_run_options,
)
from node_agent.gpu.model import GpuInventory, GpuState, MigInstance


def gpu(index: int, family: str = "h100", health: str = "healthy") -> GpuState:
    return GpuState(
        inventory=GpuInventory(index=index, uuid=f"GPU-{family}-{index}", family=family),
        health=health,  # type: ignore[arg-type]
    )


def mig_gpu(index: int) -> GpuState:
    parent = f"GPU-a100-{index}"
    return GpuState(
        inventory=GpuInventory(
            index=index,
            uuid=parent,
            family="a100",
            mig_enabled=True,
            mig_instances=tuple(
                MigInstance(uuid=f"MIG-{index}-{slot}", parent_uuid=parent) for slot in range(2)
            ),
        )
    )


FOUR = [gpu(0), gpu(1), gpu(2, "l4"), gpu(3, "l4")]


def request(value: object) -> GpuRequest | None:
    config = parse_config({"containers": [{"id": "c", "image": "x", "gpu": value}]})
    return config.containers[0].gpu


def test_infernet_gpu_true_means_every_healthy_gpu_shared() -> None:
    allocator = GpuAllocator()
    grant = allocator.allocate("a", request(True), [*FOUR, gpu(4, health="lost")])
    assert grant.uuids == ("GPU-h100-0", "GPU-h100-1", "GPU-l4-2", "GPU-l4-3")
    assert grant.exclusive is False
    # Another gpu:true container shares them; an exclusive request finds nothing free.
    assert allocator.allocate("b", request(True), FOUR).uuids == grant.uuids
    with pytest.raises(GpuAssignmentError):
        allocator.allocate("c", request(1), FOUR)


def test_count_and_family_requests_take_distinct_exclusive_gpus() -> None:
    allocator = GpuAllocator()
    first = allocator.allocate("a", request(2), FOUR)
    second = allocator.allocate("b", request({"count": 1, "family": "L4"}), FOUR)
    third = allocator.allocate("c", request({"count": 1, "family": "l4"}), FOUR)
    assert first.uuids == ("GPU-h100-0", "GPU-h100-1")
    assert second.uuids == ("GPU-l4-2",) and third.uuids == ("GPU-l4-3",)
    with pytest.raises(GpuAssignmentError) as info:
        allocator.allocate("d", request({"count": 1, "family": "h100"}), FOUR)
    assert info.value.params == {"container": "d", "requested": 1, "available": 0}
    assert "1 h100 GPU(s), 0 free" in info.value.error


def test_explicit_uuids_missing_or_busy_are_clear_errors() -> None:
    allocator = GpuAllocator()
    allocator.allocate("a", request(["GPU-h100-1"]), FOUR)
    with pytest.raises(GpuAssignmentError, match="already given exclusively") as busy:
        allocator.allocate("b", request(["GPU-h100-1"]), FOUR)
    assert busy.value.params == {"container": "b", "busy": ["GPU-h100-1"]}
    with pytest.raises(GpuAssignmentError, match="not present or not healthy"):
        allocator.allocate("b", request(["GPU-nope"]), FOUR)
    # A failure for b leaves a's grant untouched.
    assert allocator.grants()["a"].uuids == ("GPU-h100-1",)


def test_shared_requests_can_share_but_never_an_exclusive_gpu() -> None:
    allocator = GpuAllocator()
    allocator.allocate("a", GpuRequest(count=1, exclusive=False), FOUR)
    allocator.allocate("b", GpuRequest(count=1, exclusive=False), FOUR)
    grants = allocator.grants()
    # Free GPUs are preferred even for shared requests.
    assert grants["a"].uuids == ("GPU-h100-0",) and grants["b"].uuids == ("GPU-h100-1",)
    allocator.allocate("c", GpuRequest(count=2), FOUR)
    assert allocator.grants()["c"].uuids == ("GPU-l4-2", "GPU-l4-3")
    with pytest.raises(GpuAssignmentError):
        allocator.allocate("d", GpuRequest(count=1), FOUR)


def test_mig_slices_are_units_and_the_parent_is_not() -> None:
    allocator = GpuAllocator()
    a = allocator.allocate("a", request(1), [mig_gpu(0)])
    b = allocator.allocate("b", request(1), [mig_gpu(0)])
    assert (a.uuids, b.uuids) == (("MIG-0-0",), ("MIG-0-1",))
    with pytest.raises(GpuAssignmentError):
        allocator.allocate("c", request(["GPU-a100-0"]), [mig_gpu(0)])


def test_restart_rebuilds_grants_and_keeps_existing_placement() -> None:
    before = GpuAllocator()
    before.allocate("a", request(1), FOUR)
    before.allocate("b", request(1), FOUR)
    labels = {cid: gpu_run_options(g).labels for cid, g in before.grants().items()}

    after = GpuAllocator()
    after.rebuild(labels)
    assert after.grants() == before.grants()
    # b is recreated: it keeps its GPU rather than moving to GPU 0 or a free one.
    assert after.allocate("b", request(1), FOUR, labels["b"]).uuids == ("GPU-h100-1",)
    assert after.allocate("c", request(1), FOUR).uuids == ("GPU-l4-2",)


def test_run_options_for_gpus_and_for_none() -> None:
    allocator = GpuAllocator()
    options = gpu_run_options(allocator.allocate("a", request(2), FOUR))
    assert options.environment == {"NVIDIA_VISIBLE_DEVICES": "GPU-h100-0,GPU-h100-1"}
    (device_request,) = options.device_requests
    assert device_request["DeviceIDs"] == ["GPU-h100-0", "GPU-h100-1"]
    assert device_request["Capabilities"] == [["gpu"]]
    assert device_request["Count"] == 0  # never "all GPUs"
    assert options.labels == {
        LABEL_GPUS: "GPU-h100-0,GPU-h100-1",
        "node-agent.gpu-exclusive": "true",
    }
    none = gpu_run_options(allocator.allocate("b", None, FOUR))
    assert none.device_requests == []
    assert none.environment == {"NVIDIA_VISIBLE_DEVICES": "void"}
    assert none.labels[LABEL_GPUS] == "void"


# --- real Docker engine -------------------------------------------------------------------


@pytest.fixture
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    client.close()


@pytest.mark.docker
def test_containers_carry_device_requests_env_and_labels(
    docker_client: docker.DockerClient,
) -> None:
    suffix = secrets.token_hex(4)
    scope = f"node-agent-test-{suffix}"
    created = []
    try:
        allocator = GpuAllocator()
        for name, req in (("one", request(1)), ("two", request(1)), ("cpu", None)):
            grant = allocator.allocate(name, req, FOUR)
            options = gpu_run_options(grant)
            container = docker_client.containers.create(
                "node-agent/base:bookworm",
                command=["true"],
                name=f"{scope}-{name}",
                device_requests=options.device_requests,
                environment=options.environment,
                labels={**options.labels, "node-agent.test": scope, "node-agent.id": name},
            )
            created.append(container)

        inspected = {
            c.labels["node-agent.id"]: docker_client.api.inspect_container(c.id) for c in created
        }
        one, two, cpu = inspected["one"], inspected["two"], inspected["cpu"]
        assert one["HostConfig"]["DeviceRequests"] == [
            {
                "Driver": "",
                "Count": 0,
                "DeviceIDs": ["GPU-h100-0"],
                "Capabilities": [["gpu"]],
                "Options": {},
            }
        ]
        assert two["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == ["GPU-h100-1"]
        assert not cpu["HostConfig"]["DeviceRequests"]
        assert "NVIDIA_VISIBLE_DEVICES=GPU-h100-0" in one["Config"]["Env"]
        assert "NVIDIA_VISIBLE_DEVICES=void" in cpu["Config"]["Env"]
        assert one["HostConfig"]["Privileged"] is False

        # Agent restart: a fresh allocator rebuilds from what Docker reports.
        listed = docker_client.containers.list(
            all=True, filters={"label": f"node-agent.test={scope}"}
        )
        rebuilt = GpuAllocator()
        rebuilt.rebuild({c.labels["node-agent.id"]: c.labels for c in listed})
        assert {k: g.uuids for k, g in rebuilt.grants().items()} == {
            "one": ("GPU-h100-0",),
            "two": ("GPU-h100-1",),
        }
        assert rebuilt.allocate("three", request(2), FOUR).uuids == ("GPU-l4-2", "GPU-l4-3")
        with pytest.raises(GpuAssignmentError):
            rebuilt.allocate("four", request(1), FOUR)
    finally:
        for container in created:
            container.remove(force=True)
