"""``node-agent version``: the versions a bug report needs, in one place.

A provider's "it broke after the upgrade" is answered by which agent, Python, HTTP and chain
libraries, Docker engine and NVIDIA driver were in play; each probe is short and can fail on
its own (no Docker, no GPU) without hiding the others.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import platform
from typing import Any, TextIO

from node_agent import INFERNET_COMPAT_VERSION, __version__

LIBRARIES = ("aiohttp", "web3", "pydantic", "docker", "nvidia-ml-py", "prometheus_client")


def _library(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _docker() -> dict[str, Any]:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            found = client.version()
        finally:
            client.close()
        return {"engine": found.get("Version"), "api": found.get("ApiVersion")}
    except Exception as exc:  # unreachable engine, missing socket: say so, go on
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def _nvidia(library: Any | None = None) -> dict[str, Any]:
    from node_agent.gpu.cli import collect_once
    from node_agent.gpu.config import GpusConfig

    try:
        snapshot = asyncio.run(collect_once(GpusConfig(), library=library))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    if not snapshot.nvml_available:
        return {"error": "; ".join(snapshot.reasons) or "NVML unavailable"}
    node = snapshot.node
    return {
        "driver": node.driver_version,
        "cuda": node.cuda_driver_version,
        "gpus": len(snapshot.gpus),
    }


def collect(nvml_library: Any | None = None) -> dict[str, Any]:
    """``nvml_library`` replaces pynvml (tests run without a GPU)."""
    return {
        "node_agent": __version__,
        "infernet_api": INFERNET_COMPAT_VERSION,
        "python": platform.python_version(),
        "libraries": {name: _library(name) for name in LIBRARIES},
        "docker": _docker(),
        "nvidia": _nvidia(nvml_library),
    }


def render(found: dict[str, Any]) -> str:
    libraries = ", ".join(f"{k} {v or 'missing'}" for k, v in found["libraries"].items())
    docker, nvidia = found["docker"], found["nvidia"]
    lines = [
        f"node-agent {found['node_agent']} (Infernet API {found['infernet_api']})",
        f"python     {found['python']}",
        f"libraries  {libraries}",
        "docker     "
        + (
            f"engine {docker['engine']}, API {docker['api']}"
            if "error" not in docker
            else f"unavailable: {docker['error']}"
        ),
        "nvidia     "
        + (
            f"driver {nvidia['driver']}, CUDA {nvidia['cuda']}, {nvidia['gpus']} GPU(s)"
            if "error" not in nvidia
            else f"no driver: {nvidia['error']}"
        ),
    ]
    return "\n".join(lines) + "\n"


def version_command(*, json_output: bool, short: bool, out: TextIO) -> int:
    if short:  # the agent alone, no probes: for scripts that compare versions
        out.write(f"node-agent {__version__} (Infernet API {INFERNET_COMPAT_VERSION})\n")
        return 0
    found = collect()
    out.write(json.dumps(found, indent=2) + "\n" if json_output else render(found))
    return 0
