"""The agent's Prometheus metrics: ``prometheus_client`` on a registry of the daemon's own.

Never the library's global default registry: tests run many daemons in one process, and two
daemons must not share (or collide on) a series. Two kinds of series:

- Events (latencies, calls, refusals, deliveries) are histograms and counters updated as they
  happen, through the :class:`~node_agent.recorder.Recorder` methods the core calls.
- Snapshots (GPU capacity, queues, containers, workloads, grid, chain, health) are read once
  per scrape from a :class:`NodeReading`, so a GPU, container or check that is gone stops
  being reported instead of keeping its last value.

GPU series come twice: the node's own ``node_agent_gpu_*`` (uuid/index/family labels, what the
bundled dashboard and alerts use) and, for every field NVML gives us, dcgm-exporter's name,
unit and labels (``DCGM_FI_DEV_*`` with ``gpu``, ``UUID``, ``pci_bus_id``, ``device``,
``modelName``, ``Hostname``; MIG slices add ``GPU_I_PROFILE`` and ``GPU_I_ID``), so dashboards
and alerts written for dcgm-exporter work on a node without DCGM.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from node_agent import __version__
from node_agent.gpu.model import CapacitySnapshot, GpuState
from node_agent.recorder import Recorder

if TYPE_CHECKING:
    from node_agent.containers.admission import ContainerGate
    from node_agent.grid.reporter import GridStatus

# Seconds. Jobs and container calls run from milliseconds (echo) to minutes (inference).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
BLOCK_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500)
# Distinct container label values kept before series of containers gone are dropped between
# scrapes (workloads served as containers come and go; each adds a label value).
MAX_CONTAINER_SERIES = 256
# Distinct payment tokens labelled before further ones count as "other": a container without
# accepted_payments takes a subscription's payment in any token, so tokens are not bounded by
# the config.
MAX_TOKEN_SERIES = 32
OTHER_TOKEN = "other"
PROOF_OUTCOMES = ("released", "slashed")

_HEALTH_VALUE = {"healthy": 1.0, "degraded": 0.5}
_CHECK_VALUE = {"ok": 1.0, "degraded": 0.5}
_GPU_LABELS = ("uuid", "index", "family")
_MIB = 1024 * 1024

WorkloadsReading = tuple[Mapping[str, int], Mapping[str, int], Mapping[str, int]]


@dataclass(frozen=True)
class NodeReading:
    """What one scrape reports about the node's current state (read, never kept)."""

    capacity: CapacitySnapshot | None = None
    jobs_finished: Mapping[str, int] = field(default_factory=dict)  # status -> count
    jobs_running: int = 0
    queues: Mapping[str, ContainerGate] = field(default_factory=dict)
    containers: Sequence[Mapping[str, Any]] = ()  # ContainerManager.describe()
    workloads: WorkloadsReading | None = None  # (by state, finished by status, outbox)
    grid: GridStatus | None = None
    chain: Mapping[str, Any] | None = None  # ChainService.status()
    health: Mapping[str, str] = field(default_factory=dict)  # check -> ok|degraded|unhealthy
    draining: bool = False
    # dcgm-exporter's Hostname label. Given by the daemon, not taken from the snapshot's host
    # facts: those can be missing for a poll (dockerd slow), and a label that comes and goes
    # would split every GPU series in two.
    hostname: str | None = None

    def container_ids(self) -> set[str]:
        return set(self.queues) | {str(c["id"]) for c in self.containers}


