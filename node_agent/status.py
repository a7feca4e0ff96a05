"""``node-agent status``: one screen from a running node's ``/health`` and ``/info``.

The verdict and the rendering are pure functions of the two documents, so they are tested
without a node; :func:`status_command` only fetches (with a timeout) and prints. The exit status
is for scripts and monitoring: 0 only when the node and every component check are healthy.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from node_agent.config import Config

KEY_ENV = "NODE_AGENT_API_KEY"
TIMEOUT = 5.0

Verdict = Literal["healthy", "degraded", "unhealthy", "unreachable"]


@dataclass(frozen=True)
class Fetched:
    """What one GET returned: the decoded JSON body (or None) and an error line."""

    status: int | None
    body: Any
    error: str | None = None


def default_url(config: Config) -> str:
    """The node on this host: loopback on the configured port (https when TLS is set)."""
    scheme = "https" if config.server.tls is not None else "http"
    return f"{scheme}://127.0.0.1:{config.server.port}"


def verdict(health: Any) -> Verdict:
    """The node's own status, lowered by the worst component check."""
    if not isinstance(health, dict):
        return "unreachable"
    if health.get("status") != "healthy":
        return "unhealthy"
    checks = health.get("checks") or {}
    states = {c.get("status") for c in checks.values() if isinstance(c, dict)}
    if "unhealthy" in states:
        return "unhealthy"
    if "degraded" in states:
        return "degraded"
    return "healthy"


def exit_code(health: Any) -> int:
    return 0 if verdict(health) == "healthy" else 1


def combined(url: str, health: Fetched, info: Fetched) -> dict[str, Any]:
    """The ``--json`` document: the verdict, both bodies and any fetch error."""
    doc: dict[str, Any] = {"url": url, "verdict": verdict(health.body), "health": health.body}
    doc["info"] = info.body if info.error is None else None
    errors = {name: f.error for name, f in (("health", health), ("info", info)) if f.error}
    if errors:
        doc["errors"] = errors
    return doc


def _v(value: Any) -> str:
    return "-" if value is None else str(value)


def _gib(value: Any) -> str:
    return f"{value / 2**30:.1f}" if isinstance(value, int | float) else "-"


def _check_lines(checks: dict[str, Any]) -> list[str]:
    lines = [
        "checks: " + ", ".join(f"{name} {c.get('status', '?')}" for name, c in checks.items() if c)
    ]
    for name, check in checks.items():
        if not isinstance(check, dict) or check.get("status") == "ok":
            continue
        reasons = check.get("reasons") or ([check["reason"]] if check.get("reason") else [])
        for reason in reasons or ["(no reason given)"]:
            lines.append(f"  ! {name}: {reason}")
        if check.get("remedy"):
            lines.append(f"    remedy: {check['remedy']}")
    return lines


def _gpu_lines(info: dict[str, Any]) -> list[str]:
    node = info.get("node") or {}
    gpus = info.get("gpus") or []
    facts = node.get("facts") or {}
    head = (
        f"GPUs: {len(gpus)}  driver {_v(facts.get('driver_version'))}  "
        f"cuda {_v(facts.get('cuda_driver_version'))}"
    )
    if node.get("gpu_monitoring") is False:
        return ["GPUs: monitoring disabled (gpus.enabled: false)"]
    if not gpus:
        return [head + ("  (NVML unavailable)" if node.get("nvml_available") is False else "")]
    lines = [
        head,
        f"  {'IDX':<4}{'NAME':<28}{'MEM GiB':>14}{'UTIL':>6}{'TEMP':>6}{'POWER':>8}  HEALTH",
    ]
    for gpu in gpus:
        inv, tel = gpu.get("inventory") or {}, gpu.get("telemetry") or {}
        mem = f"{_gib(tel.get('memory_used'))}/{_gib(inv.get('memory_total'))}"
        util = f"{tel['util_gpu_pct']}%" if tel.get("util_gpu_pct") is not None else "-"
        temp = f"{tel['temperature_c']}C" if tel.get("temperature_c") is not None else "-"
        power = tel.get("power_draw_w")
        watts = f"{power:.0f}W" if isinstance(power, int | float) else "-"
        lines.append(
            f"  {_v(inv.get('index')):<4}{str(inv.get('name') or '-')[:27]:<28}{mem:>14}"
            f"{util:>6}{temp:>6}{watts:>8}  {_v(gpu.get('health'))}"
        )
    return lines


def _container_lines(info: dict[str, Any]) -> list[str]:
    services = info.get("services") or []
    if not services:
        return ["containers: none configured"]
    queues = info.get("queues") or {}
    lines = [
        f"containers: {len(services)}",
        f"  {'ID':<24}{'STATE':<12}{'RESTARTS':>9}{'QUEUED':>8}  IMAGE",
    ]
    for svc in services:
        state = _v(svc.get("state")) + (f" ({svc['reason']})" if svc.get("reason") else "")
        lines.append(
            f"  {str(svc.get('id'))[:23]:<24}{state:<12}{_v(svc.get('restarts')):>9}"
            f"{_v(queues.get(svc.get('id'), 0)):>8}  {svc.get('image') or '-'}"
        )
    return lines


