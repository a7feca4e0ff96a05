"""A small keep-alive HTTP/1.1 client for the one request the node makes most: a JSON POST to
a service container on the local host or network.

Why not aiohttp's client here: on this path it costs ~250 µs of CPU per request of pure
client machinery (sessions, cookies, tracing, redirects), about three times the work of the
container itself; the node makes one such call per container per job. Why a protocol rather
than asyncio streams: a response is parsed as its bytes arrive, instead of an awaited
``readuntil`` per header line, and the deadline is one timer handle per call. The framing is
parsed by ``httptools`` (llhttp, as in uvicorn and Node.js), strictly: a malformed or
ambiguous answer is an error, never a guess. aiohttp stays in use for HTTPS endpoints,
streams and everything else.

A request is sent at most once: once its bytes were written, a connection that drops before
the answer may still have reached the service (a job would run twice), so it is an error,
not a retry. Only a connection known dead before the write is skipped.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

import httptools

MAX_HEADER_BYTES = 64 * 1024
MAX_IDLE_PER_HOST = 256
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# An idle connection older than this is closed instead of reused: shorter than the keep-alive
# timeout of common servers (gunicorn 2 s, uvicorn and hypercorn 5 s), so the service does not
# close it while our request is on its way (which, for a POST, cannot be retried).
IDLE_REUSE_SECONDS = 1.0


class Http1Error(Exception):
    """The peer broke the HTTP/1.1 protocol or the connection."""


class Http1ConnectTimeout(Http1Error):
    """No TCP connection within the connect timeout (a vanished host does not refuse)."""


class Http1Truncated(Http1Error):
    """The connection ended in the middle of a response."""


class Http1TooLarge(Http1Error):
    """The answer is larger than the pool's ``max_response_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Http1Response:
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One TCP connection; at most one request in flight (no pipelining).

    The ``on_*`` methods are httptools callbacks, called from ``feed_data``.
    """

    def __init__(self, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        # Made by loop.create_connection, so inside the loop. Kept: in Python 3.11 every
        # get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._limit = max_response_bytes
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[Http1Response, bool]] | None = None
        self._reset()

    def _reset(self) -> None:
        """Forget the message being parsed (a new request, or after an interim 1xx)."""
        self._received = 0  # bytes of this answer so far
        self._head_done = False
        self._framed = False  # Content-Length or chunked: the end is not the connection's
        self._keep_alive = False
        self._body: list[bytes] = []
        self._size = 0
        self._response: Http1Response | None = None
        self._error: Http1Error | None = None

    # --- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence no isinstance check.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._received += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._error = self._error or Http1Error("the service switched protocols")
        except httptools.HttpParserError as exc:
            self._error = self._error or Http1Error(f"malformed response: {exc}")
        response = self._response
        if response is not None:
            # Anything after the answer (an error, a second message) rules out reuse.
            self._finish(response, self._keep_alive and self._error is None)
        elif self._error is not None:
            self._fail(self._error)
        elif not self._head_done and self._received > MAX_HEADER_BYTES:
            self._fail(Http1Error("response headers too large"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles any waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if not self._received:
            waiter.set_exception(
                Http1Error(
                    "connection closed by the service before it answered "
                    "(the request may have reached it, so it is not sent again)"
                )
            )
        elif self._head_done and not self._framed:  # delimited by the end of the connection
            self._finish(Http1Response(self._parser.get_status_code(), self._joined()), False)
        else:
            waiter.set_exception(Http1Truncated("connection closed in the middle of a response"))

    # --- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._response is not None:
            self._reject(Http1Error("bytes after the answer"))

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":  # llhttp checked: digits only, one header, no TE
            self._framed = True
            if int(value) > self._limit:
                self._reject(Http1TooLarge(self._limit))
        elif name == b"transfer-encoding":
            # chunked is the only coding we accept, and only alone: with another coding in
            # front the body is not what the service meant; after it, llhttp would read to
            # the end of the connection.
            if self._framed or value.strip().lower() != b"chunked":
                self._reject(Http1Error(f"unsupported Transfer-Encoding: {value[:40]!r}"))
            self._framed = True

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._limit:
            self._reject(Http1TooLarge(self._limit))
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # interim answer (100 Continue): the real one follows
            keep_alive = self._keep_alive
            self._reset()
            self._received = 1  # an answer has begun: a drop now is a truncation
            self._keep_alive = keep_alive
            return
        self._response = Http1Response(status, self._joined())

    def _reject(self, error: Http1Error) -> None:
        """Stop the parser (callbacks signal errors by raising) and remember why."""
        self._error = self._error or error
        raise error

    def _joined(self) -> bytes:
        body = self._body
        return body[0] if len(body) == 1 else b"".join(body)

    # --- the exchange ------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[tuple[Http1Response, bool]]:
        assert self.transport is not None
        waiter = self._loop.create_future()
        self._waiter = waiter
        self._reset()
        self.transport.write(data)
        return waiter

    def _finish(self, response: Http1Response, keep_alive: bool) -> None:
        waiter = self._waiter
        self._reset()
        if waiter is not None and not waiter.done():
            waiter.set_result((response, keep_alive))
        if not keep_alive:
            self.close()

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

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.max_response_bytes = max_response_bytes
        self._idle: collections.deque[_Connection] = collections.deque()

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        """A new connection, within the connect timeout and never past the call's deadline."""
        remaining = deadline - loop.time()
        limit = min(self.connect_timeout, remaining)
        if limit <= 0:
            raise TimeoutError
        limit_bytes = self.max_response_bytes
        try:
            async with asyncio.timeout(limit):
                _, conn = await loop.create_connection(
                    lambda: _Connection(limit_bytes), self.host, self.port
                )
        except TimeoutError:
            if remaining < self.connect_timeout:
                raise  # the call's own deadline: the caller reports "no answer in time"
            raise Http1ConnectTimeout from None
        return conn

    def _reusable(self, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        """The most recently used idle connection that is known alive and fresh, if any."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if conn.closed or transport is None or transport.is_closing():
                continue
            if loop.time() - conn.idle_since > IDLE_REUSE_SECONDS:
                conn.close()
                self.close()  # the others were used even earlier
                return None
            return conn
        return None

    async def post(self, head: bytes, body: bytes, *, timeout: float) -> Http1Response:
        """Send one request and return the answer; raises ``TimeoutError`` after ``timeout``
        seconds. Never sends it twice (see the module's docstring)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = self._reusable(loop) or await self._connect(loop, deadline)
        waiter = conn.send(head + body)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            response, keep_alive = await waiter
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
        if keep_alive and not conn.closed and len(self._idle) < MAX_IDLE_PER_HOST:
            conn.idle_since = loop.time()
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
