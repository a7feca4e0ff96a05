"""Connection limits against raw sockets: head deadline (slowloris), idle keep-alive, a cap on
connections, 413 before the body, and pipelined requests answered in order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node_agent.daemon import Daemon
from tests.conftest import unmanaged_config
from tests.support.agent import running_agent
from tests.support.service import ProtocolService

LIMITS = {
    "header_timeout": 0.5,
    "keepalive_timeout": 0.5,
    "max_connections": 3,
    "max_body_bytes": 2048,
}


@pytest.fixture
async def guarded(
    services: dict[str, tuple[ProtocolService, str]], tmp_path: Path
) -> AsyncIterator[tuple[Daemon, str, int]]:
    raw = unmanaged_config(services, server={"rate_limit_enabled": False, **LIMITS})
    async with running_agent(raw, tmp_path / "state") as (daemon, url):
        host, _, port = url.removeprefix("http://").rpartition(":")
        yield daemon, host, int(port)


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(host: str, port: int) -> Conn:
    return await asyncio.open_connection(host, port)


async def read_answers(reader: asyncio.StreamReader, timeout: float = 5) -> list[bytes]:
    """Every answer until the server closes the connection (fails if it never does)."""
    data = await asyncio.wait_for(reader.read(), timeout)
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        answers.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return answers


async def read_one(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await asyncio.wait_for(reader.readexactly(length), 5)


def json_answer(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer
    return int(head.split(b" ", 2)[1]), json.loads(body)


HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_request_head_must_arrive_in_time(guarded: tuple[Daemon, str, int]) -> None:
    _, host, port = guarded
    reader, writer = await connect(host, port)
    started = time.monotonic()
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # ... and the blank line never comes
    answers = await read_answers(reader)
    assert time.monotonic() - started < 4
    status, body = json_answer(answers[0])
    assert status == 408 and body["error"] == "Request Timeout", body
    assert len(answers) == 1
    writer.close()


async def test_slow_head_is_cut_even_while_bytes_keep_coming(
    guarded: tuple[Daemon, str, int],
) -> None:
    _, host, port = guarded
    reader, writer = await connect(host, port)
    started = time.monotonic()
    received = b""
    with contextlib.suppress(ConnectionError):  # the close may reset what we still send
        for header in range(200):
            writer.write(b"X-%d: y\r\n" % header if header else b"GET /health HTTP/1.1\r\n")
            try:  # the read paces the dribble: one header line every 50 ms
                chunk = await asyncio.wait_for(reader.read(65536), 0.05)
            except TimeoutError:
                continue
            received += chunk + await asyncio.wait_for(reader.read(), 5)
            break
    assert time.monotonic() - started < 4, "the slow head was not cut"
    if received:  # unless the close reset it on its way
        assert json_answer(received)[0] == 408
    writer.close()


async def test_idle_connections_are_closed(guarded: tuple[Daemon, str, int]) -> None:
    _, host, port = guarded
    silent_reader, silent = await connect(host, port)  # never sends a byte
    reader, writer = await connect(host, port)
    writer.write(HEALTH)
    status, _ = json_answer(await read_one(reader))
    assert status == 200
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed once idle
    assert await asyncio.wait_for(silent_reader.read(), 5) == b""
    writer.close()
    silent.close()


async def test_a_late_body_of_an_answered_request_starts_no_head_deadline(
    guarded: tuple[Daemon, str, int],
) -> None:
    """A request refused before its body was read (here a 405), whose body then arrives in its
    own segment: those bytes end that request, they do not begin a new head. The connection
    stays a quiet keep-alive one (closed when idle, without a word); a 408 sent on it would be
    read by the client as the answer to its next request (schemathesis caught one in CI)."""
    _, host, port = guarded
    reader, writer = await connect(host, port)
    writer.write(b"DELETE /api/jobs/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n")
    status, _ = json_answer(await read_one(reader))
    assert status == 405
    writer.write(b"[]")
    await asyncio.sleep(0.1)  # the body in its own segment (no fixed wait on the answer below)
    writer.write(HEALTH)  # the connection still serves the next request
    status, _ = json_answer(await read_one(reader))
    assert status == 200
    assert await asyncio.wait_for(reader.read(), 5) == b""  # idle close, no 408
    writer.close()


def keep_alive_rounds(host: str, port: int, rounds: int) -> list[str]:
    """On one keep-alive connection, the way http.client sends (head and body in separate
    writes): a request refused at its head (405, body unread) and then a plain GET."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=3)
    unanswered = []
    body = b'{"containers": [], "data": {}}'
    try:
        for index in range(rounds):
            for method, path in (("DELETE", "/health"), ("GET", "/health")):
                try:
                    conn.request(method, path, body=body if method == "DELETE" else None)
                    conn.getresponse().read()
                except (TimeoutError, OSError) as exc:
                    unanswered.append(f"{index}: {method} {path}: {exc!r}")
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=3)
    finally:
        conn.close()
    return unanswered


