"""Bad input on every route: always a JSON error with a fitting status, never a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node_agent.daemon import Daemon
from tests.conftest import unmanaged_config
from tests.support.agent import running_agent
from tests.support.service import ProtocolService

JOB = {"containers": ["first"], "data": {}}


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with http.request(method, url, **kwargs) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json(), resp.headers


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error"),
    [
        (
            "POST",
            "/api/jobs",
            {"data": b"{nope", "headers": {"Content-Type": "application/json"}},
            400,
            "Invalid JSON body",
        ),
        (
            "POST",
            "/api/jobs",
            {"data": b"", "headers": {"Content-Type": "application/json"}},
            400,
            "Invalid JSON body",
        ),
        (
            "POST",
            "/api/jobs",
            {
                "data": b'{"containers":["first"],"data":{}}',
                "headers": {"Content-Type": "text/plain"},
            },
            415,
            "Unsupported content type",
        ),
        ("POST", "/api/jobs", {"json": [1, 2]}, 400, "Invalid request body"),
        (
            "POST",
            "/api/jobs",
            {"json": {"containers": "first", "data": {}}},
            400,
            "Invalid request body",
        ),
        (
            "POST",
            "/api/jobs",
            {"json": {"containers": [1], "data": {}}},
            400,
            "Invalid request body",
        ),
        ("POST", "/api/jobs", {"json": {"containers": ["first"]}}, 400, "Invalid request body"),
        (
            "POST",
            "/api/jobs",
            {"json": {"containers": ["first"], "data": "x"}},
            400,
            "Invalid request body",
        ),
        (
            "POST",
            "/api/jobs",
            {"json": {**JOB, "requires_proof": "yes"}},
            400,
            "Invalid request body",
        ),
        ("POST", "/api/jobs", {"json": {**JOB, "id": "mine"}}, 400, "Field not allowed"),
        ("POST", "/api/jobs", {"json": {**JOB, "ip": "10.1.1.1"}}, 400, "Field not allowed"),
        (
            "POST",
            "/api/jobs",
            {"json": {"containers": ["ghost"], "data": {}}},
            400,
            "Container not supported",
        ),
        (
            "POST",
            "/api/jobs",
            {"json": {"subscription": {}, "signature": {}, "data": {}}},
            400,
            "Invalid request body",
        ),
        ("POST", "/api/jobs/batch", {"json": {"containers": []}}, 400, "Expected a list"),
        (
            "POST",
            "/api/jobs/batch",
            {"data": b"[", "headers": {"Content-Type": "text/plain"}},
            400,
            "Invalid JSON body",
        ),
        (
            "POST",
            "/api/jobs/stream",
            {"json": {"subscription": {}, "signature": {}}},
            400,
            "Streaming only supported for OffchainJob requests.",
        ),
        (
            "POST",
            "/api/jobs/stream",
            {"json": {"containers": ["ghost"], "data": {}}},
            400,
            "Container not supported",
        ),
        ("GET", "/api/jobs?id=x&wait=soon", {}, 400, "Invalid query parameter"),
        # checked even where the listing does not use them (schemathesis found them ignored)
        ("GET", "/api/jobs?wait=-1", {}, 400, "Invalid query parameter"),
        ("GET", "/api/jobs?id=x&limit=100093", {}, 400, "Invalid query parameter"),
        (
            "PUT",
            "/api/status",
            {"json": {"id": "a", "status": "weird", "containers": []}},
            400,
            "Status is invalid",
        ),
        ("PUT", "/api/status", {"json": {"status": "success"}}, 400, "Could not store job status"),
        ("PUT", "/api/status", {"data": b"nope"}, 400, "Invalid JSON body"),
        ("GET", "/nowhere", {}, 404, "Not found"),
        ("DELETE", "/api/jobs", {}, 405, "Method not allowed"),
        ("GET", "/api/jobs/batch", {}, 405, "Method not allowed"),
    ],
)
async def test_bad_input_gets_json_error(
    agent: tuple[Daemon, str],
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    error: str,
) -> None:
    got_status, body, _ = await call(http, method, agent[1] + path, **kwargs)
    assert (got_status, body["error"]) == (status, error), body
    # ...and the node is still up and serving.
    assert (await call(http, "GET", agent[1] + "/health"))[0] == 200


async def test_routing_answers_like_a_router(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession
) -> None:
    """Exact paths; HEAD wherever GET is; a wrong method names the allowed ones."""
    async with http.head(agent[1] + "/health") as resp:
        assert resp.status == 200 and await resp.read() == b""
    status, body, headers = await call(http, "PATCH", agent[1] + "/api/jobs")
    assert status == 405 and body["params"] == {
        "method": "PATCH",
        "allowed": ["GET", "HEAD", "POST"],
    }
    assert headers["Allow"] == "GET, HEAD, POST"  # RFC 9110 requires it with a 405
    for path in ("/api/jobs/", "/api/jobs%2Fbatch", "/API/jobs"):
        status, body, _ = await call(http, "POST", agent[1] + path, json=JOB)
        assert (status, body["error"]) == (404, "Not found"), path


async def test_huge_body_is_413_json(
    services: dict[str, tuple[ProtocolService, str]], tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    raw = unmanaged_config(services, server={"max_body_bytes": 4096})
    async with running_agent(raw, tmp_path / "s") as (_, url):
        big = {"containers": ["first"], "data": {"blob": "x" * 10_000}}
        status, body, _ = await call(http, "POST", url + "/api/jobs", json=big)
        assert status == 413 and body["error"] == "Request body too large"
        status, _, _ = await call(http, "POST", url + "/api/jobs", json=JOB)
        assert status == 200


async def test_batch_too_large(agent: tuple[Daemon, str], http: aiohttp.ClientSession) -> None:
    status, body, _ = await call(http, "POST", agent[1] + "/api/jobs/batch", json=[JOB] * 1001)
    assert status == 413 and body["params"] == {"max_items": 1000, "items": 1001}


async def test_rate_limit_is_json_429_with_retry_after(
    services: dict[str, tuple[ProtocolService, str]], tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    raw = unmanaged_config(
        services,
        server={"rate_limit_enabled": True, "rate_limit": {"num_requests": 3, "period": 60}},
    )
    async with running_agent(raw, tmp_path / "s") as (_, url):
        statuses = [(await call(http, "GET", url + "/info"))[0] for _ in range(3)]
        assert statuses == [200, 200, 200]
        status, body, headers = await call(http, "GET", url + "/info")
        assert status == 429 and body["error"] == "Too many requests"
        assert int(headers["Retry-After"]) >= 1
        # Buckets are per route, and X-Forwarded-For from an untrusted peer changes nothing.
        assert (await call(http, "GET", url + "/health"))[0] == 200
        spoofed = {"X-Forwarded-For": "203.0.113.9"}
        assert (await call(http, "GET", url + "/info", headers=spoofed))[0] == 429


async def test_status_from_non_local_peer_is_refused(
    services: dict[str, tuple[ProtocolService, str]], tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Behind a trusted proxy the real client address decides (here: a public one)."""
    raw = unmanaged_config(services, server={"trusted_proxies": ["127.0.0.1/32"]})
    async with running_agent(raw, tmp_path / "s") as (_, url):
        body = {"id": "j1", "status": "success", "containers": ["first"]}
        far = {"X-Forwarded-For": "198.51.100.7"}
        status, answer, _ = await call(http, "PUT", url + "/api/status", json=body, headers=far)
        assert (status, answer) == (403, {"error": "Unauthorized"})
        status, _, _ = await call(http, "PUT", url + "/api/status", json=body)
        assert status == 200
        # The forwarded client is also who allowed_ips sees.
        lan = {"X-Forwarded-For": "10.2.3.4"}
        status, answer, _ = await call(
            http,
            "POST",
            url + "/api/jobs",
            json={"containers": ["lan-only"], "data": {}},
            headers=lan,
        )
        assert status == 200, answer


async def test_ipv6_client(agent: tuple[Daemon, str], http: aiohttp.ClientSession) -> None:
    port = agent[0].port
    url = f"http://[::1]:{port}"
    status, body, _ = await call(http, "POST", url + "/api/jobs", json=JOB)
    assert status == 200
    job_id = body["id"]
    status, ids, _ = await call(http, "GET", url + "/api/jobs")
    assert ids == [job_id]
    status, jobs, _ = await call(http, "GET", f"{url}/api/jobs?id={job_id}&wait=5")
    assert jobs[0]["id"] == job_id and jobs[0]["status"] == "success"
    # The IPv4 client does not see the IPv6 client's jobs.
    assert (await call(http, "GET", agent[1] + "/api/jobs"))[1] == []
