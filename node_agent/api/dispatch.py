"""Routing, and the one place where errors become HTTP responses, plus identity and rate
limiting.

The API is nine fixed paths, so it runs on aiohttp's low-level server with one dict lookup for
routing, instead of an ``Application`` with its router, middleware chain and sub-app support
that the node does not use: ~5 µs less per request (measured), at thousands of jobs a second.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus

import structlog
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestHandler

from node_agent.api.context import address_text
from node_agent.api.identity import client_address
from node_agent.api.ratelimit import GcraLimiter
from node_agent.api.responses import error_response
from node_agent.config import RateLimitConfig
from node_agent.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NodeAgentError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ShuttingDown,
    UnsupportedMediaType,
)
from node_agent.ids import new_request_id
from node_agent.jobs.guardian import IpAddress, IpNetwork

log = structlog.get_logger(__name__)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
RequestCheck = Callable[[web.BaseRequest], None]

CLIENT_IP: web.RequestKey[IpAddress] = web.RequestKey("client_ip")
UNLIMITED_PATHS = frozenset({"/api/status", "/metrics"})


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection protocol, answering what it refuses before any handler runs (a
    request it cannot parse, a ``Content-Encoding`` it cannot decode such as ``br`` without
    Brotli) with the node's JSON error instead of its ``text/plain`` one."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; raises if answered already
        error: NodeAgentError
        if isinstance(exc, ContentEncodingError):  # 415, as RFC 7694 asks
            problem = (message or "").split(". Please install")[0]  # advice for the operator
            error = UnsupportedMediaType("Unsupported content encoding", {"problem": problem})
        elif status >= 500:
            error = InternalError("Internal server error")
            error.status = status
        else:
            error = NodeAgentError(HTTPStatus(status).phrase, {"problem": message or ""})
            error.status = status
        response = error_response(error)
        response.force_close()  # as aiohttp does: the connection's framing is lost
        return response


class JsonErrorServer(web.Server):
    """``web.Server`` whose connections use :class:`JsonErrorRequestHandler`."""

    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


def map_http_exception(exc: web.HTTPException, request: web.BaseRequest) -> NodeAgentError:
    """aiohttp's own errors (a huge body, …) as our JSON errors."""
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge("Request body too large", {"max_bytes": request.client_max_size})
    error = NodeAgentError(exc.reason)
    error.status = exc.status
    return error


class Routes:
    """Handlers by exact path and method; every GET route also answers HEAD (as aiohttp's
    router does)."""

    def __init__(self) -> None:
        self._by_path: dict[str, dict[str, Handler]] = {}
        # Paths with parameters (``/v1/jobs/{id}/...``): a prefix and a resolver that parses
        # the rest and raises NotFound/MethodNotAllowed itself.
        self._subtrees: list[tuple[str, Callable[[str, str], Handler]]] = []

    def add_subtree(self, prefix: str, resolver: Callable[[str, str], Handler]) -> None:
        self._subtrees.append((prefix, resolver))

    def add(self, method: str, path: str, handler: Handler) -> None:
        methods = self._by_path.setdefault(path, {})
        methods[method] = handler
        if method == "GET":
            methods["HEAD"] = handler

    def resolve(self, method: str, path: str) -> Handler:
        methods = self._by_path.get(path)
        if methods is None:
            for prefix, resolver in self._subtrees:
                if path.startswith(prefix):
                    return resolver(method, path)
            raise NotFound("Not found", {"path": path})
        handler = methods.get(method)
        if handler is None:
            raise MethodNotAllowed(
                "Method not allowed", {"method": method, "allowed": sorted(methods)}
            )
        return handler

    def __contains__(self, path: str) -> bool:
        return path in self._by_path


def make_dispatcher(
    routes: Routes,
    *,
    trusted_proxies: Sequence[IpNetwork],
    rate_limit: Callable[[], RateLimitConfig | None],
    is_draining: Callable[[], bool],
    checks: Sequence[RequestCheck] = (),
    clock: Callable[[], float] = time.monotonic,
) -> Handler:
    """``checks`` run after identity, drain and rate limiting, before the handler (the API-key
    check is one); whatever they raise is answered here like any other error. ``rate_limit``
    gives the limits in force (None: off), read per request so that a reload applies them."""
    # Per route: the limits its buckets were made for, and the buckets.
    limiters: dict[str, tuple[RateLimitConfig, GcraLimiter]] = {}

    async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
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
            declared = request.content_length
            if declared is not None and declared > request.client_max_size:
                # Refused before a byte of it is read (the connection is closed after).
                raise PayloadTooLarge(
                    "Request body too large", {"max_bytes": request.client_max_size}
                )
            if is_draining() and request.method != "GET":
                raise ShuttingDown("Node is shutting down", retry_after=5)
            path = request.rel_url.path_safe  # what aiohttp's router matches (%2F kept)
            route = path if path in routes else "*"
            # Workload routes (/v1) always need an API key: they are not limited per address
            # like Infernet's anonymous routes (an orchestrator polls many jobs from one IP).
            limit = rate_limit()
            if limit is not None and route not in UNLIMITED_PATHS and not path.startswith("/v1/"):
                # One bucket per route and client, as the reference's quart-rate-limiter does.
                entry = limiters.get(route)
                if entry is None or entry[0] is not limit:
                    # New route, or a reload: fresh buckets only if the limits really changed.
                    if entry is None or entry[0] != limit:
                        entry = (limit, GcraLimiter(limit.num_requests, limit.period))
                    limiters[route] = entry = (limit, entry[1])
                limiter = entry[1]
                verdict = limiter.check(address_text(ip), clock())
                if not verdict.allowed:
                    raise RateLimited(
                        "Too many requests",
                        {"limit": limiter.count, "period": limiter.period},
                        retry_after=verdict.retry_after,
                    )
            for check in checks:
                check(request)
            response = await routes.resolve(request.method, path)(request)
        except NodeAgentError as exc:
            response = error_response(exc)
            if request.content.exception() is not None or (
                isinstance(exc, PayloadTooLarge) and not request.content.is_eof()
            ):
                # The body broke off (a decoding error) or is refused unread: the connection
                # cannot carry another request, so the client is told not to reuse it.
                response.force_close()
        except web.HTTPException as exc:
            response = error_response(map_http_exception(exc, request))
        except Exception:
            log.exception("request_failed", method=request.method, path=request.path)
            response = error_response(InternalError("Internal server error"))
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        return response

    return dispatch
