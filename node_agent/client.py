"""A typed client of the node's own job APIs, for ``node-agent job`` and scripts.

Two job kinds live on one node: Infernet jobs (``/api/jobs``, the reference node's routes with
our additions: ``wait``, paged ids) and workloads (``/v1/jobs``, the orchestrator's job model).
Every call has a timeout; the two long-lived ones (an Infernet stream, a followed log) have a
connect timeout and an idle limit or a liveness probe instead of a total. The API key travels
only in the ``Authorization`` header and is never part of an error this module raises.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from node_agent.doctor import safe_url

DEFAULT_TIMEOUT = 10.0
MAX_SERVER_WAIT = 30.0  # GET /api/jobs?wait=: the node caps it at jobs.max_wait_seconds
STREAM_IDLE = 300.0  # an Infernet stream may be silent this long (a model thinking)
IDS_PER_LOOKUP = 100  # ids per GET /api/jobs?id=...: keeps the request line short
POLL_FIRST, POLL_MAX = 0.2, 2.0  # workload wait: polling back-off

INFERNET_FINAL = frozenset({"success", "failed"})
WORKLOAD_FINAL = frozenset({"succeeded", "failed", "cancelled"})
SUCCESS = frozenset({"success", "succeeded"})

Kind = Literal["infernet", "workload"]


class ClientError(Exception):
    """Base of what the client raises; ``str()`` is one line fit for a terminal."""


class NodeUnreachable(ClientError):
    """No HTTP answer: refused, unresolvable, TLS failure, or a call past its timeout."""


class NodeRefused(ClientError):
    """The node answered with an HTTP error; ``error`` and ``params`` are its JSON body's."""

    def __init__(self, status: int, error: str, params: Any = None) -> None:
        self.status = status
        self.error = error
        self.params = params
        super().__init__(f"HTTP {status}: {error}{params_text(params)}")


class UnexpectedAnswer(ClientError):
    """A 2xx answer of a shape the node never sends (a proxy's page, another server)."""


class JobNotFound(ClientError):
    """Neither kind of job with this id is visible to this caller."""


class WaitTimeout(ClientError):
    """``wait`` gave up before the job was final; ``job`` is its last known state."""

    def __init__(self, message: str, job: Job) -> None:
        self.job = job
        super().__init__(message)


def params_text(params: Any) -> str:
    if not isinstance(params, dict) or not params:
        return ""
    text = ", ".join(f"{k}: {_value_text(v)}" for k, v in params.items())
    return f" ({text[:300]})"


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return "/".join(str(v) for v in value)
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class Job:
    """One job of either kind: ``body`` is the node's document as it sent it."""

    kind: Kind
    body: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.body.get("job_id") or self.body.get("id") or "")

    @property
    def status(self) -> str:
        return str(self.body.get("status") or "")

    @property
    def final(self) -> bool:
        return self.status in (INFERNET_FINAL if self.kind == "infernet" else WORKLOAD_FINAL)

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS


@dataclass(frozen=True)
class Page:
    """One page of a listing and the cursor of the next (``None``: the last page)."""

    jobs: list[Job]
    next_cursor: str | None


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str


@dataclass
class SseParser:
    """Server-sent events, fed a line at a time (sans-I/O). The node's live log needs only
    ``event``/``data`` fields and comments; ``id``/``retry`` are ignored (no reconnects)."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> SseEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data and not self._event:
                return None
            done = SseEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return done
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def _loopback_https(url: str) -> bool:
    """The node's certificate names its public host, never 127.0.0.1: on this host's own
    loopback the name cannot match, so it is not checked there (as ``node-agent status``)."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return False
    try:
        return ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return parts.hostname == "localhost"


