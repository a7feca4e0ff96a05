"""The /v1/jobs routes on a real agent: scopes, bad input (JSON 4xx, nothing stored),
pagination, cancel in every state, live logs, callbacks to a real receiver, a missing image."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from node_agent.daemon import Daemon
from tests.support.agent import running_agent
from tests.workloads.support import (
    FINAL,
    Key,
    Receiver,
    draft,
    eventually,
    node_config,
    running_receiver,
    wait_status,
)

pytestmark = pytest.mark.docker


async def submit(
    http: aiohttp.ClientSession, url: str, key: Key, body: dict[str, Any]
) -> dict[str, Any]:
    async with http.post(f"{url}/v1/jobs", json=body, headers=key.headers) as r:
        assert r.status == 201, await r.text()
        answer: dict[str, Any] = await r.json()
    return answer


async def test_scopes_and_keys(
    node: tuple[Daemon, str], keys: dict[str, Key], http: aiohttp.ClientSession
) -> None:
    _, url = node
    body = draft("true")
    async with http.post(f"{url}/v1/jobs", json=body) as r:
        assert r.status == 401 and (await r.json())["error"] == "API key required"
    async with http.post(f"{url}/v1/jobs", json=body, headers=keys["reader"].headers) as r:
        assert r.status == 403 and "scope" in (await r.json())["params"]
    job = await submit(http, url, keys["writer"], body)  # write submits ...
    async with http.get(f"{url}/v1/jobs", headers=keys["writer"].headers) as r:
        assert r.status == 403  # ... but cannot list
    async with http.get(f"{url}/v1/jobs/{job['job_id']}", headers=keys["writer"].headers) as r:
        assert r.status == 200  # detail: read or write
    async with http.post(f"{url}/v1/jobs/estimate", json=body, headers=keys["reader"].headers) as r:
        assert r.status == 200 and (await r.json())["fits"] is True
    async with http.post(
        f"{url}/v1/jobs/{job['job_id']}/cancel", headers=keys["reader"].headers
    ) as r:
        assert r.status == 403
    async with http.get(f"{url}/v1/jobs", headers={"Authorization": "Bearer na_nope"}) as r:
        assert r.status == 401 and r.content_type == "application/json"
    await wait_status(http, url, keys["writer"], job["job_id"], FINAL)  # leaves nothing behind


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/jobs", b"{not json", 400),
        ("POST", "/v1/jobs", b"[]", 400),
        ("POST", "/v1/jobs", orjson.dumps({"image": "x", "workload_type": "train"}), 400),
        ("POST", "/v1/jobs", orjson.dumps({"image": "x", "gpus": "2"}), 400),
        ("POST", "/v1/jobs", orjson.dumps({"image": "x", "gpus": 1}), 422),
        ("POST", "/v1/jobs", orjson.dumps({"image": "x", "callback_url": "http://e.com"}), 400),
        ("POST", "/v1/jobs/estimate", b'"str"', 400),
        ("GET", "/v1/jobs?limit=0", None, 400),
        ("GET", "/v1/jobs?limit=abc", None, 400),
        ("GET", "/v1/jobs?cursor=%%%", None, 400),
        ("GET", "/v1/jobs/not-an-id", None, 404),
        ("GET", "/v1/jobs/0190a1b2-0000-7000-8000-000000000000", None, 404),
        ("GET", "/v1/jobs/0190a1b2-0000-7000-8000-000000000000/nope", None, 404),
        ("DELETE", "/v1/jobs/0190a1b2-0000-7000-8000-000000000000", None, 405),
        ("GET", "/v1/jobs/0190a1b2-0000-7000-8000-000000000000/cancel", None, 405),
        ("POST", "/v1/jobs/0190a1b2-0000-7000-8000-000000000000/cancel", None, 404),
        ("GET", "/v1/jobs/0190a1b2-0000-7000-8000-000000000000/runtime", None, 404),
        ("GET", "/v1/jobs/0190a1b2-0000-7000-8000-000000000000/logs/live", None, 404),
    ],
)
async def test_bad_input_is_a_json_4xx_and_nothing_is_stored(
    node: tuple[Daemon, str],
    keys: dict[str, Key],
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
) -> None:
    daemon, url = node
    headers = {**keys["alice"].headers, "Content-Type": "application/json"}
    async with http.request(method, f"{url}{path}", data=body, headers=headers) as r:
        assert r.status == status, await r.text()
        assert r.content_type == "application/json"
        answer = await r.json()
    assert isinstance(answer["error"], str)
    if status == 400 and path == "/v1/jobs" and body and body.startswith(b'{"image'):
        assert "field" in answer["params"]
    page, _ = await daemon.workloads.store.page(
        f"key:{keys['alice'].key_id}", limit=10, before_seq=None
    )
    assert page == []


async def test_pagination_newest_first_with_cursor(
    node: tuple[Daemon, str], keys: dict[str, Key], http: aiohttp.ClientSession
) -> None:
    _, url = node
    alice = keys["alice"]
    ids = [(await submit(http, url, alice, draft("true")))["job_id"] for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        async with http.get(f"{url}/v1/jobs{query}", headers=alice.headers) as r:
            page = await r.json()
        seen += [j["job_id"] for j in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids)) and pages == 3
    for job_id in ids:
        await wait_status(http, url, alice, job_id, FINAL)


async def test_cancel_running_after_end_and_queued(
    node: tuple[Daemon, str], keys: dict[str, Key], http: aiohttp.ClientSession
) -> None:
    _, url = node
    alice = keys["alice"]
    # A command that ignores SIGTERM: the grace period ends in SIGKILL.
    running = await submit(http, url, alice, draft("trap '' TERM; echo up; sleep 60"))
    await wait_status(http, url, alice, running["job_id"], {"running"})
    began = time.monotonic()
    async with http.post(f"{url}/v1/jobs/{running['job_id']}/cancel", headers=alice.headers) as r:
        assert r.status == 202
    job = await wait_status(http, url, alice, running["job_id"], FINAL)
    assert job["status"] == "cancelled" and job["error"] == "cancelled by the client"
    assert job["exit_code"] == 137  # SIGKILL after the 2 s grace
    assert time.monotonic() - began < 20
    async with http.post(f"{url}/v1/jobs/{running['job_id']}/cancel", headers=alice.headers) as r:
        assert r.status == 200 and (await r.json())["status"] == "cancelled"  # idempotent

    done = await submit(http, url, alice, draft("exit 0"))
    await wait_status(http, url, alice, done["job_id"], FINAL)
    async with http.post(f"{url}/v1/jobs/{done['job_id']}/cancel", headers=alice.headers) as r:
        assert r.status == 200 and (await r.json())["status"] == "succeeded"


async def test_max_runtime_is_enforced(
    node: tuple[Daemon, str], keys: dict[str, Key], http: aiohttp.ClientSession
) -> None:
    _, url = node
    alice = keys["alice"]
    job = await submit(http, url, alice, draft("sleep 60", max_runtime=1))
    final = await wait_status(http, url, alice, job["job_id"], FINAL)
    assert final["status"] == "failed" and final["error"] == "max_runtime exceeded (1 s)"


async def test_logs_live_follows_output_as_it_is_written(
    node: tuple[Daemon, str], keys: dict[str, Key], http: aiohttp.ClientSession
) -> None:
    _, url = node
    alice = keys["alice"]
    # Followed from the moment it is queued (the stream waits for the start), so line 1
    # arrives about two seconds before line 2 is even written.
    job = await submit(http, url, alice, draft("echo line-1; sleep 2; echo line-2"))
    received: list[tuple[float, str]] = []
    ended: dict[str, Any] = {}
    async with http.get(f"{url}/v1/jobs/{job['job_id']}/logs/live", headers=alice.headers) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        event = ""
        async for raw in r.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
                if event == "log":
                    received.append((time.monotonic(), data))
                elif event == "end":
                    ended = data
    text = "".join(chunk for _, chunk in received)
    assert text == "line-1\nline-2\n"
    assert ended["status"] == "succeeded" and ended["exit_code"] == 0
    first = next(t for t, c in received if "line-1" in c)
    second = next(t for t, c in received if "line-2" in c)
    assert second - first > 1.0  # line 1 arrived while the job was still writing


async def test_missing_image_fails_with_the_reason(
    node: tuple[Daemon, str], keys: dict[str, Key], http: aiohttp.ClientSession
) -> None:
    _, url = node
    alice = keys["alice"]
    job = await submit(
        http, url, alice, {**draft("true"), "image": "127.0.0.1:9/node-agent/missing:1"}
    )
    final = await wait_status(http, url, alice, job["job_id"], FINAL)
    assert final["status"] == "failed"
    assert "could not be pulled" in final["error"]
    # Jobs sharing an image share its pull (one at a time): each still ends with the reason.
    image = {**draft("true"), "image": "127.0.0.1:9/node-agent/missing:2"}
    jobs = [await submit(http, url, alice, image) for _ in range(4)]
    for each in jobs:
        final = await wait_status(http, url, alice, each["job_id"], FINAL)
        assert final["status"] == "failed" and "could not be pulled" in final["error"]
    assert not node[0].workloads.service._pull_locks  # nothing left behind


# --- callbacks --------------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    async with running_receiver("cb-secret-123", fail_first=1) as running:
        yield running


async def test_callbacks_carry_every_header_the_token_and_the_correlation(
    node: tuple[Daemon, str],
    keys: dict[str, Key],
    http: aiohttp.ClientSession,
    receiver: tuple[Receiver, str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, url = node
    hook, hook_url = receiver
    alice = keys["alice"]
    job = await submit(
        http,
        url,
        alice,
        draft(
            "echo hi; exit 4",
            callback_url=hook_url,
            callback_auth_token=hook.token,
            callback_metadata={"request_id": "req_123", "customer_id": "cus_456"},
        ),
    )
    assert "callback_auth_token" not in job
    await wait_status(http, url, alice, job["job_id"], FINAL)

    async def two() -> bool:
        return len(hook.calls) >= 2

    await eventually(two, timeout=30, what="two callbacks")
    statuses = [body["status"] for _, body, _ in hook.calls]
    assert statuses == ["running", "failed"]
    for headers, body, _ in hook.calls:
        assert headers["X-JungleGrid-Callback-Version"] == "1"
        assert int(headers["X-JungleGrid-Callback-Timestamp"]) > 0
        assert headers["X-JungleGrid-Job-ID"] == job["job_id"] == body["job_id"]
        assert headers["X-JungleGrid-Job-Status"] == body["status"]
        assert body["correlation"] == {"request_id": "req_123", "customer_id": "cus_456"}
        assert "callback_auth_token" not in body
    final = hook.calls[-1][1]
    assert final["exit_code"] == 4 and final["error"] == "command exited with code 4"
    await asyncio.sleep(0)  # let log lines flush
    out = capsys.readouterr().out + caplog.text
    assert hook.token not in out  # the token is never logged


@pytest.fixture
async def stalling_registry() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A registry that answers the version check, then never sends the manifest: a pull that
    hangs the way a slow multi-GB pull does."""
    asked = asyncio.Event()
    release = asyncio.Event()

    async def version(request: web.Request) -> web.Response:
        return web.json_response({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    async def manifest(request: web.Request) -> web.Response:
        asked.set()
        await release.wait()
        return web.json_response({"errors": [{"code": "UNKNOWN"}]}, status=500)

    app = web.Application()
    app.router.add_get("/v2/", version)
    app.router.add_route("*", "/v2/{tail:.*}", manifest)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield f"127.0.0.1:{server.port}", asked
    finally:
        release.set()
        await server.close()


async def test_cancel_while_pulling(
    node: tuple[Daemon, str],
    keys: dict[str, Key],
    http: aiohttp.ClientSession,
    stalling_registry: tuple[str, asyncio.Event],
) -> None:
    _, url = node
    alice = keys["alice"]
    registry, asked = stalling_registry
    job = await submit(http, url, alice, {**draft("true"), "image": f"{registry}/slow/model:7b"})
    await wait_status(http, url, alice, job["job_id"], {"pulling"})
    await asyncio.wait_for(asked.wait(), 30)  # Docker is inside the pull now
    async with http.post(f"{url}/v1/jobs/{job['job_id']}/cancel", headers=alice.headers) as r:
        assert r.status == 202
    final = await wait_status(http, url, alice, job["job_id"], FINAL, timeout=10)
    assert final["status"] == "cancelled" and final["exit_code"] is None


async def test_cancel_while_queued_and_queue_bound(
    keys: dict[str, Key], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    raw = node_config(list(keys.values()), max_running=1, max_queued=1)
    async with running_agent(raw, tmp_path / "state") as (_, url):
        alice = keys["alice"]
        blocker = await submit(http, url, alice, draft("sleep 60"))
        await wait_status(http, url, alice, blocker["job_id"], {"running"})
        queued = await submit(http, url, alice, draft("true"))
        async with http.get(f"{url}/v1/jobs/{queued['job_id']}", headers=alice.headers) as r:
            assert (await r.json())["queue_position"] == 1
        async with http.post(f"{url}/v1/jobs", json=draft("true"), headers=alice.headers) as r:
            assert r.status == 503 and "Retry-After" in r.headers  # beyond max_queued
        async with http.post(
            f"{url}/v1/jobs/{queued['job_id']}/cancel", headers=alice.headers
        ) as r:
            assert (await r.json())["status"] == "cancelled"
        async with http.post(
            f"{url}/v1/jobs/{blocker['job_id']}/cancel", headers=alice.headers
        ) as r:
            assert r.status == 202
        final = await wait_status(http, url, alice, blocker["job_id"], FINAL)
        assert final["status"] == "cancelled"


async def test_workload_routes_are_not_limited_per_address(
    keys: dict[str, Key], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    raw = node_config(list(keys.values()))
    raw["server"] = {"rate_limit_enabled": True, "rate_limit": {"num_requests": 3, "period": 60}}
    async with running_agent(raw, tmp_path / "state") as (_, url):
        alice = keys["alice"]
        job = await submit(http, url, alice, draft("true"))
        for _ in range(10):  # an orchestrator polls many jobs from one address
            async with http.get(f"{url}/v1/jobs/{job['job_id']}", headers=alice.headers) as r:
                assert r.status == 200
        statuses = []
        for _ in range(5):  # Infernet's anonymous routes keep their per-address limit
            async with http.get(f"{url}/api/jobs") as r:
                statuses.append(r.status)
        assert 429 in statuses
        await wait_status(http, url, alice, job["job_id"], FINAL)
