"""The lightweight HTTP/1.1 client against raw asyncio servers that answer in various ways."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import aiohttp
import pytest

from node_agent.containers.http1 import (
    Http1ConnectTimeout,
    Http1Error,
    Http1Pool,
    Http1TooLarge,
    request_head,
)
from node_agent.containers.service_client import ServiceClient, ServiceEndpoint
from node_agent.errors import ContainerError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(
    handler: Handler, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[int, list[int]]]:
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, host, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, connections
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    return await reader.readexactly(length)


async def each_request(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The bodies of the requests on one keep-alive connection, until the client closes it."""
    while True:
        try:
            yield await read_request(reader)
        except asyncio.IncompleteReadError:
            return


def answer_once(raw: bytes) -> Handler:
    """A server that reads one request, sends ``raw`` and closes (without saying so)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()

    return handler


def head_for(body: bytes) -> bytes:
    return request_head("/service_output", "x", len(body), {"Content-Type": "application/json"})


async def test_keep_alive_reuses_one_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for body in each_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        for i in range(5):
            body = b'{"n": %d}' % i
            response = await pool.post(head_for(body), body, timeout=5)
            assert (response.status, response.body) == (200, body)
        assert len(connections) == 1
        pool.close()


async def test_chunked_and_connection_close() -> None:
    handler = answer_once(
        b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b'4\r\n{"a"\r\n3;ext=1\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n'
    )
    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        for _ in range(2):
            response = await pool.post(head_for(b"{}"), b"{}", timeout=5)
            assert (response.status, response.body) == (500, b'{"a": 1}')
        assert len(connections) == 2  # "Connection: close" was honoured


async def until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.001)


async def test_connection_the_server_closed_while_idle_is_not_used() -> None:
    # The server closes without saying so (idle keep-alive timeout on its side): the pool knows
    # before sending, so the request goes, once, on a fresh connection.
    handler = answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        assert (await pool.post(head_for(b"{}"), b"{}", timeout=5)).body == b"{}"
        idle = pool._idle[0]
        await until(lambda: idle.closed)
        assert (await pool.post(head_for(b"{}"), b"{}", timeout=5)).body == b"{}"
        assert len(connections) == 2


async def test_request_that_may_have_arrived_is_never_sent_again() -> None:
    # The service reads the second request, then the connection drops before any answer byte:
    # the job may be running there, so the client reports it instead of re-sending it.
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for body in each_request(reader):
            received.append(body)
            if len(received) > 1:
                return  # closes the connection without a word
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        assert (await pool.post(head_for(b"{}"), b"{}", timeout=5)).body == b"{}"
        with pytest.raises(Http1Error, match="not sent again"):
            await pool.post(head_for(b'{"n": 2}'), b'{"n": 2}', timeout=5)
        assert received == [b"{}", b'{"n": 2}'] and len(connections) == 1
        # On a fresh connection, too: nothing arrived, but the request was sent.
        received.clear()
        received.append(b"skip the answer")
        with pytest.raises(Http1Error, match="not sent again"):
            await pool.post(head_for(b'{"n": 3}'), b'{"n": 3}', timeout=5)
        assert received[1:] == [b'{"n": 3}'] and len(connections) == 2


async def test_garbage_and_truncated_answers_are_errors() -> None:
    garbage = answer_once(b"SSH-2.0-nope\r\n\r\n")
    truncated = answer_once(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial')
    async with raw_server(garbage) as (port, _):
        with pytest.raises(Http1Error):
            await Http1Pool("127.0.0.1", port, connect_timeout=1).post(
                head_for(b"{}"), b"{}", timeout=5
            )
    async with raw_server(truncated) as (port, _):
        with pytest.raises(Http1Error, match="middle of a response"):
            await Http1Pool("127.0.0.1", port, connect_timeout=1).post(
                head_for(b"{}"), b"{}", timeout=5
            )


async def test_connect_timeout_to_a_silent_address() -> None:
    # 192.0.2.0/24 is TEST-NET-1: nothing answers, so the connection attempt just hangs.
    pool = Http1Pool("192.0.2.1", 9, connect_timeout=0.2)
    with pytest.raises((Http1ConnectTimeout, OSError)):
        await pool.post(head_for(b"{}"), b"{}", timeout=5)


async def test_answer_dribbled_byte_by_byte_after_an_interim_100() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
        b'{"ok": "1"}'
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in each_request(reader):
            for i in range(len(answer)):
                writer.write(answer[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0)

    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        for _ in range(2):
            response = await pool.post(head_for(b"{}"), b"{}", timeout=5)
            assert (response.status, response.body) == (200, b'{"ok": "1"}')
        assert len(connections) == 1  # the connection was kept after a complete answer
        pool.close()


async def test_silent_service_times_out_and_its_connection_is_not_reused() -> None:
    answered = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if len(connections) == 1:
            await asyncio.sleep(1)  # far past the caller's deadline
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            answered.set()
        await writer.drain()
        await asyncio.sleep(0.2)

    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        with pytest.raises(TimeoutError):
            await pool.post(head_for(b"{}"), b"{}", timeout=0.1)
        # A late answer on the old connection must never be taken for the next request's.
        assert (await pool.post(head_for(b"{}"), b"{}", timeout=5)).body == b"{}"
        assert answered.is_set() and len(connections) == 2
        pool.close()


async def test_unparseable_content_length_is_an_error() -> None:
    handler = answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n{}")
    async with raw_server(handler) as (port, _):
        with pytest.raises(Http1Error, match="Content-Length"):
            await Http1Pool("127.0.0.1", port, connect_timeout=1).post(
                head_for(b"{}"), b"{}", timeout=5
            )


async def test_large_chunked_answer_in_many_pieces() -> None:
    pieces = [bytes([65 + i % 26]) * 2048 for i in range(1000)]  # 2 MB in 1,000 chunks

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in each_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in pieces:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")

    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        for _ in range(2):
            response = await pool.post(head_for(b"{}"), b"{}", timeout=10)
            assert response.body == b"".join(pieces)
        assert len(connections) == 1  # the buffer was reset and the connection kept
        pool.close()


MALFORMED = {
    "negative Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n{}",
    "signed Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n{}",
    "Content-Length with _": b"HTTP/1.1 200 OK\r\nContent-Length: 0_2\r\n\r\n{}",
    "Content-Length overflow": b"HTTP/1.1 200 OK\r\nContent-Length: 1" + b"0" * 30 + b"\r\n\r\n",
    "two Content-Lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"
    ),
    "gzip, chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "chunked, gzip": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "two Transfer-Encodings": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "Content-Length and chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    ),
    "chunked and Content-Length": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    ),
    "bad chunk size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n"
    ),
    "bare LF": b"HTTP/1.1 200 OK\nContent-Length: 2\n\n{}",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\n{}",
    "NUL in a header": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
    "space before the colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n{}",
    "bad status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}",
    "protocol switch": b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_framing_is_an_error(raw: bytes) -> None:
    async with raw_server(answer_once(raw)) as (port, _):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        with pytest.raises(Http1Error):
            await pool.post(head_for(b"{}"), b"{}", timeout=5)
        assert not pool._idle


async def test_bytes_after_the_answer_rule_out_reuse() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in each_request(reader):
            writer.write(raw)

    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        for _ in range(2):
            assert (await pool.post(head_for(b"{}"), b"{}", timeout=5)).body == b"{}"
        assert len(connections) == 2


async def test_response_size_is_capped() -> None:
    limit = 1000
    exact = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * limit
    declared = b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n"  # refused before the body
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"64\r\n%s\r\n" % (b"y" * 100) * 11
    )
    until_eof = b"HTTP/1.1 200 OK\r\n\r\n" + b"z" * (limit + 1)
    async with raw_server(answer_once(exact)) as (port, _):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1, max_response_bytes=limit)
        assert len((await pool.post(head_for(b"{}"), b"{}", timeout=5)).body) == limit
    for raw in (declared, chunked, until_eof):
        async with raw_server(answer_once(raw)) as (port, _):
            pool = Http1Pool("127.0.0.1", port, connect_timeout=1, max_response_bytes=limit)
            with pytest.raises(Http1TooLarge, match="larger than 1000 bytes"):
                await pool.post(head_for(b"{}"), b"{}", timeout=5)


async def test_service_client_names_the_container_and_the_limit() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
    async with raw_server(answer_once(raw)) as (port, _), aiohttp.ClientSession() as session:
        client = ServiceClient(session, max_response_bytes=4096)
        endpoint = ServiceEndpoint("big", f"http://127.0.0.1:{port}", None, 5)
        with pytest.raises(ContainerError, match="container big answered more than 4096 bytes"):
            await client.call(endpoint, {"x": 1})
        client.close()


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_host_header() -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok": "1"}')
        await writer.drain()

    async with raw_server(handler, host="::1") as (port, _), aiohttp.ClientSession() as session:
        client = ServiceClient(session)
        endpoint = ServiceEndpoint("v6", f"http://[::1]:{port}", None, 5)
        assert await client.call(endpoint, {}) == {"ok": "1"}
        assert f"\r\nHost: [::1]:{port}\r\n".encode() in heads[0]
        client.close()
    assert ServiceEndpoint("z", "http://[fe80::1%25eth0]:80", None, 1).host_header == (
        "[fe80::1]:80"
    )
    assert ServiceEndpoint("n", "http://svc", None, 1).host_header == "svc"


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose connection attempts hang: its listen queue is full and nobody accepts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in [*fillers, listener]:
            sock.close()


async def test_connect_timeout_is_bounded_by_the_call_deadline() -> None:
    with unanswered_port() as port:
        pool = Http1Pool("127.0.0.1", port, connect_timeout=30)
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            await pool.post(head_for(b"{}"), b"{}", timeout=0.3)
        assert time.monotonic() - started < 5
        assert not isinstance(caught.value, Http1ConnectTimeout)  # the call's own deadline
        pool = Http1Pool("127.0.0.1", port, connect_timeout=0.2)
        with pytest.raises(Http1ConnectTimeout):
            await pool.post(head_for(b"{}"), b"{}", timeout=30)
