"""The one place where errors become HTTP responses, plus identity and rate limiting.

A single middleware (rather than a stack) keeps per-request overhead low; the node is meant
to serve thousands of jobs per second.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from node_agent.api.context import address_text
from node_agent.api.identity import client_address
from node_agent.api.ratelimit import GcraLimiter
from node_agent.api.responses import error_response
from node_agent.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NodeAgentError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ShuttingDown,
)
from node_agent.ids import new_request_id
from node_agent.jobs.guardian import IpAddress, IpNetwork

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLIENT_IP: web.RequestKey[IpAddress] = web.RequestKey("client_ip")
UNLIMITED_PATHS = frozenset({"/api/status", "/metrics"})


def map_http_exception(exc: web.HTTPException, request: web.Request) -> NodeAgentError:
    """aiohttp's own errors (unknown route, wrong method, huge body) as our JSON errors."""
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("Not found", {"path": request.path})
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(
            "Method not allowed",
            {"method": request.method, "allowed": sorted(exc.allowed_methods)},
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge("Request body too large", {"max_bytes": request.client_max_size})
    error = NodeAgentError(exc.reason)
    error.status = exc.status
    return error


def make_core_middleware(
    *,
    trusted_proxies: Sequence[IpNetwork],
    limiter_factory: Callable[[], GcraLimiter] | None,
    is_draining: Callable[[], bool],
    checks: Sequence[Callable[[web.Request], None]] = (),
    clock: Callable[[], float] = time.monotonic,
) -> Middleware:
    """``checks`` run after identity, drain and rate limiting, before the handler (the API-key
    check is one); whatever they raise is answered here like any other error."""
    limiters: dict[str, GcraLimiter] = {}

    @web.middleware
    async def core(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id") or new_request_id()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            ip = client_address(
                peer[0] if peer else None,
                request.headers.get("X-Forwarded-For"),
                trusted_proxies,
            )
            if ip is None:
                raise BadRequest("Could not get client IP address")
            request[CLIENT_IP] = ip
            if is_draining() and request.method != "GET":
                raise ShuttingDown("Node is shutting down", retry_after=5)
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "*"
            if limiter_factory is not None and route not in UNLIMITED_PATHS:
                # One bucket per route and client, as the reference's quart-rate-limiter does.
                limiter = limiters.get(route)
                if limiter is None:
                    limiter = limiters[route] = limiter_factory()
                verdict = limiter.check(address_text(ip), clock())
                if not verdict.allowed:
                    raise RateLimited(
                        "Too many requests",
                        {"limit": limiter.count, "period": limiter.period},
                        retry_after=verdict.retry_after,
                    )
            for check in checks:
                check(request)
            response = await handler(request)
        except NodeAgentError as exc:
            response = error_response(exc)
        except web.HTTPException as exc:
            response = error_response(map_http_exception(exc, request))
        except Exception:
            log.exception("request_failed", method=request.method, path=request.path)
            response = error_response(InternalError("Internal server error"))
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        return response

    return core
