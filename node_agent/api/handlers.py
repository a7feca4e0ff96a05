"""Route handlers of the Infernet Node REST API (paths, bodies and strings as in v1.4.0)."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any, Literal

import orjson
import structlog
from aiohttp import web

from node_agent import INFERNET_COMPAT_VERSION, __version__, jsonpolicy
from node_agent.api.context import NodeContext
from node_agent.api.dispatch import CLIENT_IP
from node_agent.api.identity import is_local
from node_agent.api.responses import error_response, json_response
from node_agent.api.wire import is_delegated, parse_delegated, parse_offchain_job
from node_agent.auth.middleware import PRINCIPAL
from node_agent.errors import (
    BadRequest,
    GuardianRejection,
    NodeAgentError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from node_agent.jobs.guardian import IpAddress
from node_agent.jobs.model import JobStatus
from node_agent.jobs.store import IdCursor

log = structlog.get_logger(__name__)

JSON_TYPES = ("application/json", "")
UNTIL = ["all", "any"]  # GET /api/jobs?wait=S&until=…
PENDING = {"true": True, "false": False}  # anything else: no filter (as the reference)
BATCH_SLICE = 64  # jobs of a batch taken in per turn of the event loop
ID_PAGE_DEFAULT = 1000  # GET /api/jobs?limit=…&cursor=…
ID_PAGE_MAX = 10_000
ID_STREAM_PAGE = 5000  # ids read and sent at a time by the unpaged listing


async def read_json(request: web.BaseRequest, *, force: bool = False) -> Any:
    """The body as JSON; ``force`` ignores the content type (as the reference's batch does)."""
    if not force:
        ctype = request.content_type
        if ctype not in JSON_TYPES and not ctype.endswith("+json"):
            raise UnsupportedMediaType(
                "Unsupported content type", {"content_type": ctype, "expected": "application/json"}
            )
    try:
        raw = await request.read()
    except web.RequestPayloadError as exc:
        # A body that does not decode (bad gzip/deflate, broken framing) is the client's
        # error. The rest of it is unreadable: end it here, or aiohttp would try to drain it
        # after the answer (the dispatcher closes the connection).
        request.content.feed_eof()
        cause = exc.__cause__ or exc
        problem = getattr(cause, "message", None) or str(cause)
        encoding = request.headers.get("Content-Encoding")
        if encoding:
            raise BadRequest(
                "Invalid request body encoding",
                {"content_encoding": encoding, "problem": problem},
            ) from None
        raise BadRequest("Invalid request body", {"problem": problem}) from None
    if not raw:
        raise BadRequest("Invalid JSON body", {"problem": "empty body"})
    # One policy for what the node accepts, stores and sends back (node_agent.jsonpolicy).
    return jsonpolicy.loads(raw)


def run_checks(ctx: NodeContext) -> dict[str, dict[str, Any]]:
    """Every component's health check; one that raises reports itself unhealthy."""
    checks: dict[str, dict[str, Any]] = {}
    for name, check in ctx.health_checks.items():
        try:
            checks[name] = check()
        except Exception as exc:
            checks[name] = {"status": "unhealthy", "reason": f"health check failed: {exc}"}
    return checks


def health_body(ctx: NodeContext) -> tuple[int, dict[str, Any]]:
    """``GET /health``'s status and body (the status page shows the same)."""
    checks = run_checks(ctx)
    if ctx.draining:
        return 503, {"status": "stopping", "checks": checks}
    if checks.get("jobs", {}).get("status") == "unhealthy":  # nothing can be recorded
        return 503, {"status": "unhealthy", "checks": checks}
    return 200, {"status": "healthy", "checks": checks}


def info_body(ctx: NodeContext) -> dict[str, Any]:
    """``GET /info``'s body: Infernet's fields, then each optional component's section."""
    chain = ctx.chain
    body: dict[str, Any] = {
        "version": INFERNET_COMPAT_VERSION,
        "agent_version": __version__,
        "containers": [
            {k: c.describe()[k] for k in ("id", "description", "external", "image")}
            for c in ctx.containers.running()
        ],
        "pending": {
            "offchain": ctx.jobs.store.running_count(),
            "onchain": chain.pending_count() if chain else 0,
        },
        "chain": {"enabled": chain is not None, "address": chain.address if chain else ""},
        "services": ctx.containers.describe(),
        "queues": ctx.jobs.admission.queue_depth(),
        "health": run_checks(ctx),
    }
    if chain is not None:
        body["chain"].update(chain.status())
    for name, section in ctx.info_sections.items():
        try:
            body[name] = section()
        except Exception as exc:
            body[name] = {"error": str(exc)}
    return body


class Handlers:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self._resources_cache: dict[str | None, tuple[float, dict[str, Any]]] = {}

    # --- status and discovery ----------------------------------------------------------------

    async def health(self, request: web.BaseRequest) -> web.Response:
        """``healthy`` while the node accepts jobs; components report their own state."""
        status, body = health_body(self.ctx)
        return json_response(body, status=status)

    async def info(self, request: web.BaseRequest) -> web.Response:
        return json_response(info_body(self.ctx))

    async def resources(self, request: web.BaseRequest) -> web.Response:
        """Fan out to every container's ``/service-resources``, bounded and cached, so the
        answer arrives inside infernet-client's 1 s timeout; failures are left out."""
        model_id = request.query.get("model_id")
        now = time.monotonic()
        cached = self._resources_cache.get(model_id)
        ttl = self.ctx.config.agent.info_cache_seconds
        if cached is not None and now - cached[0] < ttl:
            return json_response(cached[1])
        timeout = self.ctx.config.agent.resources_timeout
        client = self.ctx.service_client
        containers = list(self.ctx.containers.containers.values())

        async def one(container: Any) -> Any:
            return await client.resources(container.endpoint, model_id, timeout)

        answers = await asyncio.gather(*(one(c) for c in containers), return_exceptions=True)
        body: dict[str, Any] = {}
        for container, answer in zip(containers, answers, strict=True):
            if isinstance(answer, BaseException):
                log.info(
                    "resources_unavailable", container=container.config.id, error=repr(answer)[:200]
                )
            else:
                body[container.config.id] = answer
        for name, section in self.ctx.resources_sections.items():
            body[name] = section()
        if len(self._resources_cache) > 256:
            self._resources_cache.clear()
        self._resources_cache[model_id] = (now, body)
        return json_response(body)

    async def metrics(self, request: web.BaseRequest) -> web.Response:
        """Prometheus exposition (node_agent.metrics), in the format ``Accept`` asks for."""
        assert self.ctx.metrics is not None
        body, content_type = await self.ctx.metrics(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    # --- jobs --------------------------------------------------------------------------------

    def _client(self, request: web.BaseRequest, ip: IpAddress) -> str:
        """The caller's job namespace: its API key's principal, else its address."""
        return self.ctx.client_key(ip, request.get(PRINCIPAL))

    async def _delegated(self, body: dict[str, Any], ip: IpAddress) -> dict[str, Any]:
        parse_delegated(body)
        chain = self.ctx.chain
        if chain is None:
            raise GuardianRejection("Chain not enabled")
        await chain.accept_delegated(body, str(ip))
        return {}

    async def _one_job(self, body: Any, ip: IpAddress, client: str) -> dict[str, Any]:
        if isinstance(body, dict) and is_delegated(body):
            return await self._delegated(body, ip)
        job = parse_offchain_job(body)
        job_id = await self.ctx.jobs.submit(
            client, ip, job.containers, job.data, job.requires_proof
        )
        return {"id": job_id}

    async def create_job(self, request: web.BaseRequest) -> web.Response:
        body = await read_json(request)
        ip = request[CLIENT_IP]
        return json_response(await self._one_job(body, ip, self._client(request, ip)))

    async def create_batch(self, request: web.BaseRequest) -> web.Response:
        body = await read_json(request, force=True)
        if not isinstance(body, list):
            raise BadRequest("Expected a list")
        limit = self.ctx.config.jobs.max_batch_size
        if len(body) > limit:
            raise PayloadTooLarge("Batch too large", {"max_items": limit, "items": len(body)})
        ip = request[CLIENT_IP]
        client = self._client(request, ip)

        # The whole batch shares the store's group commits, but it is taken in a slice at a
        # time with a turn of the event loop in between, and its jobs' commits are awaited
        # together (no task per job): a 1,000-job batch must not hold up every other request
        # (e.g. /health) until all of it is in.
        answers: list[dict[str, Any] | None] = [None] * len(body)
        waits: list[tuple[int, asyncio.Future[Any]]] = []
        loop = asyncio.get_running_loop()
        try:
            for start in range(0, len(body), BATCH_SLICE):
                if start:
                    await asyncio.sleep(0)
                for index in range(start, min(start + BATCH_SLICE, len(body))):
                    entry = body[index]
                    try:
                        if isinstance(entry, dict) and is_delegated(entry):
                            waits.append((index, loop.create_task(self._delegated(entry, ip))))
                            continue
                        job = parse_offchain_job(entry)
                        job_id, committed = self.ctx.jobs.start(
                            client, ip, job.containers, job.data, job.requires_proof
                        )
                    except NodeAgentError as exc:
                        answers[index] = exc.to_wire()
                        continue
                    answers[index] = {"id": job_id}
                    waits.append((index, committed))
            outcomes = await asyncio.gather(*(w for _, w in waits), return_exceptions=True)
        except BaseException:
            # Cancelled (or a bug): no client will learn these ids, so none of them runs.
            for _, waiting in waits:
                waiting.cancel()
            raise
        for (index, _), outcome in zip(waits, outcomes, strict=True):
            if isinstance(outcome, NodeAgentError):
                answers[index] = outcome.to_wire()
            elif isinstance(outcome, BaseException):
                raise outcome
            elif outcome is not None:  # a delegated subscription's answer
                answers[index] = outcome
        return json_response(answers)

    async def create_stream(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await read_json(request)
        if isinstance(body, dict) and is_delegated(body):
            raise BadRequest("Streaming only supported for OffchainJob requests.")
        job_req = parse_offchain_job(body)
        ip = request[CLIENT_IP]
        job, chunks = await self.ctx.jobs.open_stream(
            self._client(request, ip),
            ip,
            job_req.containers,
            job_req.data,
            job_req.requires_proof,
        )
        try:
            # No length: aiohttp frames the body chunked for HTTP/1.1 and, for HTTP/1.0
            # (where chunked is forbidden), by closing the connection at its end.
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            await response.prepare(request)
            # The client takes the whole first chunk it receives as the job id: send it alone.
            await response.write(f"{job.id}\n".encode())
            try:
                async for chunk in chunks:
                    await response.write(chunk)
                await response.write_eof()
            except NodeAgentError as exc:
                # Headers are gone: the stream just ends; the job record carries the error.
                log.warning("stream_failed", job_id=job.id, error=exc.error)
                await response.write_eof()
            except ConnectionError:
                log.info("stream_client_gone", job_id=job.id)
        finally:
            await chunks.aclose()  # on every path: frees the job's slots, ends the job
        return response

    async def get_jobs(self, request: web.BaseRequest) -> web.StreamResponse:
        ip = request[CLIENT_IP]
        client = self._client(request, ip)
        query = request.query
        ids = query.getall("id", [])
        pending = PENDING.get(query.get("pending", ""))
        # Checked whether or not ids are given: a bad parameter is an error, never ignored.
        wait = _float_arg(query.get("wait"), "wait")
        until_arg = query.get("until", "all")
        if until_arg not in UNTIL:
            raise BadRequest(
                "Invalid query parameter", {"param": "until", "value": until_arg, "allowed": UNTIL}
            )
        until: Literal["all", "any"] = "any" if until_arg == "any" else "all"
        limit = int_query_arg(query.get("limit"), "limit", default=ID_PAGE_DEFAULT, top=ID_PAGE_MAX)
        if not ids:
            if "limit" in query or "cursor" in query:
                return await self._page_ids(client, pending, limit, query.get("cursor"))
            return await self._stream_ids(request, client, pending)
        store = self.ctx.jobs.store
        if wait > 0:
            wait = min(wait, self.ctx.config.jobs.max_wait_seconds)
            await store.wait_final(ids, wait, until=until)
        intermediate = query.get("intermediate") == "true"
        jobs = await store.get_many(client, ids)
        if pending is not None:
            # A client polling many jobs asks for the finished ones only (pending=false):
            # it does not need the running ones sent back on every poll.
            jobs = [j for j in jobs if (j.status is JobStatus.RUNNING) is pending]
        return json_response([j.to_wire(intermediate=intermediate) for j in jobs])

    async def _page_ids(
        self, client: str, pending: bool | None, limit: int, cursor: str | None
    ) -> web.Response:
        """``?limit=N[&cursor=C]``: one page of ids and the cursor of the next (an addition)."""
        after = _decode_cursor(cursor)
        ids, following = await self.ctx.jobs.store.page_ids(client, pending, limit, after)
        cursor = _encode_cursor(following) if following is not None else None
        return json_response({"ids": ids, "next_cursor": cursor})

    async def _stream_ids(
        self, request: web.BaseRequest, client: str, pending: bool | None
    ) -> web.StreamResponse:
        """Infernet's unpaged id listing, sent a page at a time: a long history costs the
        node one page of memory, not the whole answer."""
        store = self.ctx.jobs.store
        running = await store.list_ids(client, True) if pending is not False else []
        if pending is True:
            return json_response(running)  # few: bounded by admission
        # A job that finished between the two reads is in both: it is sent once.
        seen = set(running)

        async def finished_page(after: Any = None) -> tuple[list[str], Any]:
            page, following = await store.page_ids(client, False, ID_STREAM_PAGE, after)
            return ([i for i in page if i not in seen] if seen else page), following

        ids, following = await finished_page()
        if following is None:
            return json_response(running + ids)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        first = True
        page: list[str] = running + ids
        while True:
            if page:
                chunk = orjson.dumps(page)[1:-1]
                await response.write((b"[" if first else b",") + chunk)
                first = False
            if following is None:
                break
            page, following = await finished_page(following)
        await response.write(b"]" if not first else b"[]")
        await response.write_eof()
        return response

    async def put_status(self, request: web.BaseRequest) -> web.Response:
        ip = request[CLIENT_IP]
        if not is_local(ip):
            return error_response(_unauthorized())
        body = await read_json(request, force=True)
        if not isinstance(body, dict):
            raise BadRequest("Could not store job status", {"problem": "expected a JSON object"})
        job_id, status, containers = body.get("id"), body.get("status"), body.get("containers")
        if (
            not isinstance(job_id, str)
            or not job_id
            or not isinstance(containers, list)
            or not all(isinstance(c, str) for c in containers)
        ):
            raise BadRequest(
                "Could not store job status",
                {"problem": "need 'id' (string), 'status' and 'containers' (list of strings)"},
            )
        try:
            parsed = JobStatus(str(status))
        except ValueError:
            raise BadRequest("Status is invalid", {"status": status}) from None
        await self.ctx.jobs.record_status(self._client(request, ip), job_id, parsed, containers)
        return json_response(None)


def _unauthorized() -> NodeAgentError:
    from node_agent.errors import Forbidden

    return Forbidden("Unauthorized")


def int_query_arg(value: str | None, name: str, *, default: int, top: int) -> int:
    """A query parameter in ``1..top`` (a page size), else a JSON 400 naming it."""
    if value is None:
        return default
    try:
        parsed = int(value)
    except ValueError:
        parsed = 0
    if not 1 <= parsed <= top:
        raise BadRequest(
            "Invalid query parameter", {"param": name, "value": value[:64], "min": 1, "max": top}
        )
    return parsed


def _encode_cursor(cursor: IdCursor) -> str:
    return base64.urlsafe_b64encode(f"{cursor[0]!r}/{cursor[1]}".encode()).decode().rstrip("=")


def _decode_cursor(value: str | None) -> IdCursor | None:
    """An opaque cursor from a previous page; anything else is the client's error."""
    if value is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii") + b"=" * (-len(value) % 4))
        at, rowid = raw.decode().split("/")
        cursor = (float(at), int(rowid))
    except (ValueError, UnicodeError):
        raise BadRequest("Invalid query parameter", {"param": "cursor"}) from None
    if cursor[0] != cursor[0]:  # NaN
        raise BadRequest("Invalid query parameter", {"param": "cursor"})
    return cursor


def _float_arg(value: str | None, name: str) -> float:
    if value is None:
        return 0.0
    try:
        parsed = float(value)
    except ValueError:
        raise BadRequest("Invalid query parameter", {"param": name, "value": value}) from None
    if parsed != parsed or parsed < 0:  # NaN or negative
        raise BadRequest("Invalid query parameter", {"param": name, "value": value})
    return parsed
