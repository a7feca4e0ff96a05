"""Shared helpers for workload tests: API keys per principal, a node config, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from node_agent.auth.keys import hash_key, new_key

T = TypeVar("T")
BASE_IMAGE = "node-agent/base:bookworm"


@dataclass(frozen=True)
class Key:
    key_id: str
    token: str
    scopes: tuple[str, ...]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def entry(self) -> dict[str, Any]:
        return {"id": self.key_id, "hash": hash_key(self.token), "scopes": list(self.scopes)}


def make_key(*scopes: str) -> Key:
    key_id, token = new_key()
    return Key(key_id, token, scopes or ("jobs:read", "jobs:write"))


def node_config(keys: list[Key], **workloads: Any) -> dict[str, Any]:
    return {
        "manage_containers": False,
        "containers": [],
        "gpus": {"enabled": False},
        "api_keys": {"keys": [k.entry() for k in keys]},
        "workloads": {"stop_grace": 2, **workloads},
    }


def draft(script: str, **extra: Any) -> dict[str, Any]:
    """A batch job running ``sh -c script`` in the offline base image."""
    return {
        "name": "test",
        "workload_type": "batch",
        "image": BASE_IMAGE,
        "command": ["sh", "-c"],
        "args": [script],
        **extra,
    }


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_status(
    http: aiohttp.ClientSession,
    url: str,
    key: Key,
    job_id: str,
    statuses: set[str],
    timeout: float = 60.0,
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        async with http.get(f"{url}/v1/jobs/{job_id}", headers=key.headers) as r:
            body: dict[str, Any] = await r.json()
            assert r.status == 200, body
        return body if body["status"] in statuses else None

    return await eventually(probe, timeout=timeout, what=f"{job_id} in {statuses}")


FINAL = {"succeeded", "failed", "cancelled"}


class Receiver:
    """A real callback receiver; with a token it checks it as the orchestrator's users do."""

    def __init__(self, token: str | None = None, fail_first: int = 0) -> None:
        self.token = token
        self.fail_first = fail_first
        self.calls: list[tuple[dict[str, str], dict[str, Any], float]] = []

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, body, _ in self.calls]

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.json_response({"error": "try later"}, status=503)
        if self.token is not None and request.headers.get("Authorization") != (
            f"Bearer {self.token}"
        ):
            return web.json_response({"error": "bad token"}, status=401)
        self.calls.append((dict(request.headers), await request.json(), time.time()))
        return web.json_response({"ok": True})


@asynccontextmanager
async def running_receiver(
    token: str | None = None, *, fail_first: int = 0
) -> AsyncIterator[tuple[Receiver, str]]:
    """A receiver on a free loopback port, and its URL."""
    hook = Receiver(token, fail_first)
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield hook, str(server.make_url("/hook"))
    finally:
        await server.close()
