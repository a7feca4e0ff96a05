"""WorkloadService: accepts draft jobs, queues them for GPUs, runs one container per job,
follows it to a final status, and survives agent restarts (the agent is not the workload).

Decisions live in pure modules (``model.final_outcome``, ``placement.place``,
``spec.container_spec``); this module sequences them around the Docker adapter and the store.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import fnmatch
import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import structlog

from node_agent.errors import (
    BadRequest,
    Forbidden,
    NodeAgentError,
    NotFound,
    Overloaded,
)
from node_agent.gpu.assign import (
    WORKLOAD_GRANT_PREFIX,
    GpuAllocator,
    GpuUnit,
    allocatable_units,
)
from node_agent.gpu.model import GpuState
from node_agent.ids import new_job_id
from node_agent.pulls import PullBoard, PullProgress
from node_agent.pulls import error_text as docker_error_text
from node_agent.tasks import TaskSupervisor, run_forever, run_in_own_thread
from node_agent.workloads import logs
from node_agent.workloads.config import WorkloadsConfig
from node_agent.workloads.destinations import BlockedDestination, check_host
from node_agent.workloads.docker_adapter import (
    Found,
    ImageUnavailable,
    PullCancelled,
    WorkloadDocker,
    registry_host,
)
from node_agent.workloads.model import (
    CALLBACK_STATUSES,
    ORDER,
    Draft,
    Workload,
    WorkloadStatus,
    final_outcome,
    iso,
    parse_draft,
)
from node_agent.workloads.placement import Placement, Verdict, place
from node_agent.workloads.spec import container_spec
from node_agent.workloads.store import WorkloadStore

log = structlog.get_logger(__name__)
T = TypeVar("T")

DOCKER_THREADS = 8


class Unplaceable(NodeAgentError):
    """The job can never run on this node (no such GPUs, price cap, avoided families)."""

    status = 422
    default_message = "Job cannot run on this node"


def grant_key(job_id: str) -> str:
    return WORKLOAD_GRANT_PREFIX + job_id


@dataclass
class Active:
    """What the node holds for a job between leaving the queue and its final status."""

    job: Workload
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    signal: logs.LogSignal | None = None
    task: asyncio.Task[None] | None = None
    ended: bool = False

    def cancel(self) -> None:
        self.cancelled.set()


class WorkloadService:
    def __init__(
        self,
        config: WorkloadsConfig,
        *,
        store: WorkloadStore,
        docker: WorkloadDocker,
        allocator: GpuAllocator,
        inventory: Callable[[], Sequence[GpuState]],
        prices: Callable[[], Mapping[str, float]],
        log_dir: Path,
        node_tag: str = "",
        pulls: PullBoard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_tag = node_tag
        self.pulls = pulls or PullBoard()
        self.config = config
        self.store = store
        self.docker = docker
        self.allocator = allocator
        self._inventory = inventory
        self._prices = prices
        self.log_dir = log_dir
        self.clock = clock
        self.tasks = TaskSupervisor("workloads")
        self._queue: list[Workload] = []
        self._active: dict[str, Active] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.draining = False
        # Called after every stored status change (the outbox deliverer, the grid reporter).
        self.listeners: list[Callable[[Workload], None]] = []
        self.finished: collections.Counter[str] = collections.Counter()
        self._docker_pool = concurrent.futures.ThreadPoolExecutor(
            DOCKER_THREADS, thread_name_prefix="workloads-docker"
        )
        # image -> (lock, jobs using it): pulls of one image happen one at a time.
        self._pull_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        # Parsed drafts of queued jobs (the scheduler reads them on every pass).
        self._drafts: dict[str, Draft] = {}
        # Replaced on every change; waiters (a live log of a queued job) hold the current one.
        self._changed = asyncio.Event()
        # Recent runtimes, to estimate how long the queue ahead takes.
        self._recent_runtimes: list[float] = []

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Settle what a previous run left (re-attach, record exits, re-queue), then schedule."""
        await self._recover()
        self.tasks.spawn(self._schedule_forever(), name="workloads-scheduler")
        self.tasks.spawn(
            run_forever(
                self._prune, name="workloads-retention", interval=60.0, stop=self._stopping
            ),
            name="workloads-retention",
        )

    async def stop(self) -> None:
        """Stop following jobs; their containers keep running (the agent is not the workload)
        and are re-attached by the next start."""
        self.draining = True
        self._stopping.set()
        for active in list(self._active.values()):
            if active.task is not None:
                active.task.cancel()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.tasks.cancel_all()
        await self._in_docker(self.docker.close)
        self._docker_pool.shutdown(wait=False, cancel_futures=True)

    async def _in_docker(self, fn: Callable[..., T], *args: Any) -> T:
        """Docker calls get threads of their own: an engine that hangs stalls workloads only,
        never the shared executor the rest of the node uses."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._docker_pool, functools.partial(fn, *args))

    # --- reading -----------------------------------------------------------------------------

    def prices(self) -> Mapping[str, float]:
        return self._prices()

    def log_path(self, job_id: str) -> Path:
        return self.log_dir / f"{job_id}.log"

    async def get(self, owner: str, job_id: str) -> Workload:
        """The job if ``owner`` may see it; another principal's job is a plain 404."""
        job = self._live(job_id) or await self.store.get(job_id)
        if job is None or job.owner != owner:
            raise NotFound("Job not found", {"job_id": job_id})
        return job

    def _live(self, job_id: str) -> Workload | None:
        active = self._active.get(job_id)
        if active is not None:
            return active.job
        for job in self._queue:
            if job.id == job_id:
                return job
        return None

    def current(self, job: Workload) -> Workload:
        """The live record of a queued or active job (a stored copy may be a moment behind)."""
        return self._live(job.id) or job

    def wire(self, job: Workload) -> dict[str, Any]:
        body = job.to_wire(self.clock(), self._prices())
        if job.status is WorkloadStatus.QUEUED:
            ids = [j.id for j in self._queue]
            if job.id in ids:
                body["queue_position"] = ids.index(job.id) + 1
        return body

    async def runtime(self, owner: str, job_id: str) -> dict[str, Any]:
        job = await self.get(owner, job_id)
        data = await asyncio.to_thread(
            logs.tail, self.log_path(job.id), self.config.runtime_tail_bytes
        )
        return {
            "job_id": job.id,
            "status": job.status.value,
            "exit_code": job.exit_code,
            "error": job.error,
            "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at),
            "runtime_seconds": job.runtime_seconds(self.clock()),
            "log_tail": data.decode("utf-8", "replace"),
            "log_tail_bytes": len(data),
        }

    async def until_started(self, job: Workload) -> None:
        """Wait while the job is queued (a live log opened early follows it from the start)."""
        while self._live(job.id) is not None and self.current(job).status is WorkloadStatus.QUEUED:
            await self._changed.wait()

    def follow(self, job: Workload) -> Any:
        """An async iterator over the job's output, live until it ends."""
        active = self._active.get(job.id)
        if active is None:
            return logs.follow(self.log_path(job.id), None, lambda: True)
        if active.signal is None:
            active.signal = logs.LogSignal(asyncio.get_running_loop())
        return logs.follow(self.log_path(job.id), active.signal, lambda: active.ended)

    def counts(self) -> dict[str, int]:
        running = sum(1 for a in self._active.values() if a.job.status is WorkloadStatus.RUNNING)
        return {
            "queued": len(self._queue),
            "active": len(self._active),
            "running": running,
        }

    # --- submit, cancel, estimate -------------------------------------------------------------

    def _units(self) -> tuple[list[GpuUnit], list[GpuUnit]]:
        units = allocatable_units(self._inventory())
        return units, self.allocator.free_units(units)

    def _verdict(self, draft: Draft) -> Verdict:
        all_units, free = self._units()
        return place(
            draft,
            all_units=all_units,
            free_units=free,
            prices=self._prices(),
            overhead=self.config.memory_overhead_factor,
        )

    def _check_image(self, image: str) -> None:
        if not any(fnmatch.fnmatchcase(image, p) for p in self.config.allowed_images):
            raise Forbidden(
                "Image not allowed on this node",
                {"field": "image", "image": image, "allowed": list(self.config.allowed_images)},
            )

    def _check_callback(self, url: str | None) -> None:
        """A literal IP in a blocked network is refused now (a name, when it is resolved)."""
        if url is None:
            return
        try:
            check_host(urlsplit(url).hostname or "", self.config.callbacks.blocked)
        except BlockedDestination as exc:
            raise BadRequest(
                "Invalid job", {"field": "callback_url", "problem": str(exc)}
            ) from None

    async def submit(
        self,
        owner: str,
        body: Any,
        *,
        origin: Literal["push", "pull"] = "push",
        grid_job_id: str | None = None,
    ) -> tuple[Workload, list[str]]:
        """Validate, check the job can ever run here, store it ``queued``; nothing is stored
        when any of that fails. Returns the job and the fields that were ignored."""
        draft = parse_draft(body)
        if self.draining:
            from node_agent.errors import ShuttingDown

            raise ShuttingDown("Node is shutting down", retry_after=5)
        self._check_image(draft.image)
        self._check_callback(draft.callback_url)
        limit = self.config.max_runtime_limit
        if draft.max_runtime is not None and draft.max_runtime > limit:
            raise BadRequest(
                "Invalid job",
                {"field": "max_runtime", "problem": f"must be at most {limit:g} seconds"},
            )
        verdict = self._verdict(draft)
        if verdict.never is not None:
            raise Unplaceable("Job cannot run on this node", {"reason": verdict.never})
        if len(self._queue) >= self.config.max_queued:
            raise Overloaded(
                "Workload queue full, retry later",
                {"max_queued": self.config.max_queued},
                retry_after=30,
            )
        now = self.clock()
        job = Workload(
            id=new_job_id(),
            owner=owner,
            draft=draft.stored(),
            status=WorkloadStatus.QUEUED,
            created_at=now,
            updated_at=now,
            origin=origin,
            grid_job_id=grid_job_id,
            callback_token=draft.callback_auth_token,
        )
        await self.store.create(job)
        self._drafts[job.id] = draft
        self._queue.append(job)
        self._notify(job)
        log.info(
            "workload_queued",
            job_id=job.id,
            image=draft.image,
            workload_type=draft.workload_type,
            origin=origin,
        )
        self._wake.set()
        return job, draft.unknown_fields()

    async def cancel(self, owner: str, job_id: str) -> Workload:
        """Idempotent: a final job is returned as it is; otherwise the cancel is recorded first
        (it survives a restart) and then carried out."""
        job = await self.get(owner, job_id)
        if job.status.final:
            return job
        if not job.cancel_requested:
            await self.store.update(job, cancel_requested=True)
        job = self.current(job)  # it may have left the queue meanwhile
        job.cancel_requested = True
        if job.status.final:
            return job
        active = self._active.get(job.id)
        if job.status is WorkloadStatus.QUEUED and active is None:
            self._queue = [j for j in self._queue if j.id != job.id]
            self._drafts.pop(job.id, None)
            await self._finish(job, exit_code=None)
            return job
        if active is not None:
            active.cancel()
            if job.container_id is not None:
                self.tasks.spawn(self._stop_container(job), name=f"workload-stop-{job.id}")
        log.info("workload_cancel_requested", job_id=job.id, status=job.status.value)
        return job

    async def _stop_container(self, job: Workload) -> None:
        assert job.container_id is not None
        await self._in_docker(self.docker.stop, job.container_id, self.config.stop_grace)

    def estimate(self, body: Any) -> dict[str, Any]:
        draft = parse_draft(body)
        self._check_image(draft.image)
        verdict = self._verdict(draft)
        now = self.clock()
        prices = self._prices()
        answer: dict[str, Any] = {"fits": verdict.never is None, "constraints_relaxed": []}
        if verdict.never is not None:
            answer["reason"] = verdict.never
            return answer
        ahead = len(self._queue)
        placement = verdict.placement
        if placement is not None and ahead == 0 and len(self._active) < self.config.max_running:
            wait_min = wait_max = 0.0
            answer["gpus"] = placement.describe()
            answer["constraints_relaxed"] = list(placement.relaxed)
        else:
            typical = self._typical_runtime()
            slots = max(1, len(self._units()[0]) or self.config.max_running)
            rounds = (ahead + 1 + slots - 1) // slots
            wait_min, wait_max = typical * max(0, rounds - 1), typical * rounds
            answer["reason"] = verdict.busy or "waiting for a running slot"
        rate = placement.hourly_price if placement is not None else self._rate_range(prices)[0]
        low, high = (rate, rate) if placement is not None else self._rate_range(prices)
        answer.update(
            gpu_count=verdict.needed,
            queue_ahead=ahead,
            estimated_hourly_rate_usd=rate * (1 if placement is not None else verdict.needed),
            estimated_hourly_rate_min_usd=low * (1 if placement is not None else verdict.needed),
            estimated_hourly_rate_max_usd=high * (1 if placement is not None else verdict.needed),
            estimated_queue_wait_min_sec=round(wait_min),
            estimated_queue_wait_max_sec=round(wait_max),
            estimated_start_time_min=iso(now + wait_min),
            estimated_start_time_max=iso(now + wait_max),
        )
        if draft.max_runtime is not None:
            answer["estimated_cost_max_usd"] = round(
                answer["estimated_hourly_rate_max_usd"] * draft.max_runtime / 3600, 6
            )
        return answer

    def _rate_range(self, prices: Mapping[str, float]) -> tuple[float, float]:
        families = {u.family or "unknown" for u in self._units()[0]}
        known = [prices.get(f, 0.0) for f in families] or [0.0]
        return min(known), max(known)

    def _typical_runtime(self) -> float:
        runtimes = self._recent_runtimes
        return sorted(runtimes)[len(runtimes) // 2] if runtimes else 300.0

    # --- status changes ----------------------------------------------------------------------

    def callback_body(self, job: Workload) -> dict[str, Any]:
        body = self.wire(job)
        body["job_id"] = job.grid_job_id or job.id
        body["node_job_id"] = job.id
        body["correlation"] = job.draft.get("callback_metadata")
        body["timestamp"] = iso(job.updated_at)
        return body

    async def _transition(self, job: Workload, status: WorkloadStatus, **fields: Any) -> None:
        """The only way a job's status changes: forward only, stored with its outbox rows."""
        if ORDER[status] < ORDER[job.status] or job.status.final:
            return
        outbox: list[tuple[str, dict[str, Any]]] = []
        preview = Workload(**{**job.__dict__, "status": status, **fields})
        preview.updated_at = self.clock()
        if status in CALLBACK_STATUSES and job.draft.get("callback_url"):
            outbox.append(("callback", self.callback_body(preview)))
        if job.origin == "pull":
            outbox.append(("grid", self.callback_body(preview)))
        await self.store.update(job, status, outbox=outbox, **fields)
        log.info(
            "workload_status",
            job_id=job.id,
            status=status.value,
            **{k: v for k, v in fields.items() if k in ("exit_code", "error")},
        )
        self._notify(job)

    def _notify(self, job: Workload) -> None:
        if job.status.final:
            self.finished[job.status.value] += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in self.listeners:
            try:
                listener(job)
            except Exception:
                log.exception("workload_listener_failed")

    async def _finish(
        self,
        job: Workload,
        *,
        exit_code: int | None,
        timed_out: float | None = None,
        error: str | None = None,
    ) -> None:
        outcome = final_outcome(
            exit_code=exit_code,
            cancel_requested=job.cancel_requested,
            timed_out=timed_out,
            error=error,
        )
        runtime = job.runtime_seconds(self.clock())
        if runtime is not None:
            self._recent_runtimes = [*self._recent_runtimes[-99:], runtime]
        await self._transition(
            job,
            outcome.status,
            exit_code=exit_code,
            error=outcome.error,
            finished_at=self.clock(),
        )

    # --- scheduling --------------------------------------------------------------------------

    async def _schedule_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._schedule()
            except Exception:
                log.exception("workload_schedule_failed")

    def _schedule(self) -> None:
        """Start every queued job that can start now, oldest first; a job waiting for GPUs
        lets smaller ones behind it use what is free (it keeps its place)."""
        if self.draining:
            return
        waiting: list[Workload] = []
        for job in self._queue:
            if len(self._active) >= self.config.max_running:
                waiting.append(job)
                continue
            try:
                draft = self._drafts.get(job.id)
                if draft is None:
                    draft = self._drafts[job.id] = parse_draft(job.draft)
                verdict = self._verdict(draft)
                if verdict.placement is None:
                    waiting.append(job)
                    continue
                self._launch(job, verdict.placement)
            except Exception:
                # One job's trouble (a grant refused, a stored draft that no longer parses)
                # must not stop the others; it keeps its place and is retried next pass.
                log.exception("workload_launch_failed", job_id=job.id)
                waiting.append(job)
        self._queue = waiting

    def _launch(self, job: Workload, placement: Placement) -> None:
        self._drafts.pop(job.id, None)
        uuids = tuple(u.uuid for u in placement.units)
        if uuids:
            self.allocator.grant(grant_key(job.id), uuids, exclusive=True)
        active = self._active[job.id] = Active(job)
        active.task = self.tasks.spawn(
            self._run(active, placement.describe()), name=f"workload-{job.id}"
        )

    # --- one job -----------------------------------------------------------------------------

    async def _run(self, active: Active, gpus: list[dict[str, Any]]) -> None:
        job = active.job
        try:
            await self._prepare_image(active)
            if active.cancelled.is_set():
                await self._finish(job, exit_code=None)
                return
            await self._transition(job, WorkloadStatus.STARTING, gpus=gpus)
            spec = container_spec(job, tuple(g["uuid"] for g in gpus), self.config, self.node_tag)
            container_id = await self._in_docker(self.docker.create, spec)
            await self.store.update(job, container_id=container_id)
            if active.cancelled.is_set():
                await self._finish(job, exit_code=None)
                return
            stream = await self._in_docker(self.docker.attach, container_id)
            try:
                ports = await self._in_docker(self.docker.start, container_id)
            except BaseException:
                await self._in_docker(_close, stream)
                raise
            if active.cancelled.is_set():  # a cancel that came while it was being started
                self.tasks.spawn(self._stop_container(job), name=f"workload-stop-{job.id}")
            await self._transition(
                job, WorkloadStatus.RUNNING, started_at=self.clock(), ports=ports
            )
            await self._follow_to_end(active, stream=stream)
        except asyncio.CancelledError:
            raise  # the agent stops: the container runs on and is re-attached later
        except ImageUnavailable as exc:
            await self._finish(job, exit_code=None, error=exc.error)
        except PullCancelled:
            await self._finish(job, exit_code=None)
        except Exception as exc:
            log.warning("workload_failed_to_run", job_id=job.id, error=repr(exc)[:300])
            await self._finish(job, exit_code=None, error=_docker_reason(exc))
        finally:
            if not self.draining or job.status.final:
                await self._release(active)

    async def _prepare_image(self, active: Active) -> None:
        """One pull per image at a time: jobs that need the same image wait for the first
        pull and then find it present (a multi-GB image is fetched once; and concurrent pulls
        of one failing reference are much slower in the engine than one after another)."""
        job = active.job
        image = job.draft["image"]
        if self.config.pull_policy != "always" and await self._in_docker(
            self.docker.image_present, image
        ):
            return
        await self._transition(job, WorkloadStatus.PULLING)
        lock, users = self._pull_locks.get(image, (asyncio.Lock(), 0))
        self._pull_locks[image] = (lock, users + 1)
        try:
            acquire = asyncio.ensure_future(lock.acquire())
            cancelled = asyncio.ensure_future(active.cancelled.wait())
            await asyncio.wait({acquire, cancelled}, return_when=asyncio.FIRST_COMPLETED)
            cancelled.cancel()
            if not acquire.done() or acquire.cancelled():
                acquire.cancel()
                raise PullCancelled
            try:
                if self.config.pull_policy != "always" and await self._in_docker(
                    self.docker.image_present, image
                ):
                    return  # pulled by the job ahead of this one
                await self._pull(active, image)
            finally:
                lock.release()
        finally:
            lock, users = self._pull_locks[image]
            if users <= 1:
                del self._pull_locks[image]
            else:
                self._pull_locks[image] = (lock, users - 1)

    def _pull_ended(self, progress: PullProgress, pull: asyncio.Future[Any]) -> None:
        """The board hears every end: success, Docker's refusal, a cancel, a timeout."""
        error = None if pull.cancelled() or pull.exception() is None else str(pull.exception())
        self.pulls.finish(progress, error)

    async def _pull(self, active: Active, image: str) -> None:
        job = active.job
        creds = self.config.registries.get(registry_host(image))
        auth = (
            {"username": creds.username, "password": creds.password.get_secret_value()}
            if creds
            else None
        )

        progress = self.pulls.begin(image, f"workload {job.id}")
        last_copy = 0.0

        def on_event(pulled: PullProgress) -> None:  # from the pull thread
            nonlocal last_copy
            self.pulls.report(pulled)
            now = time.monotonic()
            if now - last_copy >= 1.0:  # the job's pull_progress, read by GET /v1/jobs/{id}
                last_copy = now
                job.progress = pulled.counts()

        deadline = time.monotonic() + self.config.pull_timeout
        stop = threading.Event()  # tells the pull thread to drop the transfer
        pull = run_in_own_thread(
            lambda: self.docker.pull(image, auth, progress, on_event, stop, deadline),
            name=f"pull-{job.id}",
        )
        pull.add_done_callback(lambda done: self._pull_ended(progress, done))
        cancelled: asyncio.Future[Any] = asyncio.ensure_future(active.cancelled.wait())
        waiting: set[asyncio.Future[Any]] = {pull, cancelled}
        try:
            # A stalled registry sends nothing: a cancel must not wait for its next event.
            await asyncio.wait(
                waiting,
                timeout=self.config.pull_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            cancelled.cancel()
        if pull.done():
            pull.result()
            job.progress = progress.counts()
            await self.store.update(job, progress=job.progress)
            return
        stop.set()
        pull.add_done_callback(_consume)
        if active.cancelled.is_set():
            raise PullCancelled
        raise ImageUnavailable(
            f"image {image}: pull timed out after {self.config.pull_timeout:g} s"
        )

    async def _follow_to_end(self, active: Active, *, stream: Any | None) -> None:
        """Capture output until the container exits (a thread of its own), enforce
        ``max_runtime``, and record the final status with Docker's exit code."""
        job = active.job
        assert job.container_id is not None
        container_id = job.container_id
        if active.signal is None:
            active.signal = logs.LogSignal(asyncio.get_running_loop())
        signal = active.signal
        path, cap = self.log_path(job.id), self.config.log_max_bytes

        def capture() -> int | None:
            # The file is opened here, on the capture thread, not on the event loop; the
            # attached stream is closed whatever happens (it holds a connection to Docker).
            log_file: logs.LogFile | None = None
            try:
                log_file = logs.LogFile(path, cap, signal.notify_threadsafe)
                if stream is not None:
                    self.docker.copy_output(stream, log_file.write)
                else:
                    log_file.reset()  # Docker replays everything from the container's start
                    self.docker.replay_output(container_id, log_file.write)
            finally:
                if log_file is not None:
                    log_file.close()
                if stream is not None:
                    _close(stream)
            return self.docker.wait(container_id)

        exited = run_in_own_thread(capture, name=f"capture-{job.id}")
        limit = job.draft.get("max_runtime") or self.config.default_max_runtime
        timed_out: float | None = None
        remaining = None
        if limit is not None and job.started_at is not None:
            remaining = max(0.0, job.started_at + float(limit) - self.clock())
        try:
            exit_code = await asyncio.wait_for(asyncio.shield(exited), remaining)
        except TimeoutError:
            timed_out = float(limit) if limit is not None else None
            log.info("workload_max_runtime", job_id=job.id, limit=limit)
            await self._in_docker(self.docker.stop, container_id, self.config.stop_grace)
            exit_code = await exited
        except asyncio.CancelledError:
            exited.add_done_callback(_consume)
            raise
        # Final status first: a live follower ends on ``ended`` and reports the status it sees.
        await self._finish(job, exit_code=exit_code, timed_out=timed_out)
        active.ended = True
        signal.fire()

    async def _release(self, active: Active) -> None:
        job = active.job
        active.ended = True
        if active.signal is not None:
            active.signal.fire()
        self.allocator.release(grant_key(job.id))
        self._active.pop(job.id, None)
        if job.container_id is not None and job.status.final:
            try:
                await self._in_docker(self.docker.remove, job.container_id)
            except Exception as exc:
                log.warning("workload_remove_failed", job_id=job.id, error=repr(exc)[:200])
        self._wake.set()

    # --- restart -----------------------------------------------------------------------------

    async def _recover(self) -> None:
        jobs = await self.store.open_jobs()
        found: dict[str, Found] = {}
        try:
            found = {
                f.job_id: f for f in await self._in_docker(self.docker.find_all, self.node_tag)
            }
        except Exception as exc:
            log.error("workloads_docker_unavailable", error=repr(exc)[:300])
        known = {j.id for j in jobs}
        for job in jobs:
            container = found.get(job.id)
            if container is not None and container.never_started:
                # Created, then the agent stopped before starting it: nothing ran.
                await self._in_docker(self.docker.remove, container.container_id)
                found.pop(job.id)
                container = None
            if container is not None:
                job.container_id = container.container_id
                await self._resume(job, container)
            elif job.status in (
                WorkloadStatus.QUEUED,
                WorkloadStatus.PULLING,
                WorkloadStatus.STARTING,
            ):
                if job.cancel_requested:
                    await self._finish(job, exit_code=None)
                else:
                    # Nothing of it ran: back in the queue, in the same order. The one place a
                    # status moves back, written directly (a transition only moves forward).
                    await self.store.update(
                        job, WorkloadStatus.QUEUED, progress=None, container_id=None, gpus=[]
                    )
                    self._queue.append(job)
            else:
                await self._finish(
                    job,
                    exit_code=None,
                    error="the job's container is gone (removed while the node was down)",
                )
        for job_id, container in found.items():
            if job_id not in known:  # finished and recorded, but not removed yet
                await self._in_docker(self.docker.remove, container.container_id)
        log.info("workloads_recovered", open=len(jobs), queued=len(self._queue))
        self._wake.set()

    async def _resume(self, job: Workload, container: Found) -> None:
        uuids = tuple(g["uuid"] for g in job.gpus)
        if uuids:
            self.allocator.grant(grant_key(job.id), uuids, exclusive=True)
        active = self._active[job.id] = Active(job)
        if job.cancel_requested:
            active.cancel()
        if job.status is not WorkloadStatus.RUNNING:
            # Started (maybe even ended) before the agent could record it: follow it now.
            await self._transition(job, WorkloadStatus.RUNNING, started_at=self.clock())
        log.info("workload_reattached", job_id=job.id, running=container.running)
        self._notify(job)  # listeners learn of it again (e.g. serve it as a container)
        if job.cancel_requested and container.running:
            self.tasks.spawn(self._stop_container(job), name=f"workload-stop-{job.id}")
        active.task = self.tasks.spawn(self._reattach(active), name=f"workload-{job.id}")

    async def _reattach(self, active: Active) -> None:
        job = active.job
        try:
            await self._follow_to_end(active, stream=None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("workload_reattach_failed", job_id=job.id, error=repr(exc)[:300])
            running, code = await self._in_docker(self.docker.exit_code, job.container_id or "")
            await self._finish(job, exit_code=code, error=None if not running else repr(exc))
        finally:
            if not self.draining or job.status.final:
                await self._release(active)

    # --- retention ---------------------------------------------------------------------------

    async def _prune(self) -> None:
        removed = await self.store.prune(self.config.retention_seconds, self.config.retention_count)
        for job_id in removed:
            await asyncio.to_thread(logs.remove, self.log_path(job_id))
        if removed:
            log.info("workloads_pruned", removed=len(removed))


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve a late result nobody waits for any more (no 'never retrieved' warning)."""
    if not future.cancelled():
        future.exception()


def _close(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _docker_reason(exc: Exception) -> str:
    return f"the container could not be run: {docker_error_text(exc)}"
