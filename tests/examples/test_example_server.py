"""The example services' HTTP server and logic, run in-process (no Docker) on real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import infernet_service as svc
import pytest
from example_helpers import ConnectionCounter, Serve, load_service, post_job

echo_module = load_service("echo")
transform_module = load_service("transform")
faulty_module = load_service("faulty")

HELLO = {"prompt": "the quick brown fox"}


# --- sans-I/O parsing ----------------------------------------------------------------------------


def test_parse_head_reads_request_line_and_headers() -> None:
    raw = b"POST /service_output?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nX-A: 1\r\n\r\n{}"
    head = svc.parse_head(raw, svc.Limits())
    assert head is not None
    assert (head.method, head.target, head.version) == ("POST", "/service_output?x=1", "HTTP/1.1")
    assert head.headers == {"host": "a", "content-length": "2", "x-a": "1"}
    assert raw[head.body_start :] == b"{}"


def test_parse_head_accepts_bare_lf_and_waits_for_more() -> None:
    head = svc.parse_head(b"GET /health HTTP/1.0\nHost: a\n\n", svc.Limits())
    assert head is not None and head.headers == {"host": "a"}
    assert svc.parse_head(b"GET /health HTTP/1.1\r\nHost:", svc.Limits()) is None


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"hello world\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00", 400),  # a TLS hello: refused before any line ends
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n folded: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\n\r\n", 400),
    ],
)
def test_parse_head_refuses_junk(raw: bytes, status: int) -> None:
    with pytest.raises(svc.HttpError) as caught:
        svc.parse_head(raw, svc.Limits())
    assert caught.value.status == status


def test_parse_head_bounds_the_head_size() -> None:
    limits = svc.Limits(max_head_bytes=100)
    with pytest.raises(svc.HttpError) as caught:
        svc.parse_head(b"GET /" + b"a" * 200, limits)
    assert caught.value.status == 431


def test_parse_chunked_decodes_and_waits_for_the_end() -> None:
    raw = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT"
    assert svc.parse_chunked(raw, 0, 100) == (b"Wikipedia", len(raw) - 4)
    assert svc.parse_chunked(raw[:12], 0, 100) is None
    assert svc.parse_chunked(b"4\r\nWiki\r\n0\r\n", 0, 100) is None


@pytest.mark.parametrize(
    ("raw", "status"), [(b"zz\r\nab\r\n", 400), (b"2\r\nabc\r\n", 400), (b"ff\r\n", 413)]
)
def test_parse_chunked_refuses_bad_chunks(raw: bytes, status: int) -> None:
    with pytest.raises(svc.HttpError) as caught:
        svc.parse_chunked(raw, 0, 100)
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], None),
        ({"source": 1}, "data"),
        ({"data": 1, "destination": 3}, "destination"),
        ({"data": 1, "source": True}, "source"),
        ({"data": 1, "requires_proof": "yes"}, "requires_proof"),
    ],
)
def test_service_job_validates_the_body(body: Any, field: str | None) -> None:
    with pytest.raises(svc.HttpError) as caught:
        svc.ServiceJob.from_body(body)
    assert caught.value.status == 400
    assert (caught.value.params or {}).get("field") == field


def test_tokens_join_back_to_the_text() -> None:
    text = "a  b c "
    assert "".join(svc.tokens_of(text)) == text
    assert svc.tokens_of("one two") == ["one ", "two"]
    assert svc.text_of({"text": "x"}) == "x"
    assert svc.text_of({"a": 1}) == '{"a":1}'


def test_chain_echo_transform_transform_is_visible() -> None:
    echo = echo_module.make_service()
    transform = transform_module.make_service()
    data = {"text": "hi", "n": 1, "items": [1, "b"], "flag": True}
    first = echo.run(svc.ServiceJob(1, 1, data))
    assert first == {"output": data}
    second = transform.run(svc.ServiceJob(1, 1, first))
    assert second == {
        "output": {"text": "HI", "n": 2, "items": ["B", 2], "flag": True},
        "transformed_by": "transform",
        "steps": 1,
    }
    third = transform.run(svc.ServiceJob(1, 1, second))
    assert third["output"] == {"text": "HI", "n": 4, "items": [4, "B"], "flag": True}
    assert third["steps"] == 2


# --- HTTP, in-process ----------------------------------------------------------------------------


async def test_echo_service_output(serve: Serve) -> None:
    url = await serve(echo_module.make_service())
    async with aiohttp.ClientSession() as session:
        for data in (HELLO, "text", [1, 2], None, 3.5):
            resp = await post_job(session, url, data)
            assert resp.status == 200
            assert resp.content_type == "application/json"
            assert await resp.json() == {"output": data}


async def test_stream_chunks_arrive_separately(serve: Serve) -> None:
    url = await serve(transform_module.make_service())
    data = {**HELLO, "stream_delay": 0.05}
    async with aiohttp.ClientSession() as session:
        resp = await post_job(session, url, data, destination=svc.STREAM)
        assert resp.status == 200
        assert resp.headers["Transfer-Encoding"] == "chunked"
        chunks = [chunk async for chunk in resp.content.iter_any()]
    assert chunks == [b"THE ", b"QUICK ", b"BROWN ", b"FOX"]


async def test_resources_and_model_support(serve: Serve) -> None:
    url = await serve(echo_module.make_service())
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/service-resources") as resp:
            resources = await resp.json()
        assert resources["service_id"] == "echo"
        assert isinstance(resources["compute_capability"], list)
        assert isinstance(resources["hardware_capabilities"], list)
        for model, supported in (("echo", True), ("gpt-9", False)):
            async with session.get(f"{url}/service-resources?model_id={model}") as resp:
                assert await resp.json() == {"supported": supported}
        async with session.get(f"{url}/health") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "healthy"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/nope", None, 404),
        ("GET", "/service_output", None, 405),
        ("POST", "/health", b"", 405),
        ("POST", "/service_output", b"{not json", 400),
        ("POST", "/service_output", b'{"source": 1}', 400),
        ("POST", "/service_output", b'{"data": 1, "destination": "x"}', 400),
    ],
)
async def test_bad_requests_get_json_errors(
    serve: Serve, method: str, path: str, body: bytes | None, status: int
) -> None:
    url = await serve(echo_module.make_service())
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{url}{path}", data=body) as resp:
            assert resp.status == status
            assert "error" in await resp.json()
        # The connection stays usable after a request-level error.
        async with session.get(f"{url}/health") as resp:
            assert resp.status == 200


async def test_keep_alive_reuses_one_connection(serve: Serve) -> None:
    url = await serve(echo_module.make_service())
    counter = ConnectionCounter()
    async with counter.session() as session:
        for i in range(20):
            resp = await post_job(session, url, {"i": i})
            assert (await resp.json())["output"] == {"i": i}
        stream = await post_job(session, url, HELLO, destination=svc.STREAM)
        assert await stream.read() == HELLO["prompt"].encode()
        resp = await post_job(session, url, {"after": "stream"})
        assert resp.status == 200
    assert counter.created == 1


async def test_handler_exception_is_a_json_500(serve: Serve) -> None:
    class Broken(svc.InfernetService):
        def run(self, job: svc.ServiceJob) -> Any:
            raise RuntimeError("boom")

    url = await serve(Broken(name="broken"))
    async with aiohttp.ClientSession() as session:
        resp = await post_job(session, url, 1)
        assert resp.status == 500
        assert (await resp.json())["error"] == "Internal service error"


# --- raw sockets: framing the client library would hide -------------------------------------------


async def _exchange(url: str, raw: bytes) -> bytes:
    """Send raw bytes, read until the server closes (a hang fails the test via the timeout)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 3.0)
    finally:
        writer.close()


