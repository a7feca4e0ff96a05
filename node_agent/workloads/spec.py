"""The Docker create options of a workload container (pure), hardened by default: no
privileges, every capability dropped, no new privileges, bounded memory, CPU, pids and log
size, GPUs by UUID only, ports on loopback only."""

from __future__ import annotations

from typing import Any

from node_agent.gpu.assign import LABEL_EXCLUSIVE, LABEL_GPUS, NO_GPUS
from node_agent.workloads.config import WorkloadsConfig
from node_agent.workloads.docker_adapter import (
    LABEL_NODE,
    LABEL_OWNER_NODE,
    LABEL_WORKLOAD,
    NAME_PREFIX,
)
from node_agent.workloads.model import Workload


def container_name(job_id: str) -> str:
    return NAME_PREFIX + job_id


def container_spec(
    job: Workload, uuids: tuple[str, ...], config: WorkloadsConfig, node_tag: str = ""
) -> dict[str, Any]:
    """``containers.create`` keyword arguments for ``job`` on the GPUs ``uuids``.

    ``command`` replaces the image's entrypoint and ``args`` its default arguments (the
    Kubernetes meaning the orchestrator's examples follow: ``python`` + ``["-c", ...]``).
    """
    from docker.types import DeviceRequest, LogConfig

    draft = job.draft
    env = dict(draft.get("env") or {})
    # Always set: CUDA images bake in "all", so no GPUs must say "void" explicitly.
    env["NVIDIA_VISIBLE_DEVICES"] = ",".join(uuids) if uuids else NO_GPUS
    spec: dict[str, Any] = {
        "image": draft["image"],
        "name": container_name(job.id),
        "detach": True,
        "tty": False,
        "stdin_open": False,
        "environment": env,
        "labels": {
            LABEL_WORKLOAD: job.id,
            LABEL_OWNER_NODE: "workload",
            LABEL_NODE: node_tag,
            LABEL_GPUS: ",".join(uuids) if uuids else NO_GPUS,
            LABEL_EXCLUSIVE: "true",
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "pids_limit": config.pids_limit,
        "restart_policy": {"Name": "no"},
        "log_config": LogConfig(
            type="json-file", config={"max-size": config.docker_log_max_size, "max-file": "2"}
        ),
    }
    if draft.get("command"):
        spec["entrypoint"] = list(draft["command"])
    if draft.get("args"):
        spec["command"] = list(draft["args"])
    if uuids:
        spec["device_requests"] = [DeviceRequest(device_ids=list(uuids), capabilities=[["gpu"]])]
    if config.memory_limit:
        spec["mem_limit"] = config.memory_limit
    if config.cpus:
        spec["nano_cpus"] = int(config.cpus * 1e9)
    ports = draft.get("ports") or []
    if ports:
        # Loopback only, on a port Docker picks: the provider's firewall is never the guard.
        spec["ports"] = {f"{p}/tcp": ("127.0.0.1", None) for p in ports}
    if config.network:
        spec["network"] = config.network
    return spec