class AgentMetrics(Recorder):
    """Every series the agent exports; the daemon owns one, the API renders it."""

    def __init__(self, reading: Callable[[], NodeReading] = NodeReading) -> None:
        self._reading = reading
        # The event series only; each scrape adds the snapshot families (see _Scrape).
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._encoding = asyncio.Lock()
        self.job_seconds = Histogram(
            "node_agent_job_duration_seconds",
            "Infernet job latency, accepted to final status (queue wait included), by status",
            ("status",),
            registry=r,
            buckets=DURATION_BUCKETS,
        )
        self.queue_wait = Histogram(
            "node_agent_queue_wait_seconds",
            "Time a job step waited for a container's concurrency slot",
            ("container",),
            registry=r,
            buckets=QUEUE_BUCKETS,
        )
        self.container_seconds = Histogram(
            "node_agent_container_call_duration_seconds",
            "Latency of one service container call (a job's or a delivery's step)",
            ("container",),
            registry=r,
            buckets=DURATION_BUCKETS,
        )
        self.container_calls = Counter(
            "node_agent_container_calls",
            "Service container calls by container and status (success, failed)",
            ("container", "status"),
            registry=r,
        )
        self.refused = Counter(
            "node_agent_jobs_refused",
            "Jobs refused with 503 because the container's queue was full",
            ("container",),
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "node_agent_chain_rpc_duration_seconds",
            "Chain JSON-RPC request latency by method, failed and timed-out requests included",
            ("method",),
            registry=r,
            buckets=RPC_BUCKETS,
        )
        self.deliveries = Counter(
            "node_agent_chain_deliveries",
            "On-chain delivery attempts by outcome (confirmed, reverted, skipped, failed)",
            ("state",),
            registry=r,
        )
        self.delivery_blocks = Histogram(
            "node_agent_chain_delivery_latency_blocks",
            "Blocks from the head at which the node found an interval due to the block its "
            "confirmed delivery was mined in",
            registry=r,
            buckets=BLOCK_BUCKETS,
        )
        # Payments. Amounts are uint256 base units (wei for ETH) as floats: exact to 2**53,
        # then to about 16 significant digits, which a rate or a panel never needs beyond.
        self.paid_deliveries = Counter(
            "node_agent_chain_paid_deliveries",
            "Confirmed deliveries of paid subscriptions, by payment token (0x00..00 is ETH)",
            ("token",),
            registry=r,
        )
        self.paid_amount = Counter(
            "node_agent_chain_paid_amount",
            "paymentAmount of confirmed paid deliveries in the token's base units (wei for "
            "ETH), as a float; gross: the Coordinator keeps 2 x FEE of it, and with a verifier "
            "it is held in escrow until the proof is released",
            ("token",),
            registry=r,
        )
        self.payment_refusals = Counter(
            "node_agent_chain_payment_refusals",
            "Paid deliveries refused before computing because the wallets could not settle "
            "them, by reason code (as in /info chain.payments.recent_refusals)",
            ("code",),
            registry=r,
        )
        self.proof_outcomes = Counter(
            "node_agent_chain_proof_outcomes",
            "Proof requests of the node settled: released (stake back, payment paid) or "
            "slashed (stake paid to the consumer)",
            ("outcome",),
            registry=r,
        )
        for outcome in PROOF_OUTCOMES:
            self.proof_outcomes.labels(outcome)
        self.chain_restarts = Counter(
            "node_agent_chain_process_restarts",
            "Chain processes started again after the previous one died (the OOM killer, a "
            "crash); each resumed from the journal",
            registry=r,
        )
        self.loop_lag = Histogram(
            "node_agent_event_loop_lag_seconds",
            "How late the event loop ran a timer (sampled every 20 ms): the wait any request, "
            "container call or delivery ready at that moment had",
            registry=r,
            buckets=LAG_BUCKETS,
        )
        self._containers: set[str] = set()
        self._tokens: set[str] = set()

    # --- Recorder --------------------------------------------------------------------------

    def job_finished(self, status: str, seconds: float) -> None:
        self.job_seconds.labels(status).observe(seconds)

    def job_refused(self, container: str) -> None:
        self._seen(container)
        self.refused.labels(container).inc()

    def queue_waited(self, container: str, seconds: float) -> None:
        self._seen(container)
        self.queue_wait.labels(container).observe(seconds)

    def container_called(self, container: str, ok: bool, seconds: float) -> None:
        self._seen(container)
        self.container_calls.labels(container, "success" if ok else "failed").inc()
        self.container_seconds.labels(container).observe(seconds)

    def rpc_called(self, method: str, seconds: float) -> None:
        self.rpc_seconds.labels(method).observe(seconds)

    def delivery_finished(self, state: str, blocks: int | None) -> None:
        self.deliveries.labels(state).inc()
        if blocks is not None:
            self.delivery_blocks.observe(blocks)

    def payment_delivered(self, token: str, amount: int) -> None:
        label = self._token(token)
        self.paid_deliveries.labels(label).inc()
        self.paid_amount.labels(label).inc(float(amount))

    def payment_refused(self, code: str) -> None:
        self.payment_refusals.labels(code).inc()

    def proof_settled(self, outcome: str) -> None:
        self.proof_outcomes.labels(outcome).inc()

    def chain_process_restarted(self) -> None:
        self.chain_restarts.inc()

    def loop_lagged(self, seconds: float) -> None:
        self.loop_lag.observe(seconds)

    # --- bounds ----------------------------------------------------------------------------

    def _token(self, token: str) -> str:
        if token not in self._tokens and len(self._tokens) >= MAX_TOKEN_SERIES:
            return OTHER_TOKEN
        self._tokens.add(token)
        return token

    def _seen(self, container: str) -> None:
        if container in self._containers:
            return
        self._containers.add(container)
        if len(self._containers) > MAX_CONTAINER_SERIES:
            self.retain_containers(self._reading().container_ids() | {container})

    def retain_containers(self, keep: Iterable[str]) -> None:
        """Drop the series of containers that no longer exist (e.g. a workload that ended)."""
        gone = self._containers - set(keep)
        for container in gone:
            for metric, labels in (
                (self.queue_wait, (container,)),
                (self.container_seconds, (container,)),
                (self.refused, (container,)),
                (self.container_calls, (container, "success")),
                (self.container_calls, (container, "failed")),
            ):
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)
        self._containers -= gone

    # --- exposition ------------------------------------------------------------------------

    def _scrape(self) -> _Scrape:
        """Read the node's state (on the event loop, which owns it) and drop the series of
        containers that are gone; encoding may then happen anywhere."""
        reading = self._reading()
        self.retain_containers(reading.container_ids())
        return _Scrape(snapshot_families(reading), self.registry)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition the scraper asked for (``Accept``): Prometheus text 0.0.4 unless
        it asks for OpenMetrics or text 1.0.0; returns (body, content type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self._scrape()), content_type

    async def scrape(self, accept: str = "") -> tuple[bytes, str]:
        """:meth:`render` for GET /metrics: the state is read on the loop, the text written
        on a worker thread (tens of milliseconds with many GPUs and containers), one scrape
        at a time so a burst of scrapes cannot take every executor thread."""
        encoder, content_type = choose_encoder(accept)
        async with self._encoding:
            view = self._scrape()
            return await asyncio.to_thread(encoder, view), content_type


