"""GPU assignment (pure): which concrete GPUs, by UUID, each container gets.

The allocation is recorded in container labels, so after an agent restart it is rebuilt from
the containers Docker still has. An exclusive GPU is never given to two containers; a request
that cannot be satisfied fails only that container's start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from node_agent.config import ContainerConfig, GpuRequest
from node_agent.errors import ContainerError
from node_agent.gpu.model import GpuState

LABEL_GPUS = "node-agent.gpus"
LABEL_EXCLUSIVE = "node-agent.gpu-exclusive"
NO_GPUS = "void"
# Grants of orchestrator workloads are held under this prefix + the job id.
WORKLOAD_GRANT_PREFIX = "workload:"


class GpuAssignmentError(ContainerError):
    """A container's ``gpu`` request cannot be met on this host right now."""

    status = 503
    default_message = "GPU request cannot be satisfied"


@dataclass(frozen=True)
class GpuUnit:
    """Something a container can be given: a whole GPU, or one MIG slice of a GPU."""

    uuid: str
    family: str | None
    index: int | None
    parent_uuid: str | None = None
    memory_total: int | None = None


@dataclass(frozen=True)
class GpuGrant:
    container_id: str
    uuids: tuple[str, ...] = ()
    exclusive: bool = False


@dataclass(frozen=True, slots=True)
class GpuRunOptions:
    """What the container manager passes to ``containers.create`` / ``run``."""

    device_requests: list[Any] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def allocatable_units(gpus: Sequence[GpuState]) -> list[GpuUnit]:
    """Healthy GPUs as units; a MIG-enabled GPU offers its slices instead of itself."""
    units: list[GpuUnit] = []
    for gpu in gpus:
        inv = gpu.inventory
        if not gpu.allocatable or inv.uuid is None:
            continue
        if inv.mig_enabled and inv.mig_instances:
            units.extend(
                GpuUnit(
                    uuid=m.uuid,
                    family=inv.family,
                    index=inv.index,
                    parent_uuid=inv.uuid,
                    memory_total=m.memory_total,
                )
                for m in inv.mig_instances
            )
        elif not inv.mig_enabled:
            units.append(GpuUnit(inv.uuid, inv.family, inv.index, None, inv.memory_total))
    return units


def grant_from_labels(container_id: str, labels: Mapping[str, str] | None) -> GpuGrant | None:
    """The grant a container was created with, or ``None`` when it has no GPU labels."""
    if not labels or LABEL_GPUS not in labels:
        return None
    raw = labels[LABEL_GPUS]
    uuids = () if raw in ("", NO_GPUS) else tuple(u for u in raw.split(",") if u)
    return GpuGrant(
        container_id=container_id,
        uuids=uuids,
        exclusive=labels.get(LABEL_EXCLUSIVE, "true") == "true",
    )


