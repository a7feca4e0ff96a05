"""Accepting, running and recovering off-chain jobs.

The order matters: access rules → admission (is there room?) → the job is committed as
``running`` → only then the client hears its id and the pipeline starts. A job the node said
yes to therefore always has a record, and always ends with a final status.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Literal

import structlog

from node_agent.containers.admission import Admission, Ticket
from node_agent.errors import BadRequest, ContainerError, Overloaded, ShuttingDown
from node_agent.ids import new_job_id
from node_agent.jobs import guardian
from node_agent.jobs.guardian import ContainerPolicy, IpAddress
from node_agent.jobs.model import ContainerResult, Job, JobLocation, JobStatus
from node_agent.jobs.pipeline import Pipeline
from node_agent.jobs.store import JobStore
from node_agent.recorder import NO_RECORDER, Recorder
from node_agent.tasks import TaskSupervisor

log = structlog.get_logger(__name__)


class JobStream:
    """A stream job's bytes. Always ``aclose()`` it: an async generator that was never
    started runs no ``finally``, so without this a stream whose response could not even be
    prepared (HTTP/1.0, a client gone) would keep its admission slots and stay running."""

    __slots__ = ("_chunks", "_end")

    def __init__(self, chunks: AsyncGenerator[bytes, None], end: Callable[[], None]) -> None:
        self._chunks = chunks
        self._end = end

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def aclose(self) -> None:
        try:
            await self._chunks.aclose()
        finally:
            self._end()


class JobService:
    def __init__(
        self,
        *,
        store: JobStore,
        pipeline: Pipeline,
        admission: Admission,
        policies: Mapping[str, ContainerPolicy],
        stream_timeout: float = 180.0,
        clock: Callable[[], float] = time.time,
        recorder: Recorder = NO_RECORDER,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.admission = admission
        self.policies = dict(policies)
        self.stream_timeout = stream_timeout
        self._clock = clock
        self.tasks = TaskSupervisor("jobs")
        self.accepting = True
        # Final jobs by status: the orchestrator's heartbeat and /metrics read them.
        self.counters: Counter[str] = Counter()
        self.recorder = recorder

    def reconfigure(self, policies: Mapping[str, ContainerPolicy], admission: Admission) -> None:
        """New rules apply to new jobs; running jobs keep the tickets they hold."""
        self.policies = dict(policies)
        self.admission = admission

    # --- intake ------------------------------------------------------------------------------

    def check(
        self, containers: Sequence[str], requires_proof: bool, ip: IpAddress, client: str
    ) -> Ticket:
        """Access rules and admission for one job; raises the error the client should see."""
        if not self.accepting:
            raise ShuttingDown()
        guardian.check_offchain_job(self.policies, containers, requires_proof, ip, client)
        try:
            return self.admission.reserve(containers)
        except Overloaded as exc:
            self.recorder.job_refused(str((exc.params or {}).get("container", "")))
            raise

    async def submit(
        self,
        client: str,
        ip: IpAddress,
        containers: Sequence[str],
        data: Any,
        requires_proof: bool,
    ) -> str:
        """Accept a job and start it; returns its id once the job is committed.

        The job starts while its record is being committed: the reply still waits for the
        commit, the container call does not, and a job that ends within the commit window is
        written once instead of twice. Should the commit fail, the client gets the error and
        the job is cancelled."""
        job_id, committed = self.start(client, ip, containers, data, requires_proof)
        await committed
        return job_id

    def start(
        self,
        client: str,
        ip: IpAddress,
        containers: Sequence[str],
        data: Any,
        requires_proof: bool,
    ) -> tuple[str, asyncio.Future[None]]:
        """``submit`` without the wait: the job's id and the future of its commit. A batch
        waits for its jobs' commits together instead of with a task per job."""
        job = self._new_job(client, containers, data, requires_proof, stream=False)
        ticket = self.check(containers, requires_proof, ip, client)
        # From here on the job holds admission slots: every way out that does not hand them
        # to a running job gives them back (a leak here is a container refusing work forever).
        task: asyncio.Task[None] | None = None

        def abandon(failed: bool = True) -> None:
            if task is not None:
                task.cancel()
            ticket.release_all()  # a task cancelled before its first step never releases it
            self.store.forget(job.id, failed=failed)

        try:
            committed = self.store.begin_create(job)
            task = self.tasks.spawn(self._run(job, ticket), name=f"job-{job.id}")
        except BaseException:
            abandon()
            raise

        def settled(future: asyncio.Future[None]) -> None:
            # A failed commit, or a waiter that gave up (its request was cancelled).
            if future.cancelled():
                abandon(failed=False)
            elif future.exception() is not None:
                abandon()

        committed.add_done_callback(settled)
        return job.id, committed

    def _new_job(
        self,
        client: str,
        containers: Sequence[str],
        data: Any,
        requires_proof: bool,
        *,
        stream: bool,
    ) -> Job:
        return Job(
            id=new_job_id(),
            client=client,
            containers=list(containers),
            data=data,
            requires_proof=requires_proof,
            stream=stream,
            created_at=self._clock(),
        )

    async def _accept_stream(
        self, client: str, ip: IpAddress, containers: Sequence[str], data: Any, requires_proof: bool
    ) -> tuple[Job, Ticket]:
        """Check, reserve, and commit the job as ``running``; nothing is kept on failure."""
        job = self._new_job(client, containers, data, requires_proof, stream=True)
        ticket = self.check(containers, requires_proof, ip, client)
        try:
            await self.store.create(job)
        except BaseException:
            ticket.release_all()
            raise
        return job, ticket

    async def _run(self, job: Job, ticket: Ticket | None) -> None:
        began = time.monotonic()

        def on_result(result: ContainerResult) -> None:
            job.results.append(result)
            if result.ok and len(job.results) < len(job.containers):
                self.store.save(job)  # intermediate results are visible while the chain runs

        try:
            outcome = await self.pipeline.run(
                job.containers,
                job.data,
                source=JobLocation.OFFCHAIN,
                destination=JobLocation.OFFCHAIN,
                requires_proof=job.requires_proof,
                on_result=on_result,
                ticket=ticket,
            )
            job.status = JobStatus.SUCCESS if outcome.ok else JobStatus.FAILED
        except Exception as exc:  # a bug must still leave the job with a final status
            log.exception("job_crashed", job_id=job.id)
            job.results.append(
                ContainerResult(
                    container=job.containers[len(job.results) % len(job.containers)],
                    error=f"internal error: {type(exc).__name__}: {exc}",
                )
            )
            job.status = JobStatus.FAILED
        finally:
            if ticket is not None:
                ticket.release_all()
            if not job.final:  # cancelled: the node stopped before the job could finish
                job.results.append(
                    ContainerResult(
                        container=job.containers[min(len(job.results), len(job.containers) - 1)],
                        error="job cancelled: the node shut down before it finished",
                    )
                )
                job.status = JobStatus.FAILED
            self._ended(job.status, began)
            self._save_final(job)

    def _ended(self, status: JobStatus, began: float | None) -> None:
        """Count a final job; its latency too when this process ran it from ``began``."""
        self.counters[status.value] += 1
        if began is not None:
            self.recorder.job_finished(status.value, time.monotonic() - began)

    def _save_final(self, job: Job) -> None:
        """Save a final job; should its results not serialise (a bug: the JSON policy admits
        only what the store can write) it still ends, with an error instead of the results."""
        try:
            self.store.save(job)
        except Exception as exc:
            log.exception("job_result_not_stored", job_id=job.id)
            job.results = [
                ContainerResult(
                    container=job.containers[-1],
                    error=f"internal error: the result could not be stored: {exc}",
                )
            ]
            job.status = JobStatus.FAILED
            self.store.save(job)

    # --- streaming ---------------------------------------------------------------------------

    async def open_stream(
        self,
        client: str,
        ip: IpAddress,
        containers: Sequence[str],
        data: Any,
        requires_proof: bool,
    ) -> tuple[Job, JobStream]:
        """Accept a stream job; the caller writes ``<id>\\n``, relays the stream and then
        closes it, whatever happened (that frees the job's slots if it never began)."""
        job, ticket = await self._accept_stream(client, ip, containers, data, requires_proof)
        return job, JobStream(self._stream(job, ticket), lambda: self._end_unstarted(job, ticket))

    def _end_unstarted(self, job: Job, ticket: Ticket) -> None:
        """A stream closed before its first byte was asked for: no ``finally`` of ``_stream``
        ran, so its slots and final status are settled here (a no-op after ``_stream``)."""
        ticket.release_all()
        if job.final:
            return
        job.results.append(
            ContainerResult(container=job.containers[-1], error="stream interrupted")
        )
        job.status = JobStatus.FAILED
        self._ended(job.status, None)
        self._save_final(job)

    async def _stream(self, job: Job, ticket: Ticket) -> AsyncGenerator[bytes, None]:
        chunks: list[bytes] = []
        last = job.containers[-1]
        began = time.monotonic()
        try:
            async for chunk in self.pipeline.stream(
                job.containers,
                job.data,
                requires_proof=job.requires_proof,
                timeout=self.stream_timeout,
                ticket=ticket,
            ):
                chunks.append(chunk)
                yield chunk
            try:
                text = b"".join(chunks).decode("utf-8")
            except UnicodeDecodeError:
                raise ContainerError(
                    f"container {last} streamed bytes that are not UTF-8"
                ) from None
            job.results.append(ContainerResult(container=last, output={"output": text}))
            job.status = JobStatus.SUCCESS
        except ContainerError as exc:
            job.results.append(ContainerResult(container=last, error=exc.error))
            job.status = JobStatus.FAILED
        except BaseException:
            # The client went away (or the node is stopping) mid-stream.
            job.results.append(ContainerResult(container=last, error="stream interrupted"))
            job.status = JobStatus.FAILED
            raise
        finally:
            ticket.release_all()
            if not job.final:
                job.status = JobStatus.FAILED
            self._ended(job.status, began)
            self._save_final(job)

    # --- PUT /api/status ---------------------------------------------------------------------

    async def record_status(
        self, client: str, job_id: str, status: JobStatus, containers: Sequence[str]
    ) -> None:
        """A local process reports a job's status (Infernet's ``PUT /api/status``)."""
        owner = self.store.owner_of(job_id)
        if owner is not None and owner != client:
            raise BadRequest(
                "Could not store job status", {"problem": "the job id belongs to another client"}
            )
        job = Job(id=job_id, client=client, containers=list(containers), status=status)
        if status is JobStatus.RUNNING:
            await self.store.create(job, live=False)
        else:
            job.created_at = self._clock()
            self.store.save(job)
            self._ended(status, None)  # a job someone else ran: counted, not timed

    # --- lifecycle ---------------------------------------------------------------------------

    async def recover(self, policy: Literal["fail", "rerun"]) -> tuple[int, int]:
        """Give every job cut off by the previous process a final status, or run it again."""
        interrupted = await self.store.interrupted_jobs()
        rerun = [
            j
            for j in interrupted
            if policy == "rerun" and not j.stream and all(c in self.policies for c in j.containers)
        ]
        failed = self.store.fail_interrupted(j for j in interrupted if j not in rerun)
        for job in rerun:
            self.store.resume(job)
            self.tasks.spawn(self._run(job, None), name=f"job-rerun-{job.id}")
        if interrupted:
            log.warning("jobs_recovered_after_restart", failed=failed, rerun=len(rerun))
        return failed, len(rerun)

    async def drain(self, grace: float) -> bool:
        """Refuse new jobs and wait up to ``grace`` seconds for running ones."""
        self.accepting = False
        finished = await self.tasks.wait(grace)
        if not finished:
            log.warning("jobs_still_running_at_shutdown", count=len(self.tasks))
            await self.tasks.cancel_all()
        return finished