def _chain_line(info: dict[str, Any]) -> str:
    chain = info.get("chain") or {}
    if not chain.get("enabled"):
        return "chain: disabled"
    parts = [
        f"chain id {_v(chain.get('chain_id'))}",
        f"head {_v(chain.get('head'))}",
        f"synced {_v(chain.get('synced_block'))}",
        f"lag {_v(chain.get('lag'))}",
        f"deliveries in flight {_v(chain.get('deliveries_in_flight'))}",
        f"address {_v(chain.get('address'))}",
    ]
    line = "chain: " + ", ".join(parts)
    if chain.get("last_error"):
        line += f"\n  last error: {chain['last_error']}"
    return line


def _grid_line(health: dict[str, Any]) -> str:
    grid = (health.get("checks") or {}).get("grid") or {}
    if not grid or grid.get("enabled") is False:
        return "grid: disabled"
    line = (
        f"grid: {_v(grid.get('state'))}, node id {_v(grid.get('node_id'))}, "
        f"heartbeats {_v(grid.get('heartbeats_sent'))}, "
        f"failures in a row {_v(grid.get('consecutive_failures'))}"
    )
    if grid.get("last_error"):
        line += f"\n  last error: {grid['last_error']}"
    return line


def render(url: str, health: Fetched, info: Fetched) -> str:
    """The human screen; sections the node did not return are said to be missing."""
    if health.body is None or not isinstance(health.body, dict):
        return f"node-agent at {url}: unreachable ({health.error or 'no answer'})\n"
    body = health.body
    info_body = info.body if info.error is None and isinstance(info.body, dict) else None
    version = (
        f"node-agent {info_body.get('agent_version')} (Infernet API {info_body.get('version')})"
        if info_body
        else "node-agent"
    )
    lines = [f"{version} at {url}: {verdict(body)} (node says {body.get('status')})"]
    checks = body.get("checks") or {}
    lines += _check_lines(checks)
    jobs = checks.get("jobs") or {}
    workloads = checks.get("workloads") or {}
    lines.append(f"jobs: running {_v(jobs.get('running'))}, queued {_v(jobs.get('queued'))}")
    if workloads:
        lines.append(
            f"workloads: queued {_v(workloads.get('queued'))}, active "
            f"{_v(workloads.get('active'))}, running {_v(workloads.get('running'))}; callbacks "
            f"delivered {_v(workloads.get('callbacks_delivered'))}, failed "
            f"{_v(workloads.get('callbacks_failed'))}"
        )
    if info_body is None:
        lines.append(f"info: unavailable ({info.error})")
    else:
        pending = info_body.get("pending") or {}
        lines.append(
            f"pending: offchain {_v(pending.get('offchain'))}, onchain {_v(pending.get('onchain'))}"
        )
        lines += _gpu_lines(info_body)
        lines += _container_lines(info_body)
        lines.append(_chain_line(info_body))
    lines.append(_grid_line(body))
    return "\n".join(lines) + "\n"


def fetch(url: str, *, key: str | None = None, timeout: float = TIMEOUT) -> Fetched:
    """GET one JSON document; an HTTP error keeps its body (``/health`` answers 503 with one)."""
    headers = {"Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, headers=headers)
    context = None
    if url.startswith("https://127.0.0.1:"):
        # The node's certificate names its public host, not loopback; this is our own host.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return Fetched(response.status, _json(response.read()))
    except urllib.error.HTTPError as exc:
        body = _json(exc.read())
        message = body.get("error") if isinstance(body, dict) else None
        return Fetched(exc.code, body, f"HTTP {exc.code}" + (f": {message}" if message else ""))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Fetched(None, None, f"cannot connect: {reason}")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def status_command(
    url: str,
    *,
    key: str | None,
    json_output: bool,
    timeout: float = TIMEOUT,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the node's status; 1 when it is not healthy or cannot be reached."""
    out = out or sys.stdout
    err = err or sys.stderr
    key = key or os.environ.get(KEY_ENV) or None
    base = url.rstrip("/")
    health = fetch(f"{base}/health", key=key, timeout=timeout)
    if health.status is not None and not isinstance(health.body, dict):
        health = Fetched(health.status, None, f"HTTP {health.status}: not a node-agent answer")
    info = (
        fetch(f"{base}/info", key=key, timeout=timeout)
        if isinstance(health.body, dict)
        else Fetched(None, None, "not fetched")
    )
    if info.status in (401, 403):
        info = Fetched(
            info.status,
            None,
            f"{info.error} (the node protects /info: pass --key or set ${KEY_ENV})",
        )
    if json_output:
        out.write(json.dumps(combined(base, health, info), indent=2) + "\n")
    else:
        out.write(render(base, health, info))
    if not isinstance(health.body, dict):
        print(f"node-agent status: cannot reach the node at {base}: {health.error}", file=err)
    return exit_code(health.body)
