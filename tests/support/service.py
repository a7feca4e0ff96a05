"""A real in-process HTTP service that speaks the Infernet container protocol (§4).

Used by API tests that do not need Docker; the Docker tests use the example images.
Behaviour is chosen per request through ``data["mode"]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from tests.support.net import free_port


class ProtocolService:
    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []

    async def service_output(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.authorizations.append(request.headers.get("Authorization"))
        data = body.get("data")
        mode = data.get("mode", "ok") if isinstance(data, dict) else "ok"
        if mode == "relay":  # hand the next container in a chain its own instructions
            return web.json_response(data.get("relay", {}))
        if mode == "json500":
            return web.json_response({"detail": "boom"}, status=500)
        if mode == "non_json":
            return web.Response(text="not json at all")
        if mode == "sleep":
            await asyncio.sleep(float(data.get("seconds", 5)))
        if body.get("destination") == 2:
            response = web.StreamResponse()
            await response.prepare(request)
            for word in ("alpha ", "beta ", "gamma"):
                await response.write(word.encode())
                await asyncio.sleep(0.01)
            await response.write_eof()
            return response
        return web.json_response({"service": self.name, "input": data, "source": body["source"]})

    async def resources(self, request: web.Request) -> web.Response:
        if "model_id" in request.query:
            return web.json_response({"supported": request.query["model_id"] == "good"})
        return web.json_response({"service_id": self.name, "compute_capability": []})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/service_output", self.service_output)
        app.router.add_get("/service-resources", self.resources)
        return app


@asynccontextmanager
async def running_service(name: str) -> AsyncIterator[tuple[ProtocolService, str]]:
    service = ProtocolService(name)
    runner = web.AppRunner(service.app(), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield service, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
