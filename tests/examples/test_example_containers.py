"""The example images in a real Docker engine, called over HTTP exactly as the node calls them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from example_helpers import ConnectionCounter, RunContainer, docker_cli, docker_logs, post_job

pytestmark = pytest.mark.docker

STREAM = 2


async def test_echo_container_routes(run_container: RunContainer) -> None:
    echo = run_container("echo")
    async with aiohttp.ClientSession() as session:
        resp = await post_job(session, echo.url, {"prompt": "hi"})
        assert resp.status == 200 and await resp.json() == {"output": {"prompt": "hi"}}
        # On-chain jobs send a hex string; the echo gives it back unchanged.
        body = {"source": 0, "destination": 0, "data": "cafe", "requires_proof": True}
        async with session.post(f"{echo.url}/service_output", json=body) as resp:
            assert await resp.json() == {"output": "cafe"}
        async with session.get(f"{echo.url}/service-resources") as resp:
            assert (await resp.json())["service_id"] == "echo"
        async with session.get(f"{echo.url}/service-resources?model_id=echo") as resp:
            assert await resp.json() == {"supported": True}
        async with session.get(f"{echo.url}/health") as resp:
            assert resp.status == 200


async def test_stream_from_a_container_arrives_in_chunks(run_container: RunContainer) -> None:
    echo = run_container("echo")
    data = {"prompt": "one two three four", "stream_delay": 0.05}
    async with aiohttp.ClientSession() as session:
        # The node's stream request carries no requires_proof key.
        body = {"source": 1, "destination": STREAM, "data": data}
        async with session.post(f"{echo.url}/service_output", json=body) as resp:
            assert resp.status == 200
            chunks = [chunk async for chunk in resp.content.iter_any()]
    assert chunks == [b"one ", b"two ", b"three ", b"four"]


async def test_chain_through_real_containers(run_container: RunContainer) -> None:
    echo, transform = run_container("echo"), run_container("transform")
    async with aiohttp.ClientSession() as session:
        output: Any = {"text": "chain", "n": 3}
        for url in (echo.url, transform.url, transform.url):
            resp = await post_job(session, url, output)
            assert resp.status == 200
            output = await resp.json()
    assert output == {
        "output": {"text": "CHAIN", "n": 12},
        "transformed_by": "transform",
        "steps": 2,
    }


async def test_keep_alive_and_junk_against_a_container(run_container: RunContainer) -> None:
    echo = run_container("echo")
    counter = ConnectionCounter()
    async with counter.session() as session:
        results = await asyncio.gather(*(post_job(session, echo.url, i) for i in range(50)))
        assert [(await r.json())["output"] for r in results] == list(range(50))
    assert counter.created == 1

    host, port = echo.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"THIS IS NOT HTTP\r\n\r\n")
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 400 ")


async def test_faulty_container_modes(run_container: RunContainer) -> None:
    faulty = run_container("faulty", "STREAM_CHUNK_DELAY=0.02")
    async with aiohttp.ClientSession() as session:
        resp = await post_job(session, faulty.url, {"mode": "ok"})
        assert resp.status == 200 and (await resp.json())["mode"] == "ok"

        resp = await post_job(session, faulty.url, {"mode": "non_json"})
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        assert await resp.text() == "this is not JSON"

        resp = await post_job(session, faulty.url, {"mode": "json500"})
        assert resp.status == 500
        assert (await resp.json())["error"] == "deliberate failure"

        resp = await post_job(session, faulty.url, {"sleep": 0.1})
        assert (await resp.json())["slept"] == 0.1
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            await session.post(
                f"{faulty.url}/service_output",
                json={"source": 1, "destination": 1, "data": {"sleep": 30}},
                timeout=aiohttp.ClientTimeout(total=0.5),
            )
        assert time.monotonic() - began < 5

        resp = await post_job(session, faulty.url, {"mode": "stream_fail"}, destination=STREAM)
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()

        # The container survives all of the above.
        async with session.get(f"{faulty.url}/health") as resp:
            assert resp.status == 200


async def test_faulty_crash_kills_the_container(run_container: RunContainer) -> None:
    faulty = run_container("faulty")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            resp = await post_job(session, faulty.url, {"mode": "crash"})
            await resp.read()
    for _ in range(100):
        state = faulty.state()
        if not state["Running"]:
            break
        await asyncio.sleep(0.05)
    assert state["Running"] is False
    assert state["ExitCode"] == 17


def test_docker_stop_is_graceful(run_container: RunContainer) -> None:
    """Python is PID 1 in the image: without its SIGTERM handler `docker stop` would kill it."""
    echo = run_container("echo")
    docker_cli("stop", "-t", "20", echo.name, timeout=40)
    state = echo.state()
    assert state["ExitCode"] == 0, state
    assert '"event": "stopped"' in docker_logs(echo.name)
