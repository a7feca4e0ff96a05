"""Shared helpers for workload tests: API keys per principal, a node config, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

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
