"""aiohttp middleware: API-key check before any handler (errors become JSON in the core)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Middleware

from node_agent.auth.keys import ApiKeyAuthority, Principal, route_scope

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_auth_middleware(
    authority: ApiKeyAuthority, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Middleware:
    """Place it inside (after) the core middleware so Unauthorized/Forbidden become JSON."""

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        scope = route_scope(request.method, request.path)
        request[PRINCIPAL] = authority.authorize(request.headers, scope, now())
        return await handler(request)

    return auth
