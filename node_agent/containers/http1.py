"""A small keep-alive HTTP/1.1 client for the one request the node makes most: a JSON POST to
a service container on the local host or network.

Why not aiohttp's client here: on this path it costs ~250 µs of CPU per request of pure
client machinery (sessions, cookies, tracing, redirects), about three times the work of the
container itself; the node makes one such call per container per job. Why a protocol rather
than asyncio streams: a response is parsed in one pass over the bytes that arrived, instead of
an awaited ``readuntil`` per header line, and the deadline is one timer handle per call.
aiohttp stays in use for HTTPS endpoints, streams and everything else.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024
MAX_IDLE_PER_HOST = 256


class Http1Error(Exception):
    """The peer broke the HTTP/1.1 protocol or the connection."""


class Http1ConnectTimeout(Http1Error):
    """No TCP connection within the connect timeout (a vanished host does not refuse)."""


class Http1Truncated(Http1Error):
    """The connection ended in the middle of a response."""


class _StaleConnection(Exception):
    """A reused connection closed before a single byte of the answer arrived."""


@dataclass(frozen=True, slots=True)
class Http1Response:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class _Head:
    status: int
    size: int  # bytes of the status line and headers, blank line included
    length: int | None
    chunked: bool
    keep_alive: bool


def parse_head(buffer: bytes | bytearray) -> _Head | None:
    """The response head at the start of ``buffer``; ``None`` until all of it arrived."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEADER_BYTES or (
            len(buffer) >= 8 and not bytes(buffer[:7]) == b"HTTP/1."
        ):
            raise Http1Error(f"not an HTTP/1.x response: {bytes(buffer[:80])!r}")
        return None
    if end > MAX_HEADER_BYTES:
        raise Http1Error("response headers too large")
    lines = bytes(buffer[:end]).split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise Http1Error(f"not an HTTP/1.x response: {lines[0][:80]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise Http1Error(f"bad status line: {lines[0][:80]!r}") from None
    keep_alive = parts[0] == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise Http1Error(f"bad Content-Length: {value[:40]!r}") from None
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            lowered = value.lower()
            keep_alive = b"keep-alive" in lowered or (keep_alive and b"close" not in lowered)
    return _Head(status, end + 4, length, chunked, keep_alive)


def parse_chunked(buffer: bytes | bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``start``: (body, end offset), or ``None`` until complete.

    Called again on every arrival: it only walks the chunk-size lines until the body is whole,
    and copies the data once, so a large body that arrives in many pieces costs linear time.
    """
    spans: list[tuple[int, int]] = []
    pos = start
    while True:
        eol = buffer.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buffer[pos:eol]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise Http1Error(f"bad chunk size: {bytes(buffer[pos:eol])[:40]!r}") from None
        pos = eol + 2
        if size == 0:
            while True:  # trailers, up to the blank line
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    return None
                blank = eol == pos
                pos = eol + 2
                if blank:
                    with memoryview(buffer) as view:
                        body = b"".join([view[a:b] for a, b in spans])
                    return body, pos
        if len(buffer) < pos + size + 2:
            return None
        spans.append((pos, pos + size))
        pos += size + 2


class _Connection(asyncio.Protocol):
    """One TCP connection; at most one request in flight (no pipelining)."""

    def __init__(self) -> None:
        # Made by loop.create_connection, so inside the loop. Kept: in Python 3.11 every
        # get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._head: _Head | None = None
        self._waiter: asyncio.Future[tuple[Http1Response, bool]] | None = None

    # --- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence no isinstance check.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._buffer += data
        try:
            self._try_finish(eof=False)
        except Http1Error as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles any waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if not self._buffer:
            waiter.set_exception(_StaleConnection())
            return
        try:
            self._try_finish(eof=True)
        except Http1Error as error:
            self._fail(error)
            return
        if not waiter.done():
            waiter.set_exception(Http1Truncated("connection closed in the middle of a response"))

    # --- the exchange ------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[tuple[Http1Response, bool]]:
        assert self.transport is not None
        waiter = self._loop.create_future()
        self._waiter = waiter
        self._buffer.clear()
        self._head = None
        self.transport.write(data)
        return waiter

    def _try_finish(self, *, eof: bool) -> None:
        buffer = self._buffer
        while self._head is None:
            head = parse_head(buffer)
            if head is None:
                return
            if 100 <= head.status < 200 and head.status != 101:
                del buffer[: head.size]  # interim answer (100 Continue): the real one follows
                continue
            self._head = head
        head = self._head
        if head.chunked:
            parsed = parse_chunked(buffer, head.size)
            if parsed is None:
                return
            body, end = parsed
            self._finish(Http1Response(head.status, body), head.keep_alive and end == len(buffer))
        elif head.length is not None:
            end = head.size + head.length
            if len(buffer) < end:
                return
            body = bytes(buffer[head.size : end])
            self._finish(Http1Response(head.status, body), head.keep_alive and end == len(buffer))
        elif head.status in (204, 304):
            self._finish(Http1Response(head.status, b""), head.keep_alive)
        elif eof:  # delimited by the end of the connection
            self._finish(Http1Response(head.status, bytes(buffer[head.size :])), False)

    def _finish(self, response: Http1Response, keep_alive: bool) -> None:
        waiter = self._waiter
        self._buffer.clear()
        self._head = None
        if waiter is not None and not waiter.done():
            waiter.set_result((response, keep_alive))

    def _fail(self, exc: BaseException) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[tuple[Http1Response, bool]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Http1Pool:
    """Idle keep-alive connections to one ``host:port``."""

    def __init__(self, host: str, port: int, *, connect_timeout: float) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self._idle: collections.deque[_Connection] = collections.deque()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(_Connection, self.host, self.port)
        except TimeoutError:
            raise Http1ConnectTimeout from None
        return conn

    async def post(self, head: bytes, body: bytes, *, timeout: float) -> Http1Response:
        """Send one request and return the answer; raises ``TimeoutError`` after ``timeout``
        seconds. A reused connection the server already closed is retried once on a fresh one
        (only when not a single byte of the answer arrived)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        payload = head + body
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                continue
            try:
                return await self._exchange(loop, conn, payload, deadline)
            except _StaleConnection:
                break
        conn = await self._connect()
        try:
            return await self._exchange(loop, conn, payload, deadline)
        except _StaleConnection:
            raise Http1Error("connection closed by the service before it answered") from None

    async def _exchange(
        self, loop: asyncio.AbstractEventLoop, conn: _Connection, payload: bytes, deadline: float
    ) -> Http1Response:
        waiter = conn.send(payload)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            response, keep_alive = await waiter
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
        if keep_alive and not conn.closed and len(self._idle) < MAX_IDLE_PER_HOST:
            self._idle.append(conn)
        else:
            conn.close()
        return response

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def request_head(
    path: str, host_header: str, content_length: int, headers: dict[str, str]
) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host_header}", f"Content-Length: {content_length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