class NodeClient:
    """``async with NodeClient(url, key) as node: ...``; one HTTP session for all calls."""

    def __init__(
        self, url: str, api_key: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key or None
        self._session: aiohttp.ClientSession | None = None

    @property
    def has_key(self) -> bool:
        return self._api_key is not None

    async def __aenter__(self) -> NodeClient:
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        ssl_arg: ssl.SSLContext | bool = True
        if _loopback_https(self.url):
            ssl_arg = False
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(ssl=ssl_arg, limit=4),
            raise_for_status=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- transport -----------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("NodeClient used outside 'async with'")
        return self._session

    def _unreachable(self, exc: BaseException, limit: float | None) -> NodeUnreachable:
        where = f"cannot reach the node at {safe_url(self.url)}"
        if isinstance(exc, TimeoutError):
            return NodeUnreachable(f"{where}: no answer within {limit or self.timeout:g} s")
        if isinstance(exc, aiohttp.ClientConnectorError):
            error = exc.os_error
            # asyncio's "Connect call failed (addr)" says less than the errno's own text.
            errno = error.errno if isinstance(error.errno, int) and error.errno > 0 else None
            reason = os.strerror(errno) if errno else error.strerror or str(error)
            return NodeUnreachable(f"{where}: {reason}")
        return NodeUnreachable(f"{where}: {type(exc).__name__}: {exc}")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """One JSON call; HTTP errors raise :class:`NodeRefused` with the node's own text."""
        limit = timeout or self.timeout
        try:
            async with self.session.request(
                method,
                self.url + path,
                params=params,
                json=body,
                timeout=aiohttp.ClientTimeout(total=limit),
            ) as response:
                await _raise_for_status(response)
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(exc, limit) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise NodeRefused(response.status, "the answer is not JSON") from None

    async def _object(self, method: str, path: str, *keys: str, **kw: Any) -> dict[str, Any]:
        """A call whose answer must be a JSON object with ``keys``."""
        answer = await self._request(method, path, **kw)
        if not isinstance(answer, dict) or any(k not in answer for k in keys):
            raise UnexpectedAnswer(f"{method} {path}: not a node-agent answer")
        return answer

    async def _objects(self, method: str, path: str, **kw: Any) -> list[dict[str, Any]]:
        """A call whose answer must be a JSON array of objects."""
        answer = await self._request(method, path, **kw)
        if not isinstance(answer, list) or not all(isinstance(a, dict) for a in answer):
            raise UnexpectedAnswer(f"{method} {path}: not a node-agent answer")
        return answer

    # --- Infernet jobs -------------------------------------------------------------------------

    async def submit_job(
        self, containers: Sequence[str], data: Any, *, requires_proof: bool | None = None
    ) -> str:
        body = _job_body(containers, data, requires_proof)
        return str((await self._object("POST", "/api/jobs", "id", body=body))["id"])

    async def submit_batch(self, bodies: list[Any]) -> list[dict[str, Any]]:
        """Each answer is ``{"id"}``, ``{}`` (a delegated subscription) or ``{"error"}``."""
        return await self._objects("POST", "/api/jobs/batch", body=bodies)

    async def submit_delegated(self, body: dict[str, Any]) -> dict[str, Any]:
        """A signed ``DelegatedSubscriptionRequest``; the node checks the signer before its
        ``{}`` (a refusal is an HTTP error naming the problem)."""
        return await self._object("POST", "/api/jobs", body=body)

    async def stream_job(
        self, containers: Sequence[str], data: Any, *, requires_proof: bool | None = None
    ) -> AsyncIterator[tuple[str, bytes]]:
        """``(job_id, chunk)`` as the output arrives (the first item has an empty chunk)."""
        limits = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=STREAM_IDLE)
        body = _job_body(containers, data, requires_proof)
        try:
            async with self.session.post(
                self.url + "/api/jobs/stream", json=body, timeout=limits
            ) as response:
                await _raise_for_status(response)
                job_id = (await response.content.readline()).decode().strip()
                yield job_id, b""
                async for chunk in response.content.iter_any():
                    yield job_id, chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(exc, STREAM_IDLE) from None

    async def jobs(
        self, ids: Sequence[str], *, intermediate: bool = False, wait: float = 0.0
    ) -> list[Job]:
        """Infernet job results (unknown ids are left out, as the reference node does)."""
        found: list[Job] = []
        for start in range(0, len(ids), IDS_PER_LOOKUP):
            params = [("id", i) for i in ids[start : start + IDS_PER_LOOKUP]]
            if intermediate:
                params.append(("intermediate", "true"))
            if wait > 0:
                params.append(("wait", f"{wait:g}"))
            answer = await self._objects(
                "GET", "/api/jobs", params=params, timeout=wait + self.timeout
            )
            found += [Job("infernet", j) for j in answer]
        return found

    async def job(
        self, job_id: str, *, intermediate: bool = False, wait: float = 0.0
    ) -> Job | None:
        found = await self.jobs([job_id], intermediate=intermediate, wait=wait)
        return found[0] if found else None

    async def job_page(self, *, limit: int, cursor: str | None = None) -> Page:
        """A page of the caller's Infernet job ids, with each job's result."""
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        answer = await self._object("GET", "/api/jobs", "ids", params=params)
        ids = [str(i) for i in answer["ids"]]
        by_id = {j.id: j for j in await self.jobs(ids)}
        # A job removed by retention between the two reads is simply not shown.
        return Page([by_id[i] for i in ids if i in by_id], answer.get("next_cursor"))

    # --- workloads -----------------------------------------------------------------------------

    async def submit_workload(self, draft: dict[str, Any]) -> dict[str, Any]:
        return await self._object("POST", "/v1/jobs", "job_id", body=draft)

    async def estimate_workload(self, draft: dict[str, Any]) -> dict[str, Any]:
        return await self._object("POST", "/v1/jobs/estimate", "fits", body=draft)

    async def workload(self, job_id: str) -> Job:
        return Job("workload", await self._object("GET", f"/v1/jobs/{job_id}", "job_id"))

    async def workload_runtime(self, job_id: str) -> dict[str, Any]:
        return await self._object("GET", f"/v1/jobs/{job_id}/runtime", "job_id")

    async def cancel_workload(self, job_id: str) -> Job:
        cancelled = await self._object("POST", f"/v1/jobs/{job_id}/cancel", "job_id")
        return Job("workload", cancelled)

    async def workload_page(self, *, limit: int, cursor: str | None = None) -> Page:
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        answer = await self._object("GET", "/v1/jobs", "jobs", params=params)
        return Page([Job("workload", j) for j in answer["jobs"]], answer.get("next_cursor"))

    async def follow_logs(self, job_id: str) -> AsyncIterator[SseEvent]:
        """The live log (``log`` events, then one ``end``). It may be silent for as long as
        the job prints nothing, so instead of a read timeout the node is asked about the job
        after each quiet spell (twice the per-call limit): a node that stopped answering ends
        the follow with an error."""
        quiet = 2 * self.timeout
        limits = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
        parser = SseParser()
        try:
            async with self.session.get(
                f"{self.url}/v1/jobs/{job_id}/logs/live",
                headers={"Accept": "text/event-stream"},
                timeout=limits,
            ) as response:
                await _raise_for_status(response)
                while True:
                    # The read is never cancelled while the probe runs: a cancelled readline
                    # would lose the part of a line it had already taken.
                    read = asyncio.ensure_future(response.content.readline())
                    try:
                        while not (await asyncio.wait({read}, timeout=quiet))[0]:
                            await self.workload(job_id)  # raises when the node is gone
                        line = read.result()
                    finally:
                        read.cancel()
                    if not line:
                        return
                    event = parser.feed(line.decode("utf-8", "replace"))
                    if event is not None:
                        yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(exc, None) from None

    # --- either kind ---------------------------------------------------------------------------

    async def find(
        self, job_id: str, kind: Kind | None = None, *, intermediate: bool = False
    ) -> Job:
        """The job, of the given kind or of whichever has it: workloads first (they need a key),
        then Infernet jobs (the caller's namespace: its key, else its address)."""
        if kind == "workload":
            return await self.workload(job_id)
        if kind is None and self.has_key:
            try:
                return await self.workload(job_id)
            except NodeRefused as exc:
                if exc.status != 404:
                    raise
        found = await self.job(job_id, intermediate=intermediate)
        if found is not None:
            return found
        hint = "" if self.has_key else " (workloads need an API key: --api-key)"
        raise JobNotFound(f"no job {job_id} on this node for this caller{hint}")

    async def wait(
        self, job: Job, *, timeout: float | None = None, intermediate: bool = False
    ) -> Job:
        """Until ``job`` is final: Infernet jobs by the node's long poll, workloads by polling
        with back-off. :class:`WaitTimeout` after ``timeout`` seconds (``None``: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_FIRST

        def left() -> float | None:
            return None if deadline is None else deadline - time.monotonic()

        while not job.final:
            remaining = left()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(f"job {job.id} is still {job.status} after {timeout:g} s", job)
            started = time.monotonic()
            if job.kind == "infernet":
                # The node holds the request until the job is final or its own cap
                # (jobs.max_wait_seconds, possibly 0): back off only when it answers early.
                step = MAX_SERVER_WAIT if remaining is None else min(remaining, MAX_SERVER_WAIT)
                found = await self.job(job.id, intermediate=intermediate, wait=step)
                if found is None:
                    raise JobNotFound(f"job {job.id} is gone (removed by the node's retention)")
                job = found
            else:
                await asyncio.sleep(delay if remaining is None else min(delay, remaining))
                job = await self.workload(job.id)
            if not job.final and time.monotonic() - started < delay:
                remaining = left()
                await asyncio.sleep(delay if remaining is None else max(0.0, min(delay, remaining)))
            delay = min(delay * 2, POLL_MAX)
        if intermediate and job.kind == "infernet" and "intermediate_results" not in job.body:
            job = await self.job(job.id, intermediate=True) or job
        return job


def _job_body(containers: Sequence[str], data: Any, requires_proof: bool | None) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": list(containers), "data": data}
    if requires_proof is not None:
        body["requires_proof"] = requires_proof
    return body


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    """An HTTP error as :class:`NodeRefused`, with the node's JSON ``error`` when it sent one."""
    if response.status < 400:
        return
    raw = await response.read()
    error, params = response.reason or "error", None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        error, params = body["error"], body.get("params")
    elif body is None:
        error += " (not a node-agent answer)"
    raise NodeRefused(response.status, error, params)
