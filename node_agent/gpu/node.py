"""Host facts next to the GPUs: CPU, RAM, OS, and the Docker engine the jobs run on.

All functions here are synchronous and meant for a thread executor (they read /proc and talk
to the Docker daemon through docker-py).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
from pathlib import Path
from typing import Any

from node_agent.gpu.model import DiskFacts, DockerFacts, NodeFacts


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _cpu_model(cpuinfo: str | None) -> str | None:
    for line in (cpuinfo or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
            return value.strip()
    return None


def _meminfo(meminfo: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (meminfo or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def _os_name() -> str | None:
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def host_facts() -> NodeFacts:
    memory = _meminfo(_read("/proc/meminfo"))
    return NodeFacts(
        hostname=socket.gethostname(),
        cpu_model=_cpu_model(_read("/proc/cpuinfo")),
        cpu_count=os.cpu_count(),
        memory_total=memory.get("MemTotal"),
        memory_available=memory.get("MemAvailable"),
        kernel=platform.release() or None,
        os=_os_name(),
        machine_id=(_read("/etc/machine-id") or "").strip() or None,
        boot_id=(_read("/proc/sys/kernel/random/boot_id") or "").strip() or None,
    )


def docker_facts(client: Any) -> DockerFacts:
    """Ask dockerd for its version, runtimes and data root; never raises."""
    try:
        version = client.version()
        info = client.info()
    except Exception as exc:  # docker-py raises many types; the report says which
        return DockerFacts(error=f"{type(exc).__name__}: {exc}")
    runtimes = tuple(sorted((info.get("Runtimes") or {}).keys()))
    root = info.get("DockerRootDir")
    disk = DiskFacts(path=root)
    if root:
        try:
            usage = shutil.disk_usage(root)
            disk = DiskFacts(path=root, total=usage.total, free=usage.free)
        except OSError:
            pass
    return DockerFacts(
        version=version.get("Version"),
        api_version=version.get("ApiVersion"),
        runtimes=runtimes,
        default_runtime=info.get("DefaultRuntime"),
        nvidia_runtime="nvidia" in runtimes,
        cdi_spec_dirs=tuple(info.get("CDISpecDirs") or ()),
        data_root=disk,
    )
