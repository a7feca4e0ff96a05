"""Builds the node's components, starts them in order, and stops them gracefully.

Order matters for providers and orchestrators: interrupted jobs are settled (one indexed
read), then the HTTP server listens (``/health`` answers within moments of start), then
containers come up in the background. Stopping reverses it: refuse new work, let running jobs
finish within ``agent.shutdown_grace``, then close the server, containers and store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from node_agent import __version__
from node_agent.api.app import create_server
from node_agent.api.context import NodeContext
from node_agent.api.tls import TlsCertificate
from node_agent.auth.keys import default_key_file
from node_agent.config import Config, load_config
from node_agent.configcheck import UnknownKey, find_unknown_keys
from node_agent.containers.admission import Admission, gates_for
from node_agent.containers.manager import ContainerManager
from node_agent.containers.service_client import ServiceClient
from node_agent.errors import ConfigError, NodeAgentError
from node_agent.jobs.guardian import policies_from_config
from node_agent.jobs.pipeline import Pipeline
from node_agent.jobs.service import JobService
from node_agent.jobs.store import JobStore
from node_agent.logging import set_log_level
from node_agent.looplag import LoopLagMonitor
from node_agent.provider import ProviderServices
from node_agent.pulls import PullBoard
from node_agent.reload import (
    GateHold,
    carry_over,
    diff_config,
    diff_containers,
    effective_config,
    wait_until_idle,
)
from node_agent.sdnotify import Notifier, Watchdog
from node_agent.tasks import TaskSupervisor, run_forever
from node_agent.ui.page import StatusPage, histogram_buckets

log = structlog.get_logger(__name__)

# The loop hands SQLite writes, Docker and NVML calls to threads; each hand-over of the GIL
# waits up to this interval while another thread is busy, and a request that writes needs
# several. Python's default 5 ms put ~30 ms on POST /api/jobs during a burst when the chain
# side still shared the process; 0.25 ms costs no measurable CPU (docs/chain.md).
GIL_SWITCH_SECONDS = 0.00025

RETENTION_INTERVAL = 60.0
STATUS_INTERVAL = 5.0


def log_unknown_keys(path: Path, unknown: list[UnknownKey]) -> None:
    """At start and on reload: a typo must not pass unnoticed (the key is ignored)."""
    for key in unknown:
        log.warning("config_unknown_key", key=key.path, line=key.line, file=str(path))


def _admission(config: Config) -> Admission:
    return Admission(gates_for((c.id, c.max_concurrency, c.queue_size) for c in config.containers))


class Daemon:
    def __init__(
        self,
        config: Config,
        state_dir: Path,
        *,
        config_path: Path | None = None,
        docker_factory: Callable[[], Any] | None = None,
        provider_options: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        # Test seams for ProviderServices (e.g. a fake NVML library).
        self._provider_options = provider_options or {}
        self.state_dir = state_dir
        self.config_path = config_path
        self._docker_factory = docker_factory
        self.tasks = TaskSupervisor("daemon")
        self.stopping = asyncio.Event()
        self.containers_ready = asyncio.Event()
        self.port: int | None = None
        self._runner: web.ServerRunner | None = None
        self._session: Any = None
        self.ctx: NodeContext | None = None
        self.chain: Any = None  # node_agent.chain.process.ChainProcess when chain.enabled
        self.workloads: Any = None  # node_agent.workloads.node.WorkloadNode when enabled
        self.status_page: StatusPage | None = None  # GET /ui, when ui.enabled
        self.tls: TlsCertificate | None = None
        # Changed settings that wait for a restart (named in STATUS= and the reload's log).
        self.restart_pending: tuple[str, ...] = ()
        # Image pulls of service containers and workloads, for /info and STATUS=.
        self.pulls = PullBoard()

    # --- start -------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            # A start that failed part-way (an unreadable certificate, a port in use) gives
            # back what it took: a caller that goes on, or a retry, leaks nothing.
            self.stopping.set()
            await self._stop_chain(0)
            with contextlib.suppress(Exception):  # logged there; the start's error is the one
                await self._close()
            raise

    async def _start(self) -> None:
        config = self.config
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._session = ServiceClient.make_session()
        client = self._client = ServiceClient(
            self._session, max_response_bytes=config.runtime.max_response_bytes
        )
        self.store = JobStore(self.state_dir / "jobs.sqlite", durability=config.jobs.durability)
        await self.store.open()
        self.store.retain(config.jobs.retention_seconds, config.jobs.retention_count)
        self.provider = ProviderServices(config, self.state_dir, **self._provider_options)
        await asyncio.to_thread(self.provider.api_keys.reload)  # keys known before serving
        self.manager = ContainerManager(
            config.containers,
            runtime=config.runtime,
            manage=config.manage_containers,
            startup_wait=config.startup_wait,
            client=client,
            credentials=config.docker,
            docker_factory=self._docker_factory,
            gpu_planner=self.provider.gpu_planner,
            pulls=self.pulls,
        )
        self.jobs = JobService(
            store=self.store,
            pipeline=Pipeline(self.manager, client),
            admission=_admission(config),
            policies=policies_from_config(config.containers),
        )
        self.ctx = NodeContext(
            config=config, jobs=self.jobs, containers=self.manager, service_client=client
        )
        self.ctx.health_checks["jobs"] = self._jobs_health
        self.ctx.health_checks["containers"] = self._containers_health
        self.ctx.info_sections["pulls"] = self.pulls.snapshot
        self.loop_lag = LoopLagMonitor(self.provider.metrics)
        self.ctx.info_sections["event_loop"] = self.loop_lag.status
        self.provider.attach(self.ctx, self.jobs, self.manager)
        self.workloads = self._workload_node()
        if self.workloads is not None:
            await self.workloads.open()
            self.workloads.attach(self.ctx)
            self.workloads.serve_as_containers(self.manager, self.jobs, client, self.tasks.spawn)
            self.provider.attach_workloads(self.workloads)
        if config.ui.enabled:
            self.status_page = await self._status_page()
        # Settled before the first request: a client must never read a job that the previous
        # process left running as if it were still running (one indexed read, milliseconds).
        await self.jobs.recover(config.jobs.on_restart)
        await self._serve(create_server(self.ctx))
        self.tasks.spawn(self._bring_up_containers(), name="containers-start")
        self.tasks.spawn(self.loop_lag.run(self.stopping), name="loop-lag")
        if self.status_page is not None:
            self.tasks.spawn(self.status_page.run(self.stopping), name="ui-sampler")
        self.tasks.spawn(
            run_forever(
                self._prune, name="job-retention", interval=RETENTION_INTERVAL, stop=self.stopping
            ),
            name="job-retention",
        )
        if config.chain.enabled:
            await self._start_chain()
        log.info(
            "node_started",
            version=__version__,
            port=self.port,
            containers=len(config.containers),
            state_dir=str(self.state_dir),
        )

    async def _serve(self, web_server: web.Server) -> None:
        server = self.config.server
        self._runner = web.ServerRunner(
            web_server,
            handle_signals=False,
            shutdown_timeout=self.config.agent.shutdown_grace,
        )
        await self._runner.setup()
        # All interfaces, IPv4 and IPv6, unless a specific address is configured.
        host = None if server.host in ("0.0.0.0", "::", "") else server.host
        if server.tls is not None:
            tls = server.tls
            self.tls = await asyncio.to_thread(TlsCertificate, tls.cert_file, tls.key_file)
            self.tasks.spawn(self.tls.watch(tls.reload_interval), name="tls-watch")
        site = web.TCPSite(
            self._runner,
            host=host,
            port=server.port,
            reuse_address=True,
            ssl_context=self.tls.context if self.tls is not None else None,
        )
        await site.start()
        addresses = self._runner.addresses
        self.port = addresses[0][1] if addresses else server.port

    async def _status_page(self) -> StatusPage:
        """The status page reads what /info and /health read, the provider's job counts and
        GPUs, and the job latency histogram of /metrics."""
        assert self.ctx is not None
        provider = self.provider
        page = StatusPage(
            self.config.ui,
            self.ctx,
            job_counts=provider.job_counts,
            gpus=provider.inventory,
            latency_buckets=lambda: histogram_buckets(provider.metrics.job_seconds),
            workloads=self.workloads,
        )
        await page.open()
        self.ctx.route_extensions.append(page.register)
        return page

    def _workload_node(self) -> Any:
        if not self.config.workloads.enabled:
            return None
        from node_agent.workloads.node import WorkloadNode

        provider = self.provider
        return WorkloadNode(
            self.config.workloads,
            self.state_dir,
            allocator=provider.allocator,
            inventory=provider.inventory,
            prices=lambda: self.config.grid.price_per_gpu_hour,
            pulls=self.pulls,
            **({"docker_factory": self._docker_factory} if self._docker_factory else {}),
        )

    async def _bring_up_containers(self) -> None:
        # GPU inventory and grants rebuilt from labels come first: containers need them.
        await self.provider.start(self.tasks.spawn)
        if self.workloads is not None:
            # Workload grants go on top of the service containers' rebuilt ones.
            await self.workloads.start(self.tasks.spawn)
        await self.manager.start()
        self.containers_ready.set()
        log.info("containers_started", services=self.manager.describe())
        await self.manager.watch(self.stopping)

    async def _prune(self) -> None:
        jobs = self.config.jobs
        self.store.retain(jobs.retention_seconds, jobs.retention_count)  # after a reload too
        removed = await self.store.prune(jobs.retention_seconds, jobs.retention_count)
        if removed:
            log.info("jobs_pruned", removed=removed)

    async def _start_chain(self) -> None:
        """Start the chain side; if it cannot start, the node serves off-chain and says why."""
        assert self.ctx is not None
        ctx = self.ctx
        try:
            # Imported only when enabled: web3 is heavy and most nodes run without a chain.
            chain_module: Any = importlib.import_module("node_agent.chain.process")
            chain: Any = chain_module.create_chain_service(
                self.config, self.state_dir, self.jobs.pipeline, self.provider.metrics
            )
            # Local only (state file, key); RPC trouble is handled by the service's own loops.
            await chain.start()
        except Exception as exc:
            if isinstance(exc, NodeAgentError):  # its message is written to be shown
                reason, trace = exc.error, None
            else:
                reason, trace = type(exc).__name__, exc
            log.error("chain_start_failed", error=reason, exc_info=trace)
            ctx.health_checks["chain"] = lambda: {"status": "unhealthy", "reason": reason}
            return
        self.chain = chain
        ctx.chain = chain
        ctx.health_checks["chain"] = chain.health

    async def _stop_chain(self, grace: float) -> None:
        if self.chain is None:
            return
        try:
            await self.chain.stop(grace)
        except Exception as exc:  # stopping must go on: containers and stores still close
            log.error("chain_stop_failed", error=repr(exc)[:300])

    def _jobs_health(self) -> dict[str, Any]:
        return {
            **self.store.health(),
            "running": self.store.running_count(),
            "queued": sum(self.jobs.admission.queue_depth().values()),
        }

    def core_alive(self) -> bool:
        """Asked before each watchdog ping: a node whose job store writer died cannot record
        anything any more, so systemd must restart it (recovery then finalises its jobs)."""
        store: JobStore | None = getattr(self, "store", None)
        return store is None or store.writer_alive

    def status_line(self) -> str:
        """One line for ``systemctl status`` (sd_notify ``STATUS=``)."""
        running, total = len(self.manager.running()), len(self.manager.containers)
        parts = [f"API on port {self.port}", f"containers {running}/{total} running"]
        parts.append(f"{len(self.jobs.tasks)} jobs in flight")
        pulling = self.pulls.status_text()
        if pulling:
            parts.append(pulling)
        if self.restart_pending:
            parts.append(f"restart needed for {', '.join(self.restart_pending)}")
        return "; ".join(parts)

    def _containers_health(self) -> dict[str, Any]:
        states = {c.config.id: c.state.value for c in self.manager.containers.values()}
        ok = self.manager.all_ready()
        return {"status": "ok" if ok else "degraded", "states": states}

    # --- reload and stop ---------------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the config file; apply container changes; keep the old config on error."""
        if self.tls is not None:  # a renewed certificate, even when the config is unchanged
            await asyncio.to_thread(self.tls.reload, force=True)
        if self.config_path is None:
            log.warning("reload_ignored", reason="no config file path")
            return False
        try:
            new = await asyncio.get_running_loop().run_in_executor(
                None, load_config, self.config_path
            )
        except ConfigError as exc:
            log.error("reload_refused", error=exc.error, params=exc.params)
            return False
        log_unknown_keys(
            self.config_path, await asyncio.to_thread(find_unknown_keys, self.config_path)
        )
        # Settings only a restart can apply keep their running value until then.
        settings = diff_config(self.config, new)
        new = effective_config(self.config, new, settings)
        changes = diff_containers(self.config.containers, new.containers)
        old_admission = self.jobs.admission
        admission = carry_over(old_admission, new.containers, changes)
        hold = GateHold(admission, changes.held)
        try:
            self.jobs.reconfigure(policies_from_config(new.containers), admission)
            if self.workloads is not None:
                self.workloads.reapply_services()
            self.provider.reconfigured(new)
            # From here new jobs follow the new config (held at the gates of containers that
            # are being added or replaced); jobs taken in before this line ran on the old one.
            log.info(
                "reload_applying",
                held=sorted(changes.held),
                replaced=sorted(changes.replaced),
            )
            # Jobs already admitted to a container that goes away finish on it first.
            grace = self.config.agent.shutdown_grace
            if not await wait_until_idle(old_admission, changes.replaced, grace):
                log.warning("reload_jobs_cut_off", containers=sorted(changes.replaced))
            await self.manager.apply(new.containers)
        finally:
            hold.release()
        self.config = new
        if self.ctx is not None:
            self.ctx.config = new
        await self._apply_live_settings(new)
        self.restart_pending = settings.restart
        log.info(
            "config_reloaded",
            containers=[c.id for c in new.containers],
            added=sorted(changes.added),
            changed=sorted(changes.changed),
            removed=sorted(changes.removed),
            applied=list(settings.live),
            restart_needed=list(settings.restart),
        )
        return True

    async def _apply_live_settings(self, config: Config) -> None:
        """What components copied at start; the rest read ``self.config``/``ctx.config``."""
        set_log_level(config.log.level)
        if self.chain is not None:  # the chain process filters its own lines
            self.chain.set_log_level(logging.getLogger().getEffectiveLevel())
        self.manager.startup_wait = config.startup_wait
        if self.workloads is not None:
            self.workloads.reconfigure(config.workloads)
        keys = self.provider.api_keys
        keys.reconfigure(config.api_keys, default_key_file(config.api_keys, self.state_dir))
        try:
            await asyncio.to_thread(keys.reload)
        except ConfigError as exc:  # the config's own keys are in force; the file is retried
            log.error("auth.key_file_invalid", error=exc.error)

    async def stop(self) -> None:
        """Stop intake, drain running jobs within the grace period, then close everything."""
        if self.ctx is not None:
            self.ctx.draining = True
        self.stopping.set()
        grace = self.config.agent.shutdown_grace
        log.info("node_stopping", grace=grace, running=len(self.jobs.tasks))
        # Off-chain jobs and in-flight deliveries share the same grace period.
        drained, _ = await asyncio.gather(self.jobs.drain(grace), self._stop_chain(grace))
        await self._close()
        log.info("node_stopped", drained=drained)

    async def _close(self) -> None:
        """Give back what the start took, newest first, skipping what a start that failed
        part-way never made. Every step runs though one fails (a store that cannot close must
        not keep the socket open); the first failure is raised after the last step."""
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        if self._runner is not None:
            steps.append(("server", self._runner.cleanup))
        steps.append(("tasks", self.tasks.cancel_all))
        # Workload containers keep running: the next start re-attaches them.
        for name in ("workloads", "provider", "manager"):
            part = getattr(self, name, None)
            if part is not None:
                steps.append((name, part.stop))
        store = getattr(self, "store", None)
        if store is not None:
            steps.append(("store", store.close))
        if self._session is not None:
            self._client.close()
            steps.append(("session", self._session.close))
        failure: Exception | None = None
        for name, step in steps:
            try:
                await step()
            except Exception as exc:
                log.error("node_close_failed", part=name, error=repr(exc)[:300])
                failure = failure or exc
        if failure is not None:
            raise failure


