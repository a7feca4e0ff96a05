"""The lightweight HTTP/1.1 client against raw asyncio servers that answer in various ways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from node_agent.containers.http1 import Http1ConnectTimeout, Http1Error, Http1Pool, request_head

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[int, list[int]]]:
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
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


async def test_server_closing_idle_connection_is_retried_once() -> None:
    # The server then closes without saying so (idle keep-alive timeout on its side).
    handler = answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        assert (await pool.post(head_for(b"{}"), b"{}", timeout=5)).body == b"{}"
        await asyncio.sleep(0.05)
        assert (await pool.post(head_for(b"{}"), b"{}", timeout=5)).body == b"{}"
        assert len(connections) == 2


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
