"""The HTTP server: routes, the dispatcher (identity, limits, errors), body size limit."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from node_agent.api.connection import GuardedServer
from node_agent.api.context import NodeContext
from node_agent.api.dispatch import Routes, make_dispatcher
from node_agent.api.handlers import Handlers
from node_agent.api.identity import parse_networks
from node_agent.api.openapi import serve as serve_openapi
from node_agent.auth.middleware import make_auth_check
from node_agent.config import RateLimitConfig


def api_routes(h: Handlers, *, metrics: bool) -> Routes:
    routes = Routes()
    routes.add("GET", "/health", h.health)
    routes.add("GET", "/info", h.info)
    routes.add("GET", "/resources", h.resources)
    routes.add("POST", "/api/jobs", h.create_job)
    routes.add("GET", "/api/jobs", h.get_jobs)
    routes.add("POST", "/api/jobs/batch", h.create_batch)
    routes.add("POST", "/api/jobs/stream", h.create_stream)
    routes.add("PUT", "/api/status", h.put_status)
    routes.add("GET", "/openapi.json", serve_openapi)
    if metrics:
        routes.add("GET", "/metrics", h.metrics)
    return routes


def create_server(ctx: NodeContext) -> web.Server:
    """aiohttp's low-level server around our dispatcher (needs the running loop)."""
    server = ctx.config.server

    def rate_limit() -> RateLimitConfig | None:
        """The limits in force now (a reload replaces ``ctx.config``)."""
        current = ctx.config.server
        return current.rate_limit if current.rate_limit_enabled else None

    routes = api_routes(Handlers(ctx), metrics=ctx.metrics is not None)
    for extend in ctx.route_extensions:
        extend(routes)
    dispatch = make_dispatcher(
        routes,
        trusted_proxies=parse_networks(server.trusted_proxies),
        rate_limit=rate_limit,
        is_draining=lambda: ctx.draining,
        checks=[make_auth_check(ctx.api_keys)] if ctx.api_keys is not None else [],
    )
    loop = asyncio.get_running_loop()
    max_body = server.max_body_bytes

    def make_request(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=max_body
        )

    return GuardedServer(
        dispatch,
        request_factory=make_request,
        access_log=None,
        keepalive_timeout=server.keepalive_timeout,
        header_timeout=server.header_timeout,
        max_connections=server.max_connections,
    )
