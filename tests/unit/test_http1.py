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


def head_for(body: bytes) -> bytes:
    return request_head("/service_output", "x", len(body), {"Content-Type": "application/json"})


async def test_keep_alive_reuses_one_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        for i in range(5):
            body = b'{"n": %d}' % i
            response = await pool.post(head_for(body), body)
            assert (response.status, response.body) == (200, body)
        assert len(connections) == 1
        pool.close()


async def test_chunked_and_connection_close() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b'4\r\n{"a"\r\n3;ext=1\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n'
        )
        await writer.drain()

    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        for _ in range(2):
            response = await pool.post(head_for(b"{}"), b"{}")
            assert (response.status, response.body) == (500, b'{"a": 1}')
        assert len(connections) == 2  # "Connection: close" was honoured


async def test_server_closing_idle_connection_is_retried_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        # ...then close without saying so (idle keep-alive timeout on the server side)

    async with raw_server(handler) as (port, connections):
        pool = Http1Pool("127.0.0.1", port, connect_timeout=1)
        assert (await pool.post(head_for(b"{}"), b"{}")).body == b"{}"
        await asyncio.sleep(0.05)
        assert (await pool.post(head_for(b"{}"), b"{}")).body == b"{}"
        assert len(connections) == 2


async def test_garbage_and_truncated_answers_are_errors() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-nope\r\n\r\n")
        await writer.drain()

    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial')
        await writer.drain()

    async with raw_server(garbage) as (port, _):
        with pytest.raises(Http1Error):
            await Http1Pool("127.0.0.1", port, connect_timeout=1).post(head_for(b"{}"), b"{}")
    async with raw_server(truncated) as (port, _):
        with pytest.raises(asyncio.IncompleteReadError):
            await Http1Pool("127.0.0.1", port, connect_timeout=1).post(head_for(b"{}"), b"{}")


async def test_connect_timeout_to_a_silent_address() -> None:
    # 192.0.2.0/24 is TEST-NET-1: nothing answers, so the connection attempt just hangs.
    pool = Http1Pool("192.0.2.1", 9, connect_timeout=0.2)
    with pytest.raises((Http1ConnectTimeout, OSError)):
        await pool.post(head_for(b"{}"), b"{}")
