"""A test orchestrator that speaks the node protocol of docs/grid.md and records every body."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

API_KEY = "jg_test_4f0c2a9d81b3e7"


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=lambda: {"error": "scripted"})


@dataclass
class Orchestrator:
    url: str = ""
    api_key: str = API_KEY
    nodes: dict[str, str] = field(default_factory=dict)  # identity -> node_id
    registers: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: list[dict[str, Any]] = field(default_factory=list)
    seen: list[tuple[str, int]] = field(default_factory=list)  # (route, status answered)
    script: list[Scripted] = field(default_factory=list)
    inventory_required_once: bool = False
    heartbeat_interval: float = 15.0
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Pull dispatch: drafts handed out in the next heartbeat answer (then forgotten), what
    # came back in heartbeats, and every status POST (its auth checked here).
    assignments: list[Any] = field(default_factory=list)
    cancellations: list[Any] = field(default_factory=list)
    assigned: set[str] = field(default_factory=set)
    acks: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[dict[str, Any]] = field(default_factory=list)
    status_posts: list[dict[str, Any]] = field(default_factory=list)
    status_script: list[Scripted] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/nodes/register", self._register)
        app.router.add_post("/v1/nodes/{node_id}/heartbeat", self._heartbeat)
        app.router.add_post("/v1/nodes/{node_id}/jobs/{job_id}/status", self._job_status)
        return app

    def assign(self, *drafts: Any) -> None:
        """Hand these out in the next heartbeat answer."""
        self.assignments.extend(drafts)

    def acks_for(self, job_id: str) -> list[dict[str, Any]]:
        return [a for a in self.acks if a.get("job_id") == job_id]

    def posts_for(self, job_id: str) -> list[dict[str, Any]]:
        return [p for p in self.status_posts if p["job_id"] == job_id]

    def _refusal(self, request: web.Request, route: str) -> web.Response | None:
        if self.script:
            scripted = self.script.pop(0)
            self.seen.append((route, scripted.status))
            return web.json_response(
                scripted.body, status=scripted.status, headers=scripted.headers
            )
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self.seen.append((route, 401))
            return web.json_response({"error": "invalid api key"}, status=401)
        return None

    async def _register(self, request: web.Request) -> web.Response:
        refused = self._refusal(request, "register")
        if refused is not None:
            return refused
        body = await request.json()
        assert request.headers["Idempotency-Key"] == body["identity"]
        self.registers.append(body)
        node_id = self.nodes.setdefault(body["identity"], f"node-{next(self.ids)}")
        self.seen.append(("register", 200))
        return web.json_response(
            {"node_id": node_id, "heartbeat_interval": self.heartbeat_interval}
        )

    async def _heartbeat(self, request: web.Request) -> web.Response:
        refused = self._refusal(request, "heartbeat")
        if refused is not None:
            return refused
        node_id = request.match_info["node_id"]
        if node_id not in self.nodes.values():
            self.seen.append(("heartbeat", 404))
            return web.json_response({"error": "unknown node"}, status=404)
        body = await request.json()
        body["_node_id"] = node_id
        self.heartbeats.append(body)
        self.acks.extend(body.get("assignment_acks", []))
        self.workloads.extend(body.get("workloads", []))
        self.seen.append(("heartbeat", 200))
        required, self.inventory_required_once = self.inventory_required_once, False
        answer: dict[str, Any] = {"inventory_required": required}
        if self.cancellations:
            answer["cancellations"], self.cancellations = self.cancellations, []
        if self.assignments:
            answer["assignments"], self.assignments = self.assignments, []
            self.assigned.update(
                a["job_id"] for a in answer["assignments"] if isinstance(a, dict) and "job_id" in a
            )
        return web.json_response(answer)

    async def _job_status(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self.seen.append(("status", 401))
            return web.json_response({"error": "invalid api key"}, status=401)
        if self.status_script:
            scripted = self.status_script.pop(0)
            self.seen.append(("status", scripted.status))
            return web.json_response(
                scripted.body, status=scripted.status, headers=scripted.headers
            )
        node_id, job_id = request.match_info["node_id"], request.match_info["job_id"]
        if node_id not in self.nodes.values() or job_id not in self.assigned:
            self.seen.append(("status", 404))
            return web.json_response({"error": "unknown node or job"}, status=404)
        body = await request.json()
        assert body["job_id"] == job_id
        self.status_posts.append({"_node_id": node_id, **body})
        self.seen.append(("status", 200))
        return web.json_response({"ok": True})


@asynccontextmanager
async def running(orchestrator: Orchestrator) -> AsyncIterator[Orchestrator]:
    server = TestServer(orchestrator.app(), host="127.0.0.1", port=0)
    await server.start_server()
    orchestrator.url = str(server.make_url("/"))
    try:
        yield orchestrator
    finally:
        await server.close()
