"""API-key check, run by the core middleware before any handler (its errors become JSON
there). A check rather than a middleware of its own: every aiohttp middleware layer costs a
wrapper call on each request, and this one runs on every job submission."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from node_agent.auth.keys import ApiKeyAuthority, Principal, route_scope

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")

RequestCheck = Callable[[web.Request], None]


def make_auth_check(
    authority: ApiKeyAuthority, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> RequestCheck:
    """Raises Unauthorized/Forbidden; records who called in ``request[PRINCIPAL]``."""

    def check(request: web.Request) -> None:
        scope = route_scope(request.method, request.path)
        request[PRINCIPAL] = authority.authorize(request.headers, scope, now())

    return check
