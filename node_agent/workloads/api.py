"""HTTP routes of orchestrator workloads (``/v1/jobs``), on the node's dispatcher: the API-key
check has run (scopes per route, ``auth.keys.route_scope``) and errors become JSON there."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
import structlog
from aiohttp import web

from node_agent.api.dispatch import Handler, Routes
from node_agent.api.handlers import int_query_arg, read_json
from node_agent.api.responses import json_response
from node_agent.auth.middleware import PRINCIPAL
from node_agent.errors import MethodNotAllowed, NotFound, Unauthorized
from node_agent.workloads.service import WorkloadService
from node_agent.workloads.store import decode_cursor, encode_cursor

log = structlog.get_logger(__name__)

PREFIX = "/v1/jobs/"
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# (suffix after the id, method) -> handler name
_SUBROUTES: dict[str, dict[str, str]] = {
    "": {"GET": "detail"},
    "/runtime": {"GET": "runtime"},
    "/logs/live": {"GET": "logs_live"},
    "/cancel": {"POST": "cancel"},
}
DEFAULT_PAGE = 50
MAX_PAGE = 500
HEARTBEAT_SECONDS = 15.0


def owner_of(request: web.BaseRequest) -> str:
    principal = request.get(PRINCIPAL)
    if principal is None or principal.key_id is None:
        raise Unauthorized("API key required", {"scope": "jobs:read"})
    return f"key:{principal.key_id}"


class WorkloadHandlers:
    def __init__(self, service: WorkloadService) -> None:
        self.service = service

    def register(self, routes: Routes) -> None:
        routes.add("POST", "/v1/jobs", self.submit)
        routes.add("GET", "/v1/jobs", self.list_jobs)
        routes.add("POST", "/v1/jobs/estimate", self.estimate)
        routes.add_subtree(PREFIX, self.resolve)

    def resolve(self, method: str, path: str) -> Handler:
        rest = path[len(PREFIX) :]
        job_id, _, suffix = rest.partition("/")
        suffix = "/" + suffix if suffix else ""
        methods = _SUBROUTES.get(suffix)
        if methods is None or not _JOB_ID.match(job_id):
            raise NotFound("Not found", {"path": path})
        allowed = {**methods, **({"HEAD": methods["GET"]} if "GET" in methods else {})}
        name = allowed.get(method)
        if name is None:
            raise MethodNotAllowed(
                "Method not allowed", {"method": method, "allowed": sorted(allowed)}
            )
        handler: Callable[..., Any] = getattr(self, name)
        return partial(handler, job_id=job_id)

    async def submit(self, request: web.BaseRequest) -> web.Response:
        owner = owner_of(request)
        body = await read_json(request)
        job, ignored = await self.service.submit(owner, body)
        answer = self.service.wire(job)
        if ignored:
            answer["ignored_fields"] = ignored
        return json_response(answer, status=201, headers={"Location": f"{PREFIX}{job.id}"})

    async def list_jobs(self, request: web.BaseRequest) -> web.Response:
        owner = owner_of(request)
        query = request.query
        limit = int_query_arg(query.get("limit"), "limit", default=DEFAULT_PAGE, top=MAX_PAGE)
        cursor = query.get("cursor")
        before = decode_cursor(cursor) if cursor else None
        jobs, next_seq = await self.service.store.page(owner, limit=limit, before_seq=before)
        live = self.service
        return json_response(
            {
                "jobs": [live.wire(live.current(j)) for j in jobs],
                "next_cursor": encode_cursor(next_seq) if next_seq is not None else None,
            }
        )

    async def estimate(self, request: web.BaseRequest) -> web.Response:
        owner_of(request)
        body = await read_json(request)
        return json_response(self.service.estimate(body))

    async def detail(self, request: web.BaseRequest, *, job_id: str) -> web.Response:
        job = await self.service.get(owner_of(request), job_id)
        return json_response(self.service.wire(job))

    async def runtime(self, request: web.BaseRequest, *, job_id: str) -> web.Response:
        return json_response(await self.service.runtime(owner_of(request), job_id))

    async def cancel(self, request: web.BaseRequest, *, job_id: str) -> web.Response:
        job = await self.service.cancel(owner_of(request), job_id)
        return json_response(self.service.wire(job), status=202 if not job.status.final else 200)

    async def logs_live(self, request: web.BaseRequest, *, job_id: str) -> web.StreamResponse:
        """Server-sent events: ``log`` events carry output as a JSON string (any bytes, split
        anywhere, arrive intact), then one ``end`` event with the final status."""
        service = self.service
        job = await service.get(owner_of(request), job_id)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        try:
            await response.write(b": following " + job.id.encode() + b"\n\n")
            await service.until_started(job)
            async for chunk in service.follow(job):
                text = chunk.decode("utf-8", "replace")
                await response.write(b"event: log\ndata: " + orjson.dumps(text) + b"\n\n")
            final = service.wire(service.current(job))
            end = {k: final.get(k) for k in ("job_id", "status", "exit_code", "error")}
            await response.write(b"event: end\ndata: " + orjson.dumps(end) + b"\n\n")
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            log.info("logs_live_client_gone", job_id=job.id)
        return response