async def test_requests_after_one_answered_before_its_body_are_all_answered(
    guarded: tuple[Daemon, str, int],
) -> None:
    """aiohttp's C parser counts a request as queued when its body ends, the handler frees the
    slot when it takes the request at its head: a body that ends after that left the parser
    "full" and the next head, arriving in the same read, unanswered for good (about one
    keep-alive request in 600 under schemathesis in CI). 4,000 rounds met it in most runs
    before the fix."""
    _, host, port = guarded
    unanswered = await asyncio.to_thread(keep_alive_rounds, host, port, 4000)
    assert unanswered == [], unanswered[:3]


async def test_connections_past_the_cap_get_a_json_503(guarded: tuple[Daemon, str, int]) -> None:
    _, host, port = guarded
    held = [await connect(host, port) for _ in range(LIMITS["max_connections"])]
    for reader, writer in held:  # each is served
        writer.write(HEALTH)
        assert json_answer(await read_one(reader))[0] == 200
    reader, writer = await connect(host, port)
    writer.write(HEALTH)
    status, body = json_answer((await read_answers(reader))[0])
    assert status == 503 and body == {"error": "Too many connections", "params": {"max": 3}}
    writer.close()
    held.pop()[1].close()
    # Once one is gone, a new one is served (the server notices the close asynchronously).
    deadline = time.monotonic() + 5
    while True:
        reader, writer = await connect(host, port)
        writer.write(HEALTH)
        status, _ = json_answer(await read_one(reader))
        writer.close()
        if status == 200:
            break
        assert time.monotonic() < deadline, "a closed connection still counts"
        await asyncio.sleep(0.01)
    for _, held_writer in held:
        held_writer.close()


async def test_declared_oversized_body_is_refused_before_it_is_sent(
    guarded: tuple[Daemon, str, int],
) -> None:
    _, host, port = guarded
    reader, writer = await connect(host, port)
    writer.write(
        b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2049\r\n\r\n"  # no body follows: the answer must not wait for it
    )
    answers = await read_answers(reader)
    status, body = json_answer(answers[0])
    assert status == 413 and body["params"] == {"max_bytes": 2048}, body
    writer.close()


async def test_pipelined_requests_are_answered_in_order_before_a_malformed_one(
    guarded: tuple[Daemon, str, int],
) -> None:
    _, host, port = guarded
    reader, writer = await connect(host, port)
    writer.write(HEALTH + HEALTH + b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n" + HEALTH)
    answers = await read_answers(reader)
    assert [json_answer(a)[0] for a in answers] == [200, 200, 400]
    writer.close()


async def test_many_pipelined_requests_in_one_write(guarded: tuple[Daemon, str, int]) -> None:
    _, host, port = guarded
    reader, writer = await connect(host, port)
    writer.write(HEALTH * 99 + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answers = await read_answers(reader, timeout=10)
    assert [json_answer(a)[0] for a in answers] == [200] * 100
    writer.close()
