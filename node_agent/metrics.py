"""A small Prometheus registry (text exposition format 0.0.4) and the agent's metrics.

Counters and gauges with labels are all the agent needs; writing them here avoids a global
default registry (``prometheus_client``'s) that would leak between tests and daemons.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from typing import TypeVar

from node_agent.gpu.model import CapacitySnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._values: dict[LabelValues, float] = {}
        self._lock = threading.Lock()

    def _key(self, labels: Mapping[str, str]) -> LabelValues:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def replace_all(self, values: Mapping[LabelValues, float]) -> None:
        """Swap in a whole new set of series: GPUs that vanished stop being reported, and
        counters kept elsewhere (the job service's) are copied in at scrape time."""
        with self._lock:
            self._values = dict(values)

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        help_text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines = [f"# HELP {self.name} {help_text}", f"# TYPE {self.name} {self.kind}"]
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            if self.label_names:
                pairs = ",".join(
                    f'{n}="{_escape(v)}"' for n, v in zip(self.label_names, key, strict=True)
                )
                lines.append(f"{self.name}{{{pairs}}} {_number(value)}")
            else:
                lines.append(f"{self.name} {_number(value)}")
        return lines


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)


M = TypeVar("M", bound=_Metric)


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def counter(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, labels))

    def gauge(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labels))

    def _add(self, metric: M) -> M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


_GPU_LABELS = ("uuid", "index", "family")
_HEALTH_VALUE = {"healthy": 1.0, "degraded": 0.5}


class AgentMetrics:
    """Every series the agent exports; the daemon owns one and the API renders it."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.gpu_up = r.gauge("node_agent_gpu_up", "NVML answered on the last poll (1/0)")
        self.gpu_count = r.gauge("node_agent_gpus", "GPUs visible to NVML")
        self.gpu_health = r.gauge(
            "node_agent_gpu_healthy", "1 healthy, 0.5 degraded, 0 unhealthy or lost", _GPU_LABELS
        )
        self.gpu_memory_total = r.gauge(
            "node_agent_gpu_memory_total_bytes", "GPU memory size", _GPU_LABELS
        )
        self.gpu_memory_used = r.gauge(
            "node_agent_gpu_memory_used_bytes", "GPU memory in use", _GPU_LABELS
        )
        self.gpu_utilization = r.gauge(
            "node_agent_gpu_utilization_ratio", "GPU busy fraction (0-1)", _GPU_LABELS
        )
        self.gpu_temperature = r.gauge(
            "node_agent_gpu_temperature_celsius", "GPU core temperature", _GPU_LABELS
        )
        self.gpu_power = r.gauge("node_agent_gpu_power_watts", "GPU power draw", _GPU_LABELS)
        self.jobs = r.counter(
            "node_agent_jobs_total",
            "Jobs finished, by container and status",
            ("container", "status"),
        )
        self.container_restarts = r.counter(
            "node_agent_container_restarts_total",
            "Service container restarts after a crash",
            ("container",),
        )
        self.queue_depth = r.gauge(
            "node_agent_queue_depth", "Jobs waiting for a container slot", ("container",)
        )
        self.running_jobs = r.gauge("node_agent_jobs_running", "Off-chain jobs running")
        self.workloads = r.gauge(
            "node_agent_workloads",
            "Orchestrator workloads by state (queued, active, running)",
            ("state",),
        )
        self.workloads_finished = r.counter(
            "node_agent_workloads_finished_total", "Workloads that ended, by status", ("status",)
        )
        self.workload_callbacks = r.counter(
            "node_agent_workload_callbacks_total",
            "Outbox deliveries (callbacks, orchestrator reports) by outcome",
            ("outcome",),
        )
        self.grid_connected = r.gauge(
            "node_agent_grid_connected", "Last orchestrator request succeeded (1/0)"
        )
        self.grid_heartbeats = r.counter(
            "node_agent_grid_heartbeats_total", "Heartbeats the orchestrator accepted"
        )

    def observe_capacity(self, snapshot: CapacitySnapshot) -> None:
        """Replace all GPU series from one capacity snapshot."""
        self.gpu_up.set(1.0 if snapshot.nvml_available else 0.0)
        self.gpu_count.set(float(len(snapshot.gpus)))
        series: dict[str, dict[LabelValues, float]] = {
            "health": {},
            "total": {},
            "used": {},
            "util": {},
            "temp": {},
            "power": {},
        }
        for gpu in snapshot.gpus:
            inv, tel = gpu.inventory, gpu.telemetry
            key = (
                inv.uuid or "",
                str(inv.index if inv.index is not None else ""),
                inv.family or "",
            )
            series["health"][key] = _HEALTH_VALUE.get(gpu.health, 0.0)
            for name, value in (
                ("total", inv.memory_total),
                ("used", tel.memory_used),
                ("util", tel.util_gpu_pct / 100 if tel.util_gpu_pct is not None else None),
                ("temp", tel.temperature_c),
                ("power", tel.power_draw_w),
            ):
                if value is not None:
                    series[name][key] = float(value)
        self.gpu_health.replace_all(series["health"])
        self.gpu_memory_total.replace_all(series["total"])
        self.gpu_memory_used.replace_all(series["used"])
        self.gpu_utilization.replace_all(series["util"])
        self.gpu_temperature.replace_all(series["temp"])
        self.gpu_power.replace_all(series["power"])

    def observe_jobs(
        self,
        counters: Mapping[tuple[str, str], int],
        queue_depth: Mapping[str, int],
        running: int,
    ) -> None:
        """Copy the job service's monotonic counters ((container or "job", status) -> n)."""
        self.jobs.replace_all({key: float(n) for key, n in counters.items()})
        self.queue_depth.replace_all({(c,): float(n) for c, n in queue_depth.items()})
        self.running_jobs.set(float(running))

    def observe_containers(self, described: Iterable[Mapping[str, object]]) -> None:
        restarts: dict[LabelValues, float] = {}
        for container in described:
            value = container.get("restarts", 0)
            restarts[(str(container["id"]),)] = float(value) if isinstance(value, int) else 0.0
        self.container_restarts.replace_all(restarts)

    def observe_workloads(
        self, counts: Mapping[str, int], finished: Mapping[str, int], outbox: Mapping[str, int]
    ) -> None:
        self.workloads.replace_all({(k,): float(v) for k, v in counts.items()})
        self.workloads_finished.replace_all({(k,): float(v) for k, v in finished.items()})
        self.workload_callbacks.replace_all({(k,): float(v) for k, v in outbox.items()})

    def observe_grid(self, state: str, heartbeats_sent: int) -> None:
        self.grid_connected.set(1.0 if state == "registered" else 0.0)
        self.grid_heartbeats.replace_all({(): float(heartbeats_sent)})

    def render(self) -> str:
        return self.registry.render()