async def test_junk_gets_400_and_close_not_a_hang(serve: Serve) -> None:
    url = await serve(echo_module.make_service())
    for junk in (
        b"hello there\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01",
        b"GET / HTTP/1.1\r\n:\r\n\r\n",
    ):
        reply = await _exchange(url, junk)
        assert reply.startswith(b"HTTP/1.1 400 "), reply
        assert b"Connection: close" in reply
        assert reply.endswith(b"}")


async def test_pipelined_requests_are_answered_in_order(serve: Serve) -> None:
    url = await serve(echo_module.make_service())
    body = b'{"data": %d}'
    raw = b"".join(
        b"POST /service_output HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body % i) + body % i
        for i in range(3)
    )
    raw += b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"
    reply = await _exchange(url, raw)
    assert reply.count(b"HTTP/1.1 200 OK") == 4
    assert (
        reply.index(b'{"output":0}') < reply.index(b'{"output":1}') < reply.index(b'{"output":2}')
    )


async def test_chunked_request_body(serve: Serve) -> None:
    url = await serve(echo_module.make_service())
    raw = (
        b"POST /service_output HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b'6\r\n{"data\r\n7\r\n": [1]}\r\n0\r\n\r\n'
    )
    reply = await _exchange(url, raw)
    assert reply.startswith(b"HTTP/1.1 200 OK")
    assert reply.endswith(b'{"output":[1]}')


