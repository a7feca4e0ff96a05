"""API-key check, run by the dispatcher (``api.dispatch``) before any handler; its errors
become JSON there, like every other error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from node_agent.api.dispatch import RequestCheck
from node_agent.auth.config import SCOPES
from node_agent.auth.keys import (
    INFO_PATHS,
    ApiKeyAuthority,
    Principal,
    is_workload_path,
    route_scope,
)

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")


def make_auth_check(
    authority: ApiKeyAuthority, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> RequestCheck:
    """Raises Unauthorized/Forbidden; records who called in ``request[PRINCIPAL]``."""

    def check(request: web.BaseRequest) -> None:
        path = request.path
        scope = route_scope(request.method, path)
        require = is_workload_path(path)
        if authority.protect_info and path in INFO_PATHS:
            scope, require = SCOPES, True  # any valid key will do
        request[PRINCIPAL] = authority.authorize(request.headers, scope, now(), require=require)

    return check
