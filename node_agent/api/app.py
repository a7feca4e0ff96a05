"""The aiohttp application: routes, the core middleware, limits."""

from __future__ import annotations

from aiohttp import web

from node_agent.api.context import NodeContext
from node_agent.api.handlers import Handlers
from node_agent.api.identity import parse_networks
from node_agent.api.middlewares import make_core_middleware
from node_agent.api.ratelimit import GcraLimiter
from node_agent.auth.middleware import make_auth_check

CONTEXT_KEY = web.AppKey("node_context", NodeContext)


def create_app(ctx: NodeContext) -> web.Application:
    server = ctx.config.server
    limit = server.rate_limit
    limiter_factory = (
        (lambda: GcraLimiter(limit.num_requests, limit.period))
        if server.rate_limit_enabled
        else None
    )
    middleware = make_core_middleware(
        trusted_proxies=parse_networks(server.trusted_proxies),
        limiter_factory=limiter_factory,
        is_draining=lambda: ctx.draining,
        checks=[make_auth_check(ctx.api_keys)] if ctx.api_keys is not None else [],
    )
    app = web.Application(middlewares=[middleware], client_max_size=server.max_body_bytes)
    app[CONTEXT_KEY] = ctx
    h = Handlers(ctx)
    app.router.add_get("/health", h.health)
    app.router.add_get("/info", h.info)
    app.router.add_get("/resources", h.resources)
    app.router.add_post("/api/jobs", h.create_job)
    app.router.add_get("/api/jobs", h.get_jobs)
    app.router.add_post("/api/jobs/batch", h.create_batch)
    app.router.add_post("/api/jobs/stream", h.create_stream)
    app.router.add_put("/api/status", h.put_status)
    if ctx.metrics is not None:
        app.router.add_get("/metrics", h.metrics)
    return app
