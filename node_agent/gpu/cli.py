"""``node-agent gpus``: what NVML sees on this host, as a table or JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TextIO

from node_agent.gpu.config import GpusConfig
from node_agent.gpu.model import CapacitySnapshot
from node_agent.gpu.monitor import GpuMonitor


def _gib(value: int | None) -> str:
    return f"{value / 2**30:.1f}" if value is not None else "-"


def _cell(value: Any, suffix: str = "") -> str:
    return f"{value}{suffix}" if value is not None else "-"


def render_table(snapshot: CapacitySnapshot) -> str:
    node = snapshot.node
    lines = [
        f"health: {snapshot.health}"
        + (f" ({'; '.join(snapshot.reasons)})" if snapshot.reasons else ""),
        f"driver: {_cell(node.driver_version)}  cuda: {_cell(node.cuda_driver_version)}  "
        f"docker: {_cell(node.docker.version)}  nvidia runtime: "
        f"{_cell(node.docker.nvidia_runtime)}",
    ]
    if snapshot.remedy:
        lines.append(f"remedy: {snapshot.remedy}")
    if not snapshot.gpus:
        lines.append("no GPUs")
        return "\n".join(lines) + "\n"
    header = f"{'IDX':<4}{'FAMILY':<10}{'NAME':<28}{'MEM GiB':>14}{'UTIL':>6}{'TEMP':>6}"
    header += f"{'POWER':>9}  {'HEALTH':<10}UUID"
    lines.append(header)
    for gpu in snapshot.gpus:
        inv, tel = gpu.inventory, gpu.telemetry
        memory = f"{_gib(tel.memory_used)}/{_gib(inv.memory_total)}"
        power = f"{tel.power_draw_w:.0f}W" if tel.power_draw_w is not None else "-"
        lines.append(
            f"{_cell(inv.index):<4}{_cell(inv.family):<10}{(inv.name or '-')[:27]:<28}"
            f"{memory:>14}{_cell(tel.util_gpu_pct, '%'):>6}{_cell(tel.temperature_c, 'C'):>6}"
            f"{power:>9}  {gpu.health:<10}{_cell(inv.uuid)}"
        )
        for mig in inv.mig_instances:
            lines.append(f"    MIG {mig.profile or '-'}  {_gib(mig.memory_total)} GiB  {mig.uuid}")
        for reason in gpu.reasons:
            lines.append(f"    ! {reason}")
    return "\n".join(lines) + "\n"


async def collect_once(
    config: GpusConfig, *, library: Any | None = None, docker_client: Any | None = None
) -> CapacitySnapshot:
    monitor = GpuMonitor.from_config(
        config.model_copy(update={"watch_xid_events": False}),
        library=library,
        docker_client=docker_client,
    )
    try:
        return await monitor.refresh()
    finally:
        await monitor.stop()


def gpus_command(
    json_output: bool,
    *,
    config: GpusConfig | None = None,
    library: Any | None = None,
    docker_client: Any | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print the GPUs; exit status 1 when NVML is unavailable (so scripts can tell)."""
    if docker_client is None:
        docker_client = _docker_or_none()
    snapshot = asyncio.run(
        collect_once(config or GpusConfig(), library=library, docker_client=docker_client)
    )
    if json_output:
        out.write(json.dumps(snapshot.to_dict(), indent=2) + "\n")
    else:
        out.write(render_table(snapshot))
    return 0 if snapshot.nvml_available else 1


def _docker_or_none() -> Any | None:
    try:
        import docker

        return docker.from_env(timeout=5)
    except Exception:  # no engine is fine here: the report says so
        return None
