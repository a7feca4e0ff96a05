"""Where a workload's GPUs come from (pure): hard constraints (avoided families, price cap,
memory for the model) never bend; the preferred family is soft and is relaxed when it cannot
be had, and the answer says so. The same decision serves submit, the scheduler and estimate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from node_agent.gpu.assign import GpuUnit
from node_agent.workloads.model import Draft, gpus_needed

GIB = 1024**3


@dataclass(frozen=True)
class Placement:
    units: tuple[GpuUnit, ...]
    hourly_price: float
    relaxed: tuple[str, ...] = ()

    def describe(self) -> list[dict[str, object]]:
        return [{"uuid": u.uuid, "family": u.family, "index": u.index} for u in self.units]


@dataclass(frozen=True)
class Verdict:
    """``placement`` when it can start now; else ``never`` (a reason it cannot run on this
    node at all) or ``busy`` (it fits, but the GPUs are taken)."""

    placement: Placement | None = None
    never: str | None = None
    busy: str | None = None
    needed: int = 0


def _memory_gb(unit: GpuUnit) -> float | None:
    return unit.memory_total / GIB if unit.memory_total else None


def _groups(units: Sequence[GpuUnit]) -> dict[str, list[GpuUnit]]:
    groups: dict[str, list[GpuUnit]] = {}
    for unit in units:
        groups.setdefault(unit.family or "unknown", []).append(unit)
    return groups


def place(
    draft: Draft,
    *,
    all_units: Sequence[GpuUnit],
    free_units: Sequence[GpuUnit],
    prices: Mapping[str, float],
    overhead: float,
) -> Verdict:
    constraints = draft.constraints
    if draft.gpus == 0 or (draft.gpus is None and not draft.model_size_gb):
        return Verdict(placement=Placement((), 0.0))
    avoid = {f.lower() for f in constraints.avoid_gpu_families}
    preferred = (constraints.preferred_gpu_family or "").lower() or None
    cap = constraints.max_price_per_hour
    reasons: list[str] = []

    def needed_for(family: str, units: Sequence[GpuUnit]) -> int:
        sizes = [m for m in (_memory_gb(u) for u in units) if m]
        return gpus_needed(draft, min(sizes) if sizes else None, overhead)

    # Families that could ever hold the job, with the count each would need.
    possible: dict[str, int] = {}
    for family, units in sorted(_groups(all_units).items()):
        if family in avoid:
            reasons.append(f"{family} is in avoid_gpu_families")
            continue
        count = needed_for(family, units)
        if count > len(units):
            reasons.append(f"needs {count} {family} GPU(s), the node has {len(units)}")
            continue
        price = prices.get(family, 0.0) * count
        if cap is not None and price > cap:
            reasons.append(f"{count} {family} GPU(s) cost {price:g}/h > max_price_per_hour {cap:g}")
            continue
        possible[family] = count
    if not all_units:
        reasons.append("this node has no healthy GPU")
    if not possible:
        return Verdict(never="; ".join(reasons) or "no GPU on this node fits the job")
    free = _groups(free_units)
    order = sorted(possible, key=lambda f: (f != preferred, prices.get(f, 0.0), f))
    for family in order:
        count = possible[family]
        units = sorted(free.get(family, ()), key=lambda u: (u.index or 0, u.uuid))
        if len(units) >= count:
            relaxed = ("preferred_gpu_family",) if preferred and family != preferred else ()
            price = round(prices.get(family, 0.0) * count, 6)
            return Verdict(placement=Placement(tuple(units[:count]), price, relaxed), needed=count)
    wanted = ", ".join(f"{n} {f}" for f, n in possible.items())
    return Verdict(busy=f"waiting for free GPUs ({wanted})", needed=min(possible.values()))