class _Scrape(Collector):
    """One scrape: snapshot families taken on the loop, then the event series (prometheus_client
    metrics lock their own values, so collecting them on another thread is safe)."""

    def __init__(self, snapshot: list[Metric], registry: CollectorRegistry) -> None:
        self._snapshot = snapshot
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        yield from self._snapshot
        yield from self._registry.collect()


# --- snapshot series ------------------------------------------------------------------------


class _Families:
    """Metric families built in first-use order; ``None`` values are left out (not reported
    is not zero), and so is a family left without samples."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def add(
        self,
        name: str,
        help_text: str,
        value: float | None,
        labels: Mapping[str, str] | None = None,
        kind: str = "gauge",
    ) -> None:
        family = name.removesuffix("_total") if kind == "counter" else name
        metric = self.metrics.get(family)
        if metric is None:
            metric = self.metrics[family] = Metric(family, help_text, kind)
        if value is not None:
            metric.add_sample(name, dict(labels or {}), float(value))


def snapshot_families(reading: NodeReading) -> list[Metric]:
    """Every snapshot series of one reading (a pure function of it)."""
    out = _Families()
    out.add("node_agent_build_info", "The agent's version", 1, {"version": __version__})
    out.add("node_agent_draining", "The node is shutting down (1/0)", float(reading.draining))
    for check, status in sorted(reading.health.items()):
        out.add(
            "node_agent_health_check",
            "Health check verdict as in /health: 1 ok, 0.5 degraded, 0 unhealthy",
            _CHECK_VALUE.get(status, 0.0),
            {"check": check},
        )
    _jobs(out, reading)
    if reading.capacity is not None:
        _gpus(out, reading.capacity, reading.hostname)
    if reading.workloads is not None:
        _workloads(out, *reading.workloads)
    if reading.grid is not None:
        _grid(out, reading.grid)
    if reading.chain is not None:
        _chain(out, reading.chain)
    return [metric for metric in out.metrics.values() if metric.samples]


def _jobs(out: _Families, reading: NodeReading) -> None:
    for status, count in sorted(reading.jobs_finished.items()):
        out.add(
            "node_agent_jobs_total",
            "Infernet jobs that reached a final status, by status",
            count,
            {"status": status},
            "counter",
        )
    out.add("node_agent_jobs_running", "Off-chain jobs running", reading.jobs_running)
    for container, gate in sorted(reading.queues.items()):
        labels = {"container": container}
        out.add("node_agent_queue_depth", "Jobs waiting for a container slot", gate.queued, labels)
        out.add(
            "node_agent_queue_capacity",
            "Jobs that may wait for a container slot (queue_size); beyond it jobs get 503",
            gate.queue_size,
            labels,
        )
    for described in reading.containers:
        labels = {"container": str(described["id"])}
        restarts = described.get("restarts", 0)
        out.add(
            "node_agent_container_restarts_total",
            "Service container restarts after a crash",
            restarts if isinstance(restarts, int) else 0,
            labels,
            "counter",
        )
        out.add(
            "node_agent_container_up",
            "Service container running (1/0)",
            float(described.get("state") == "running"),
            labels,
        )


def _workloads(
    out: _Families,
    counts: Mapping[str, int],
    finished: Mapping[str, int],
    outbox: Mapping[str, int],
) -> None:
    for state, n in sorted(counts.items()):
        out.add(
            "node_agent_workloads",
            "Orchestrator workloads by state (queued, active, running)",
            n,
            {"state": state},
        )
    for status, n in sorted(finished.items()):
        out.add(
            "node_agent_workloads_finished_total",
            "Workloads that ended, by status",
            n,
            {"status": status},
            "counter",
        )
    for outcome, n in sorted(outbox.items()):
        out.add(
            "node_agent_workload_callbacks_total",
            "Outbox deliveries (callbacks, orchestrator reports) by outcome",
            n,
            {"outcome": outcome},
            "counter",
        )


def _grid(out: _Families, status: GridStatus) -> None:
    out.add(
        "node_agent_grid_connected",
        "Last orchestrator request succeeded (1/0)",
        float(status.state == "registered"),
    )
    out.add(
        "node_agent_grid_heartbeats_total",
        "Heartbeats the orchestrator accepted",
        status.heartbeats_sent,
        kind="counter",
    )
    out.add(
        "node_agent_grid_consecutive_failures",
        "Orchestrator requests failed in a row",
        status.consecutive_failures,
    )
    out.add(
        "node_agent_grid_last_success_timestamp_seconds",
        "When an orchestrator request last succeeded (Unix time)",
        status.last_success_at,
    )


def _chain(out: _Families, status: Mapping[str, Any]) -> None:
    out.add("node_agent_chain_ready", "Connected to the chain (1/0)", float(bool(status["ready"])))
    for name, key, help_text in (
        ("node_agent_chain_head_block", "head", "Latest block the node has seen"),
        ("node_agent_chain_synced_block", "synced_block", "Block subscriptions are known to"),
        ("node_agent_chain_lag_blocks", "lag", "Head minus synced block"),
        (
            "node_agent_chain_deliveries_in_flight",
            "deliveries_in_flight",
            "Deliveries being computed or sent",
        ),
    ):
        out.add(name, help_text, status.get(key))
    for state, key in (
        ("tracked", "tracked_subscriptions"),
        ("delegated", "delegated_subscriptions"),
        ("skipped", "skipped_subscriptions"),
    ):
        out.add(
            "node_agent_chain_subscriptions",
            "Subscriptions: tracked, delegated (waiting to be created), skipped by the rules",
            status.get(key),
            {"state": state},
        )
    out.add(
        "node_agent_chain_rpc_requests_total",
        "Chain RPC calls attempted (each failover attempt counts)",
        status.get("rpc_calls"),
        kind="counter",
    )
    out.add(
        "node_agent_chain_rpc_failures_total",
        "Chain RPC attempts that failed (timeouts, transport errors, 5xx)",
        status.get("rpc_failures"),
        kind="counter",
    )
    for loop, failures in sorted(dict(status.get("loop_failures") or {}).items()):
        out.add(
            "node_agent_chain_loop_failures",
            "Consecutive failed steps of a chain loop (5 turns checks.chain unhealthy)",
            failures,
            {"loop": loop},
        )
    payments = status.get("payments")
    if isinstance(payments, Mapping):
        _payments(out, payments)


def _payments(out: _Families, payments: Mapping[str, Any]) -> None:
    """/info's chain.payments: proof requests in flight and the balances the payment gate
    last read (every 30 s; tokens no longer accepted are no longer read, so they vanish)."""
    proofs = payments.get("proofs") or {}
    for state in ("pending", "open"):
        out.add(
            "node_agent_chain_proof_requests",
            "Proof requests whose stake is in play: pending (sent, not yet seen locked) and "
            "open (locked until the verifier decides or the request expires)",
            proofs.get(state),
            {"state": state},
        )
    out.add(
        "node_agent_chain_payments_waiting",
        "Paid deliveries refused for a transient reason (funds, allowance, fee), checked again "
        "while their interval is open",
        payments.get("waiting"),
    )
    balances = payments.get("balances")
    if not isinstance(balances, Mapping):
        return
    out.add(
        "node_agent_chain_balances_read_timestamp_seconds",
        "When the node key's gas and the payment Wallet's balances were last read (Unix "
        "time); a failed read keeps the last values",
        balances.get("read_at"),
    )
    out.add(
        "node_agent_chain_gas_balance_wei",
        "The node key's ETH, which pays the delivery transactions' gas (wei, as a float)",
        _wei(balances.get("gas_wei")),
    )
    for token, held in sorted(dict(balances.get("wallet") or {}).items()):
        for kind, help_text in (
            ("unlocked", "free to pay proof stakes or be withdrawn"),
            ("locked", "locked as stake for open proof requests"),
        ):
            out.add(
                f"node_agent_chain_wallet_{kind}_balance",
                f"The payment Wallet's funds {help_text}, by token (0x00..00 is ETH), in the "
                "token's base units as a float",
                _wei(held.get(f"{kind}_wei")),
                {"token": token},
            )


def _wei(value: Any) -> float | None:
    """A uint256 shown as a decimal string (None when its read failed)."""
    return float(int(value)) if isinstance(value, str) and value.isdigit() else None


def _gpus(out: _Families, snapshot: CapacitySnapshot, hostname: str | None) -> None:
    out.add(
        "node_agent_gpu_up", "NVML answered on the last poll (1/0)", float(snapshot.nvml_available)
    )
    out.add("node_agent_gpus", "GPUs visible to NVML", len(snapshot.gpus))
    for gpu in snapshot.gpus:
        _node_gpu(out, gpu)
    for gpu in snapshot.gpus:
        _dcgm_gpu(out, gpu, hostname)


def _node_gpu(out: _Families, gpu: GpuState) -> None:
    inv, tel = gpu.inventory, gpu.telemetry
    labels = dict(
        zip(
            _GPU_LABELS,
            (inv.uuid or "", "" if inv.index is None else str(inv.index), inv.family or ""),
            strict=True,
        )
    )
    out.add(
        "node_agent_gpu_healthy",
        "1 healthy, 0.5 degraded, 0 unhealthy or lost",
        _HEALTH_VALUE.get(gpu.health, 0.0),
        labels,
    )
    util = tel.util_gpu_pct / 100 if tel.util_gpu_pct is not None else None
    for name, help_text, value in (
        ("node_agent_gpu_memory_total_bytes", "GPU memory size", inv.memory_total),
        ("node_agent_gpu_memory_used_bytes", "GPU memory in use", tel.memory_used),
        ("node_agent_gpu_utilization_ratio", "GPU busy fraction (0-1)", util),
        ("node_agent_gpu_temperature_celsius", "GPU core temperature", tel.temperature_c),
        ("node_agent_gpu_power_watts", "GPU power draw", tel.power_draw_w),
    ):
        out.add(name, help_text, value, labels)
    if tel.last_xid is not None:
        out.add(
            "node_agent_gpu_last_xid_timestamp_seconds",
            "When the GPU's last XID error was reported (Unix time); label xid is its code",
            tel.last_xid.at,
            {**labels, "xid": str(tel.last_xid.code)},
        )


def _mib(value: int | None) -> float | None:
    return value / _MIB if value is not None else None


def _flag(value: bool | None) -> float | None:
    return float(value) if value is not None else None


def _dcgm_gpu(out: _Families, gpu: GpuState, hostname: str | None) -> None:
    inv, tel = gpu.inventory, gpu.telemetry
    labels = {
        "gpu": "" if inv.index is None else str(inv.index),
        "UUID": inv.uuid or "",
        "pci_bus_id": inv.pci_bus_id or "",
        "device": "" if inv.minor_number is None else f"nvidia{inv.minor_number}",
        "modelName": inv.name or "",
    }
    if hostname:
        labels["Hostname"] = hostname
    xid = tel.last_xid.code if tel.last_xid is not None else (None if gpu.health == "lost" else 0)
    # dcgm-exporter declares the cumulative fields counters, but their names lack _total, which
    # neither exposition format allows for a counter: they are exported untyped, names intact.
    for name, help_text, value, kind in (
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", tel.util_gpu_pct, "gauge"),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", tel.util_mem_pct, "gauge"),
        (
            "DCGM_FI_DEV_FB_TOTAL",
            "Framebuffer memory total (in MiB).",
            _mib(inv.memory_total),
            "gauge",
        ),
        (
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB).",
            _mib(tel.memory_used),
            "gauge",
        ),
        (
            "DCGM_FI_DEV_FB_FREE",
            "Framebuffer memory free (in MiB).",
            _mib(tel.memory_free),
            "gauge",
        ),
        (
            "DCGM_FI_DEV_FB_RESERVED",
            "Framebuffer memory reserved (in MiB).",
            _mib(tel.memory_reserved),
            "gauge",
        ),
        ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", tel.temperature_c, "gauge"),
        ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", tel.power_draw_w, "gauge"),
        (
            "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
            "Enforced power limit (in W).",
            inv.power_limit_w,
            "gauge",
        ),
        (
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            "Total energy consumption since boot (in mJ).",
            tel.energy_mj,
            "unknown",
        ),
        ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", tel.clocks.sm_mhz, "gauge"),
        ("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", tel.clocks.mem_mhz, "gauge"),
        ("DCGM_FI_DEV_PCIE_LINK_GEN", "PCIe link generation.", tel.pcie.gen, "gauge"),
        ("DCGM_FI_DEV_PCIE_LINK_WIDTH", "PCIe link width (lanes).", tel.pcie.width, "gauge"),
        ("DCGM_FI_DEV_FAN_SPEED", "Fan speed (in %).", tel.fan_pct, "gauge"),
        ("DCGM_FI_DEV_PSTATE", "Performance state (0 fastest).", tel.pstate, "gauge"),
        ("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", xid, "gauge"),
        (
            "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
            "Total number of double-bit volatile ECC errors.",
            tel.ecc_uncorrected_volatile,
            "unknown",
        ),
        (
            "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
            "Total number of double-bit persistent ECC errors.",
            tel.ecc_uncorrected_aggregate,
            "unknown",
        ),
        (
            "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
            "Number of remapped rows for correctable errors",
            tel.remapped_rows_correctable,
            "unknown",
        ),
        (
            "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
            "Number of remapped rows for uncorrectable errors",
            tel.remapped_rows_uncorrectable,
            "unknown",
        ),
        (
            "DCGM_FI_DEV_ROW_REMAP_PENDING",
            "Whether remapping of rows is pending",
            _flag(tel.remapped_rows_pending),
            "gauge",
        ),
        (
            "DCGM_FI_DEV_ROW_REMAP_FAILURE",
            "Whether remapping of rows has failed",
            _flag(tel.remapped_rows_failure),
            "gauge",
        ),
    ):
        out.add(name, help_text, value, labels, kind)
    for mig in inv.mig_instances:
        out.add(
            "DCGM_FI_DEV_FB_TOTAL",
            "Framebuffer memory total (in MiB).",
            _mib(mig.memory_total),
            {
                **labels,
                "GPU_I_PROFILE": mig_profile(mig.profile),
                "GPU_I_ID": "" if mig.gpu_instance_id is None else str(mig.gpu_instance_id),
            },
        )


def mig_profile(name: str | None) -> str:
    """``"NVIDIA A100-SXM4-80GB MIG 3g.40gb"`` (NVML's name of a MIG device) → ``"3g.40gb"``,
    the profile as dcgm-exporter's ``GPU_I_PROFILE`` shows it."""
    if not name:
        return ""
    _, marker, profile = name.rpartition("MIG ")
    return profile.strip() if marker else name.strip()
