"""A small keep-alive HTTP/1.1 client for the one request the node makes most: a JSON POST to
a service container on the local host or network.

Why not aiohttp's client here: on this path it costs ~250 µs of CPU per request of pure
client machinery (sessions, cookies, tracing, redirects), about three times the work of the
container itself; the node makes one such call per container per job. aiohttp stays in use
for HTTPS endpoints, streams and everything else.
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


@dataclass(frozen=True, slots=True)
class Http1Response:
    status: int
    body: bytes


class _Connection:
    __slots__ = ("reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    def close(self) -> None:
        self.writer.close()


class Http1Pool:
    """Idle keep-alive connections to one ``host:port``."""

    def __init__(self, host: str, port: int, *, connect_timeout: float) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self._idle: collections.deque[_Connection] = collections.deque()

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**20)
        except TimeoutError:
            raise Http1ConnectTimeout from None
        return _Connection(reader, writer)

    async def post(self, head: bytes, body: bytes) -> Http1Response:
        """Send one request; a reused connection the server already closed is retried once on
        a fresh one (only when not a single byte of the answer arrived)."""
        while self._idle:
            conn = self._idle.pop()
            if conn.writer.is_closing() or conn.reader.at_eof():
                conn.close()
                continue
            try:
                return await self._exchange(conn, head, body)
            except _StaleConnection:
                conn.close()
                break
        conn = await self._connect()
        try:
            return await self._exchange(conn, head, body)
        except _StaleConnection:
            raise Http1Error("connection closed by the service before it answered") from None

    async def _exchange(self, conn: _Connection, head: bytes, body: bytes) -> Http1Response:
        try:
            conn.writer.write(head + body)
            try:
                status_line = await conn.reader.readuntil(b"\r\n")
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    raise _StaleConnection from None
                raise
            response, keep_alive = await _read_response(conn.reader, status_line)
        except BaseException:
            conn.close()
            raise
        if keep_alive and len(self._idle) < MAX_IDLE_PER_HOST:
            conn.reused = True
            self._idle.append(conn)
        else:
            conn.close()
        return response

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class _StaleConnection(Exception):
    pass


async def _read_response(
    reader: asyncio.StreamReader, status_line: bytes
) -> tuple[Http1Response, bool]:
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise Http1Error(f"not an HTTP/1.x response: {status_line[:80]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise Http1Error(f"bad status line: {status_line[:80]!r}") from None
    keep_alive = parts[0] == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    header_bytes = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        header_bytes += len(line)
        if header_bytes > MAX_HEADER_BYTES:
            raise Http1Error("response headers too large")
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            lowered = value.lower()
            keep_alive = b"keep-alive" in lowered or (keep_alive and b"close" not in lowered)
    if chunked:
        body = await _read_chunked(reader)
    elif length is not None:
        body = await reader.readexactly(length)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await reader.read()  # delimited by the end of the connection
        keep_alive = False
    return Http1Response(status, body), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    pieces: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise Http1Error(f"bad chunk size: {size_line[:40]!r}") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(pieces)
        pieces.append(await reader.readexactly(size))
        await reader.readexactly(2)


def request_head(
    path: str, host_header: str, content_length: int, headers: dict[str, str]
) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host_header}", f"Content-Length: {content_length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
