"""JSON responses: one encoder (``jsonpolicy.dumps``: orjson, big integers exact) and one
shape for every error."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node_agent import jsonpolicy
from node_agent.errors import NodeAgentError


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=jsonpolicy.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(exc: NodeAgentError) -> web.Response:
    return json_response(exc.to_wire(), status=exc.status, headers=exc.response_headers() or None)
