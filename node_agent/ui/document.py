"""The status page's JSON document, composed from what ``/info`` and ``/health`` already say
(pure: the inputs are plain data, so every empty state and every redaction is tested without a
node).

What the page shows is picked field by field: recent jobs carry ids, status, containers and
times, never a job's input, output, arguments, environment or callback; and every string that
reaches the page goes through :func:`scrub`, so a URL with credentials or an API key quoted in
an error message is never rendered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from node_agent.status import verdict

REDACTED = "[redacted]"
# scheme://[userinfo@]host[:port][/path][?query]: shown as scheme://host[:port] only, since
# providers put keys in the userinfo, the path (…/v3/<key>) and the query (?apikey=…).
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")
# A 32-byte hex value may be a private key (as node_agent.logging redacts); API keys of the
# node (na_<id>_<secret>) and of the orchestrator (jg_...); bearer tokens.
_SECRETS = re.compile(r"\b(?:0x)?[0-9a-fA-F]{64}\b|\b(?:na|jg)_[A-Za-z0-9_-]{8,}|(?i:bearer)\s+\S+")
# Workload fields the page lists (command, args, env, callbacks and owner are left out).
WORKLOAD_FIELDS = (
    "job_id",
    "name",
    "status",
    "workload_type",
    "image",
    "origin",
    "created_at",
    "started_at",
    "finished_at",
    "runtime_seconds",
    "exit_code",
    "error",
    "queue_position",
    "cancel_requested",
)
GPU_FIELDS = ("index", "uuid", "family", "name")


def origin(url: str | None) -> str | None:
    """``scheme://host[:port]`` of ``url``: no credentials, path or query."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return REDACTED
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}" if parts.scheme and host else REDACTED


def scrub_text(text: str) -> str:
    text = _URL.sub(lambda m: origin(m.group(0)) or REDACTED, text)
    return _SECRETS.sub(REDACTED, text)


def scrub(value: Any) -> Any:
    """``value`` with every string (keys too) scrubbed of URLs' secrets and key-shaped text."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def gpu_key(uuid: Any, index: Any) -> str:
    """How the history names a GPU: its UUID, else its index."""
    return str(uuid) if uuid else f"index-{index}"


def _gpus(info: Mapping[str, Any]) -> dict[str, Any]:
    node = info.get("node") or {}
    facts = node.get("facts") or {}
    devices = []
    for gpu in info.get("gpus") or []:
        inv, tel = gpu.get("inventory") or {}, gpu.get("telemetry") or {}
        devices.append(
            {
                "key": gpu_key(inv.get("uuid"), inv.get("index")),
                **{k: inv.get(k) for k in GPU_FIELDS},
                "health": gpu.get("health"),
                "reasons": list(gpu.get("reasons") or []),
                "memory_total": inv.get("memory_total"),
                "power_limit_w": inv.get("power_limit_w"),
                "util_pct": tel.get("util_gpu_pct"),
                "memory_used": tel.get("memory_used"),
                "temperature_c": tel.get("temperature_c"),
                "power_w": tel.get("power_draw_w"),
            }
        )
    return {
        "monitoring": node.get("gpu_monitoring", False),
        "nvml_available": node.get("nvml_available"),
        "health": node.get("health"),
        "reasons": list(node.get("reasons") or []),
        "remedy": node.get("remedy"),
        "driver_version": facts.get("driver_version"),
        "cuda_driver_version": facts.get("cuda_driver_version"),
        "devices": devices,
    }


def _chain(info: Mapping[str, Any], health: Mapping[str, Any], configured: bool) -> Any:
    """/info's chain section; a chain that is configured but did not start says why."""
    chain = info.get("chain") or {"enabled": False}
    if chain.get("enabled") or not configured:
        return chain
    check = (health.get("checks") or {}).get("chain") or {}
    return {"enabled": False, "configured": True, "reason": check.get("reason")}


def _grid(info: Mapping[str, Any], enabled: bool, url: str | None) -> dict[str, Any]:
    if not enabled:
        return {"enabled": False}
    status = (info.get("node") or {}).get("grid") or {}
    return {**status, "enabled": True, "url": origin(url)}


def job_rows(rows: Iterable[tuple[str, str, list[str], float, float]]) -> list[dict[str, Any]]:
    """Infernet jobs as listed (``JobStore.recent``)."""
    return [
        {"id": i, "status": s, "containers": c, "created_at": made, "updated_at": changed}
        for i, s, c, made, changed in rows
    ]


def workload_row(wire: Mapping[str, Any]) -> dict[str, Any]:
    """A workload as listed: its wire form less everything a client may have put secrets in."""
    row = {k: wire[k] for k in WORKLOAD_FIELDS if k in wire}
    row["gpus"] = [{k: g.get(k) for k in GPU_FIELDS} for g in wire.get("gpus") or []]
    return row


def compose(
    *,
    info: Mapping[str, Any],
    health: Mapping[str, Any],
    grid_enabled: bool,
    grid_url: str | None,
    chain_configured: bool = False,
    recent_jobs: Mapping[str, Any],
    workloads: Mapping[str, Any],
    poll_seconds: float,
    now: float,
) -> dict[str, Any]:
    """Everything on the page but the history (added per request); scrubbed."""
    pending = info.get("pending") or {}
    doc = {
        "generated_at": now,
        "poll_seconds": poll_seconds,
        "node": {
            "agent_version": info.get("agent_version"),
            "infernet_version": info.get("version"),
            "status": health.get("status"),
            "verdict": verdict(health),
        },
        "health": dict(health),
        "gpus": _gpus(info),
        "jobs": {
            "running_offchain": pending.get("offchain", 0),
            "pending_onchain": pending.get("onchain", 0),
            "queues": info.get("queues") or {},
        },
        "containers": list(info.get("services") or []),
        "chain": _chain(info, health, chain_configured),
        "grid": _grid(info, grid_enabled, grid_url),
        "recent_jobs": dict(recent_jobs),
        "workloads": dict(workloads),
    }
    return scrub(doc)  # type: ignore[no-any-return]