class GpuAllocator:
    """Book-keeping of grants; every decision is a pure function of the grants and inventory."""

    def __init__(self) -> None:
        self._grants: dict[str, GpuGrant] = {}

    def grants(self) -> dict[str, GpuGrant]:
        return dict(self._grants)

    def rebuild(self, labels_by_container: Mapping[str, Mapping[str, str]]) -> None:
        """Restore grants from the labels of the containers that exist after a restart."""
        self._grants = {}
        for container_id, labels in labels_by_container.items():
            grant = grant_from_labels(container_id, labels)
            if grant is not None and grant.uuids:
                self._grants[container_id] = grant

    def release(self, container_id: str) -> None:
        self._grants.pop(container_id, None)

    def retain(self, container_ids: Iterable[str]) -> None:
        """Forget grants of service containers that are no longer configured (after a reload);
        workload grants (``workload:<id>``) are not the config's to drop."""
        keep = set(container_ids)
        self._grants = {
            cid: g
            for cid, g in self._grants.items()
            if cid in keep or cid.startswith(WORKLOAD_GRANT_PREFIX)
        }

    def free_units(self, units: Sequence[GpuUnit]) -> list[GpuUnit]:
        """Units nobody holds at all (what an exclusive request may take)."""
        exclusive, shared = self._held()
        taken = exclusive | shared
        return [u for u in units if u.uuid not in taken and u.parent_uuid not in taken]

    def grant(self, holder: str, uuids: Sequence[str], *, exclusive: bool = True) -> GpuGrant:
        """Record a grant chosen elsewhere (workload placement, or one rebuilt after a
        restart); raises when any of the GPUs is already held exclusively by someone else."""
        self.release(holder)
        exclusive_held, shared_held = self._held()
        clash = [u for u in uuids if u in exclusive_held or (exclusive and u in shared_held)]
        if clash:
            raise GpuAssignmentError(
                f"GPU(s) already given to another holder: {', '.join(clash)}",
                {"holder": holder, "busy": clash},
            )
        grant = GpuGrant(holder, tuple(uuids), exclusive=exclusive)
        self._grants[holder] = grant
        return grant

    def allocate(
        self,
        container_id: str,
        request: GpuRequest | None,
        inventory: Sequence[GpuState],
        existing_labels: Mapping[str, str] | None = None,
    ) -> GpuGrant:
        """Choose GPUs for a container and record the grant; raises GpuAssignmentError.

        ``existing_labels`` are the labels of the container's current Docker container, if
        any (else the grant rebuilt from labels, or the previous one): when those GPUs still
        satisfy the request they are kept, so a restart never moves a service to other GPUs.
        """
        previous = grant_from_labels(container_id, existing_labels) or self._grants.get(
            container_id
        )
        self.release(container_id)
        if request is None:
            return GpuGrant(container_id=container_id)
        units = allocatable_units(inventory)
        chosen = None
        if previous is not None and previous.uuids:
            chosen = self._keep_previous(request, units, previous.uuids)
        if chosen is None:
            chosen = self._choose(container_id, request, units)
        grant = GpuGrant(container_id, tuple(chosen), exclusive=request.exclusive)
        self._grants[container_id] = grant
        return grant

    # --- decisions -------------------------------------------------------------------------

    def _held(self) -> tuple[set[str], set[str]]:
        """(held exclusively by someone, held shared by someone)."""
        exclusive: set[str] = set()
        shared: set[str] = set()
        for grant in self._grants.values():
            (exclusive if grant.exclusive else shared).update(grant.uuids)
        return exclusive, shared

    def _usable(self, request: GpuRequest, units: Iterable[GpuUnit]) -> list[GpuUnit]:
        exclusive, shared = self._held()
        taken = exclusive | shared if request.exclusive else exclusive
        # A MIG slice is taken too when its whole parent GPU is (labels from before MIG).
        return [
            u
            for u in units
            if u.uuid not in taken and u.parent_uuid not in taken and self._family_ok(request, u)
        ]

    @staticmethod
    def _family_ok(request: GpuRequest, unit: GpuUnit) -> bool:
        return request.family is None or (unit.family or "") == request.family.lower()

    def _keep_previous(
        self, request: GpuRequest, units: Sequence[GpuUnit], previous: tuple[str, ...]
    ) -> list[str] | None:
        usable = {u.uuid for u in self._usable(request, units)}
        if not set(previous) <= usable:
            return None
        if request.uuids and set(previous) != set(request.uuids):
            return None
        if request.count is not None and len(previous) != request.count:
            return None
        if request.all:
            return None  # "all" is re-evaluated: GPUs may have been added
        return list(previous)

    def _choose(
        self, container_id: str, request: GpuRequest, units: Sequence[GpuUnit]
    ) -> list[str]:
        usable = self._usable(request, units)
        params: dict[str, Any] = {"container": container_id}
        if request.uuids:
            known = {u.uuid for u in units}
            usable_ids = {u.uuid for u in usable}
            missing = [u for u in request.uuids if u not in known]
            if missing:
                raise GpuAssignmentError(
                    f"GPU(s) not present or not healthy on this host: {', '.join(missing)}",
                    {**params, "missing": missing},
                )
            busy = [u for u in request.uuids if u not in usable_ids]
            if busy:
                raise GpuAssignmentError(
                    f"GPU(s) already given exclusively to another container: {', '.join(busy)}",
                    {**params, "busy": busy},
                )
            return list(request.uuids)
        if request.all:
            if not usable:
                raise GpuAssignmentError(
                    "gpu: true but this host has no free healthy GPU", {**params, "available": 0}
                )
            return [u.uuid for u in usable]
        wanted = request.count or 1
        # Prefer units nobody uses, then the lowest index: stable, predictable placement.
        _, shared = self._held()
        ordered = sorted(usable, key=lambda u: (u.uuid in shared, u.index or 0, u.uuid))
        if len(ordered) < wanted:
            what = f"{request.family} " if request.family else ""
            raise GpuAssignmentError(
                f"asked for {wanted} {what}GPU(s), {len(ordered)} free and healthy",
                {**params, "requested": wanted, "available": len(ordered)},
            )
        return [u.uuid for u in ordered[:wanted]]


def gpu_run_options(grant: GpuGrant | None) -> GpuRunOptions:
    """Docker options for a grant: explicit device UUIDs, never ``--privileged`` or ``all``.

    ``NVIDIA_VISIBLE_DEVICES`` is always set: CUDA base images bake in ``all``, so a container
    without GPUs gets ``void`` or the nvidia runtime would hand it every GPU.
    """
    from docker.types import DeviceRequest

    uuids = grant.uuids if grant is not None else ()
    labels = {
        LABEL_GPUS: ",".join(uuids) if uuids else NO_GPUS,
        LABEL_EXCLUSIVE: "true" if grant is not None and grant.exclusive else "false",
    }
    if not uuids:
        return GpuRunOptions(environment={"NVIDIA_VISIBLE_DEVICES": NO_GPUS}, labels=labels)
    return GpuRunOptions(
        device_requests=[DeviceRequest(device_ids=list(uuids), capabilities=[["gpu"]])],
        environment={"NVIDIA_VISIBLE_DEVICES": ",".join(uuids)},
        labels=labels,
    )


class GpuPlanner:
    """The container manager's hook: config in, Docker GPU options out, from live inventory."""

    def __init__(
        self, allocator: GpuAllocator, inventory: Callable[[], Sequence[GpuState]]
    ) -> None:
        self.allocator = allocator
        self._inventory = inventory

    def __call__(self, config: ContainerConfig) -> GpuRunOptions:
        grant = self.allocator.allocate(config.id, config.gpu, self._inventory())
        return gpu_run_options(grant)