async def run_daemon(
    config: Config,
    state_dir: Path,
    config_path: Path | None,
    *,
    notifier: Notifier | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the config.

    Under systemd (``Type=notify``) it reports READY=1 once the API serves and the containers'
    start-up has finished, pings the watchdog from this loop, keeps STATUS= current, and
    brackets reloads with RELOADING=1/READY=1 and the drain with STOPPING=1.
    """
    notifier = notifier or Notifier.from_env()
    daemon = Daemon(config, state_dir, config_path=config_path)
    watchdog = Watchdog.from_env(notifier, healthy=daemon.core_alive)
    watchdog.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reload_lock = asyncio.Lock()

    async def reload() -> None:
        async with reload_lock:  # a second SIGHUP waits for the first reload to finish
            notifier.reloading("reloading configuration")
            ok = False
            try:
                ok = await daemon.reload()
            finally:  # systemd waits in "reloading" until READY=1, whatever happened
                prefix = "" if ok else "reload refused, old config kept; "
                notifier.ready(prefix + daemon.status_line())

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: daemon.tasks.spawn(reload(), name="reload"))
    notifier.status("starting")
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    try:
        await daemon.start()
    except Exception as exc:
        log.error("node_start_failed", error=str(exc))
        notifier.status(f"start failed: {exc}")
        await watchdog.stop()
        return 1
    notifier.status(f"API on port {daemon.port}; starting {len(config.containers)} containers")
    await _first_of(daemon.containers_ready.wait(), stop.wait())
    if not stop.is_set():
        notifier.ready(daemon.status_line())
        log.info("node_ready", status=daemon.status_line())
        _freeze_startup_heap()
        daemon.tasks.spawn(_report_status(daemon, notifier), name="sd-status")
    await stop.wait()
    notifier.stopping(f"draining; {daemon.status_line()}")
    # A shutdown_grace longer than TimeoutStopSec must not end in SIGKILL mid-drain.
    runtime = daemon.config.runtime
    notifier.extend_timeout(daemon.config.agent.shutdown_grace + runtime.stop_timeout + 30)
    await daemon.stop()
    await watchdog.stop()
    notifier.status("stopped")
    notifier.close()
    return 0


def _freeze_startup_heap() -> None:
    """Move everything built at start-up (modules, config, clients: several hundred thousand
    objects) out of the cyclic collector's reach. Without this, each full collection under
    load walks all of it and stalls the event loop for tens of milliseconds, which is what
    set the p99 of job latency; these objects live as long as the process anyway."""
    began = time.perf_counter()
    gc.collect()  # once, so start-up garbage is not frozen with the rest
    gc.freeze()
    log.info(
        "startup_heap_frozen",
        objects=gc.get_freeze_count(),
        ms=round((time.perf_counter() - began) * 1000, 1),
    )


async def _first_of(*aws: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _report_status(daemon: Daemon, notifier: Notifier) -> None:
    """Keep ``systemctl status`` current; only changes are sent."""
    last = ""
    while not daemon.stopping.is_set():
        line = daemon.status_line()
        if line != last and not daemon.stopping.is_set():
            notifier.status(line)
            last = line
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(daemon.stopping.wait(), STATUS_INTERVAL)
