"""Pure capacity model: what the agent knows about its GPUs and host, as frozen data.

Every field is optional because every NVML query can be unsupported on some board or driver;
``None`` means "not reported", never zero. The adapter fills these; everything above it
(``/info``, ``/metrics``, the orchestrator, GPU assignment) only reads them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

Health = Literal["healthy", "degraded", "unhealthy", "lost", "unknown"]

# NVML_DEVICE_ARCH_* values as published in the 13.x bindings.
ARCHITECTURES = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
}


@dataclass(frozen=True)
class MigInstance:
    """A MIG slice: allocatable on its own, with its own ``MIG-...`` UUID."""

    uuid: str
    parent_uuid: str
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    profile: str | None = None
    memory_total: int | None = None


@dataclass(frozen=True)
class Pcie:
    gen: int | None = None
    width: int | None = None


@dataclass(frozen=True)
class Clocks:
    sm_mhz: int | None = None
    mem_mhz: int | None = None
    graphics_mhz: int | None = None


@dataclass(frozen=True)
class GpuInventory:
    """Static facts about one GPU, sent at registration and whenever they change."""

    index: int | None = None
    uuid: str | None = None
    name: str | None = None
    family: str | None = None
    architecture: str | None = None
    compute_capability: str | None = None
    pci_bus_id: str | None = None
    pci_device_id: str | None = None
    minor_number: int | None = None
    serial: str | None = None
    memory_total: int | None = None
    power_limit_w: float | None = None
    power_limit_default_w: float | None = None
    clocks_max: Clocks = Clocks()
    pcie_max: Pcie = Pcie()
    ecc_enabled: bool | None = None
    ecc_pending: bool | None = None
    mig_enabled: bool | None = None
    mig_pending: bool | None = None
    mig_instances: tuple[MigInstance, ...] = ()
    persistence_mode: bool | None = None
    compute_mode: int | None = None


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_memory: int | None = None


@dataclass(frozen=True)
class XidEvent:
    code: int
    at: float
    gpu_uuid: str | None = None


@dataclass(frozen=True)
class GpuTelemetry:
    """Fast-changing readings, sent with every heartbeat."""

    memory_used: int | None = None
    memory_free: int | None = None
    memory_reserved: int | None = None
    util_gpu_pct: int | None = None
    util_mem_pct: int | None = None
    temperature_c: int | None = None
    power_draw_w: float | None = None
    energy_mj: int | None = None
    clocks: Clocks = Clocks()
    pcie: Pcie = Pcie()
    pstate: int | None = None
    fan_pct: int | None = None
    throttle_reasons: int | None = None
    ecc_uncorrected_volatile: int | None = None
    ecc_uncorrected_aggregate: int | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    processes: tuple[GpuProcess, ...] | None = None
    last_xid: XidEvent | None = None


@dataclass(frozen=True)
class GpuState:
    """One GPU as seen in one collection cycle."""

    inventory: GpuInventory
    telemetry: GpuTelemetry = GpuTelemetry()
    health: Health = "healthy"
    reasons: tuple[str, ...] = ()

    @property
    def allocatable(self) -> bool:
        return self.health in ("healthy", "degraded")


@dataclass(frozen=True)
class DiskFacts:
    path: str | None = None
    total: int | None = None
    free: int | None = None


@dataclass(frozen=True)
class DockerFacts:
    version: str | None = None
    api_version: str | None = None
    runtimes: tuple[str, ...] = ()
    default_runtime: str | None = None
    nvidia_runtime: bool | None = None
    cdi_spec_dirs: tuple[str, ...] = ()
    data_root: DiskFacts = DiskFacts()
    error: str | None = None


@dataclass(frozen=True)
class NodeFacts:
    """Host facts next to the GPUs: what images can run and how much room there is."""

    hostname: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None
    memory_total: int | None = None
    memory_available: int | None = None
    kernel: str | None = None
    os: str | None = None
    machine_id: str | None = None
    boot_id: str | None = None
    docker: DockerFacts = DockerFacts()


@dataclass(frozen=True)
class CapacitySnapshot:
    """Everything one collection cycle produced; what /info, /metrics and the grid read."""

    collected_at: float
    health: Health
    reasons: tuple[str, ...] = ()
    remedy: str | None = None
    gpus: tuple[GpuState, ...] = ()
    node: NodeFacts = NodeFacts()
    nvml_available: bool = False

    def gpu(self, uuid: str) -> GpuState | None:
        for state in self.gpus:
            if state.inventory.uuid == uuid:
                return state
        return None

    def inventory(self) -> list[dict[str, Any]]:
        return [to_jsonable(g.inventory) for g in self.gpus]

    def inventory_hash(self) -> str:
        """Changes only when static facts change, so heartbeats can omit the full inventory."""
        static = {"gpus": self.inventory(), "node": _static_node(self.node)}
        encoded = json.dumps(static, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(encoded).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)  # type: ignore[no-any-return]


def _static_node(node: NodeFacts) -> dict[str, Any]:
    data: dict[str, Any] = to_jsonable(node)
    for volatile in ("memory_available", "boot_id"):
        data.pop(volatile, None)
    data.get("docker", {}).get("data_root", {}).pop("free", None)
    return data


def to_jsonable(value: Any) -> Any:
    """Dataclasses → plain dicts/lists for JSON (tuples become lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


# --- family slugs -------------------------------------------------------------------------------

_BRAND_WORDS = re.compile(
    r"\b(nvidia|geforce|quadro|tesla|titan(?=\s)|graphics|gpu|pcie|sxm\d?|nvl|hbm\d?e?|"
    r"mig|max-q|laptop|mobile|edition|founders|generation)\b",
    re.IGNORECASE,
)
_MEMORY_SIZE = re.compile(r"\b\d+\s*(gb|g)\b", re.IGNORECASE)
_SLUG_UNSAFE = re.compile(r"[^a-z0-9]+")


def family_slug(name: str | None) -> str | None:
    """``"NVIDIA A100-SXM4-80GB"`` → ``"a100"``, ``"NVIDIA GeForce RTX 4090"`` → ``"rtx4090"``.

    Orchestrators route on this lower-case model slug (the Akash style), not on architecture.
    """
    if not name:
        return None
    text = name.replace("_", " ")
    # Split form-factor suffixes joined by '-' ("A100-SXM4-80GB", "H100 80GB HBM3").
    text = " ".join(part for part in re.split(r"[-\s]+", text) if part)
    text = _MEMORY_SIZE.sub(" ", text)
    text = _BRAND_WORDS.sub(" ", text)
    slug = _SLUG_UNSAFE.sub("", text.lower())
    return slug or None


def compute_capability(major: int | None, minor: int | None) -> str | None:
    if major is None or minor is None:
        return None
    return f"{major}.{minor}"


def cuda_version(encoded: int | None) -> str | None:
    """NVML encodes CUDA 12.4 as 12040."""
    if encoded is None:
        return None
    return f"{encoded // 1000}.{(encoded % 1000) // 10}"