async def test_http10_closes_and_expect_continue_is_answered(serve: Serve) -> None:
    url = await serve(echo_module.make_service())
    reply = await _exchange(url, b"GET /health HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in reply

    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /service_output HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 11\r\n"
        b"Connection: close\r\n\r\n"
    )
    assert await asyncio.wait_for(reader.readline(), 3) == b"HTTP/1.1 100 Continue\r\n"
    writer.write(b'{"data": 5}')
    reply = await asyncio.wait_for(reader.read(), 3)
    writer.close()
    assert reply.endswith(b'{"output":5}')


async def test_limits_oversized_and_slow_requests(serve: Serve) -> None:
    limits = svc.Limits(max_body_bytes=1000, request_timeout=0.2, keepalive_timeout=0.3)
    url = await serve(echo_module.make_service(), limits)
    big = await _exchange(url, b"POST /service_output HTTP/1.1\r\nContent-Length: 5000\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 413 ")
    slow = await _exchange(url, b"POST /service_output HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
    assert slow.startswith(b"HTTP/1.1 408 ")
    idle = await _exchange(url, b"GET /health HTTP/1.1\r\n\r\n")  # then the client says nothing
    assert idle.startswith(b"HTTP/1.1 200 OK") and idle.endswith(b"}")


# --- the faulty test service, in-process (crash is only tested in Docker) -------------------------


async def test_faulty_modes_in_process(serve: Serve) -> None:
    service = faulty_module.make_service()
    service.chunk_delay = 0.01
    url = await serve(service)
    async with aiohttp.ClientSession() as session:
        resp = await post_job(session, url, {"mode": "ok", "x": 1})
        assert await resp.json() == {"output": {"mode": "ok", "x": 1}, "mode": "ok"}

        resp = await post_job(session, url, {"mode": "non_json"})
        assert resp.status == 200 and resp.content_type == "text/plain"
        with pytest.raises(aiohttp.ContentTypeError):
            await resp.json()

        resp = await post_job(session, url, {"mode": "json500"})
        assert resp.status == 500 and (await resp.json())["mode"] == "json500"

        resp = await post_job(session, url, {"sleep": 0.05})
        assert await resp.json() == {"output": "slept", "slept": 0.05}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(post_job(session, url, {"sleep": 5}), 0.2)

        resp = await post_job(session, url, {"mode": "stream_fail"}, destination=svc.STREAM)
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()

        resp = await post_job(session, url, {"mode": "nope"})
        assert resp.status == 400 and "modes" in (await resp.json())["params"]
