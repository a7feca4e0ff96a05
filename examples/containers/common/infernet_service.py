"""A small, fast HTTP/1.1 server for Infernet-compatible service containers (stdlib only).

Why not ``http.server``: it is thread-per-request and slow; the node-agent benchmark needs the
example containers to answer many thousands of requests per second on loopback. This module is an
``asyncio.Protocol`` server (keep-alive, pipelining, Content-Length and chunked bodies in both
directions) that answers junk with ``400`` instead of hanging, plus the Infernet service routes:

- ``POST /service_output``  body ``{"source", "destination", "data", "requires_proof"}``
- ``GET /service-resources[?model_id=X]``
- ``GET /health``

A service subclasses :class:`InfernetService` and implements :meth:`InfernetService.run`; the
same file is copied into every example image, so there is exactly one copy of the server code.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import platform
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import parse_qs

# Infernet's JobLocation enum.
ONCHAIN, OFFCHAIN, STREAM = 0, 1, 2

_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_HEX_CHARS = frozenset(b"0123456789abcdefABCDEF")
_JSON = "application/json"


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(slots=True)
class Limits:
    """Bounds that keep a misbehaving client from holding memory or a connection forever."""

    max_head_bytes: int = 64 * 1024
    max_body_bytes: int = 32 * 1024 * 1024
    request_timeout: float = 30.0  # a started request must be complete within this
    keepalive_timeout: float = 120.0  # idle keep-alive connections are closed after this

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            max_head_bytes=int(_env_float("MAX_HEAD_BYTES", 64 * 1024)),
            max_body_bytes=int(_env_float("MAX_BODY_BYTES", 32 * 1024 * 1024)),
            request_timeout=_env_float("REQUEST_TIMEOUT", 30.0),
            keepalive_timeout=_env_float("KEEPALIVE_TIMEOUT", 120.0),
        )


class HttpError(Exception):
    """Raised anywhere while handling a request; becomes a JSON error response."""

    def __init__(self, status: int, error: str, params: dict[str, Any] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.params = params


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query_string: str
    version: str
    headers: dict[str, str]
    body: bytes

    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, "Request body is not valid JSON", {"reason": str(exc)}) from None


@dataclass(slots=True)
class Response:
    """A complete response, written with a Content-Length."""

    status: int = 200
    body: bytes = b""
    content_type: str = _JSON


@dataclass(slots=True)
class StreamResponse:
    """A response written with ``Transfer-Encoding: chunked``, one HTTP chunk per item."""

    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"


class AbortConnection(Exception):
    """Raised by a stream's iterator to cut the connection off mid-body (test containers)."""


HandlerResult = Response | StreamResponse
Handler = Callable[[Request], HandlerResult | Awaitable[HandlerResult]]


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode(), _JSON)


def error_response(status: int, error: str, params: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"error": error}
    if params is not None:
        body["params"] = params
    return json_response(body, status)


# --- sans-I/O request parsing --------------------------------------------------------------------


@dataclass(slots=True)
class _Head:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body_start: int


def looks_like_http(prefix: bytes) -> bool:
    """Whether the bytes so far can still become a request line (junk is refused at once)."""
    space = prefix.find(b" ")
    token = prefix if space < 0 else prefix[:space]
    if len(token) > 16 or (space == 0):
        return False
    return all(c in _TOKEN_CHARS for c in token)


def parse_head(buf: bytes | bytearray, limits: Limits) -> _Head | None:
    """Parse the request line and headers; ``None`` when more bytes are needed."""
    end = buf.find(b"\r\n\r\n")
    sep_len = 4
    lf_end = buf.find(b"\n\n")
    if lf_end >= 0 and (end < 0 or lf_end < end):
        end, sep_len = lf_end, 2
    if end < 0:
        if len(buf) > limits.max_head_bytes:
            raise HttpError(431, "Request head too large", {"limit": limits.max_head_bytes})
        if not looks_like_http(bytes(buf[:32])):
            raise HttpError(400, "Malformed request line")
        return None
    if end > limits.max_head_bytes:
        raise HttpError(431, "Request head too large", {"limit": limits.max_head_bytes})
    try:
        text = bytes(buf[:end]).decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "Malformed request head") from None
    lines = text.split("\n")
    parts = lines[0].rstrip("\r").split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HttpError(400, "Malformed request line")
    method, target, version = parts
    if not all(ord(c) in _TOKEN_CHARS for c in method):
        raise HttpError(400, "Malformed request method")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if version.startswith("HTTP/"):
            raise HttpError(505, "HTTP version not supported", {"version": version})
        raise HttpError(400, "Malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        line = line.rstrip("\r")
        colon = line.find(":")
        if colon <= 0 or line[0] in " \t":
            raise HttpError(400, "Malformed header line")
        name = line[:colon]
        if not all(ord(c) in _TOKEN_CHARS for c in name):
            raise HttpError(400, "Malformed header name")
        name = name.lower()
        value = line[colon + 1 :].strip()
        if name in headers:
            if name in ("content-length", "host", "transfer-encoding"):
                raise HttpError(400, "Duplicate header", {"header": name})
            value = headers[name] + ", " + value
        headers[name] = value
    return _Head(method, target, version, headers, end + sep_len)


def parse_chunked(buf: bytes | bytearray, start: int, limit: int) -> tuple[bytes, int] | None:
    """Decode a chunked request body starting at ``start``: (body, end) or None if incomplete."""
    pos = start
    pieces: list[bytes] = []
    total = 0
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            if len(buf) - pos > 1024:
                raise HttpError(400, "Malformed chunk size line")
            return None
        size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or not all(c in _HEX_CHARS for c in size_text):
            raise HttpError(400, "Malformed chunk size line")
        size = int(size_text, 16)
        pos = line_end + 2
        if size == 0:
            # Trailers (ignored) end with an empty line.
            while True:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                if line_end == pos:
                    return b"".join(pieces), pos + 2
                pos = line_end + 2
        total += size
        if total > limit:
            raise HttpError(413, "Request body too large", {"limit": limit})
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise HttpError(400, "Malformed chunk")
        pieces.append(bytes(buf[pos : pos + size]))
        pos += size + 2


def _body_length(head: _Head, limits: Limits) -> int | None:
    """Content-Length of the body, ``None`` for a chunked body."""
    encoding = head.headers.get("transfer-encoding")
    length = head.headers.get("content-length")
    if encoding is not None:
        if length is not None:
            raise HttpError(400, "Both Content-Length and Transfer-Encoding given")
        if encoding.lower() != "chunked":
            raise HttpError(501, "Unsupported transfer encoding", {"encoding": encoding})
        return None
    if length is None:
        return 0
    if not length.isdigit() or len(length) > 15:
        raise HttpError(400, "Malformed Content-Length")
    size = int(length)
    if size > limits.max_body_bytes:
        raise HttpError(413, "Request body too large", {"limit": limits.max_body_bytes})
    return size


# --- the connection protocol ----------------------------------------------------------------------

_date_cache: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, f"Date: {formatdate(now, usegmt=True)}\r\n".encode())
    return _date_cache[1]


def _head_bytes(status: int, content_type: str, extra: str, keep_alive: bool) -> bytes:
    reason = _REASONS.get(status, "Status")
    connection = "" if keep_alive else "Connection: close\r\n"
    return (
        f"HTTP/1.1 {status} {reason}\r\nServer: infernet-service\r\n"
        f"Content-Type: {content_type}\r\n{extra}{connection}"
    ).encode() + _date_header()


class HttpProtocol(asyncio.Protocol):
    """One client connection: parses requests in order and writes their responses in order."""

    def __init__(self, handler: Handler, limits: Limits) -> None:
        self._handler = handler
        self._limits = limits
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._busy = False  # an async handler or a stream owns the connection
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline = 0.0
        self._task: asyncio.Task[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused_writing = False

    # asyncio callbacks --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence a cast, not a check.
        self._transport = cast(asyncio.Transport, transport)
        self._arm_timer(self._limits.keepalive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._process()

    def eof_received(self) -> bool | None:
        # A half-closed client still gets the responses it is owed (then we close).
        self._closing = True
        if not self._busy and self._transport is not None:
            self._transport.close()
        return True

    # request loop -------------------------------------------------------------------------------

    def _process(self) -> None:
        """Handle every complete request in the buffer; stop at the first asynchronous one."""
        while self._transport is not None and self._buf:
            try:
                parsed = self._next_request()
            except HttpError as exc:
                self._write(error_response(exc.status, exc.error, exc.params), keep_alive=False)
                return
            if parsed is None:
                self._arm_timer(self._limits.request_timeout)
                return
            request, keep_alive = parsed
            try:
                result = self._handler(request)
            except HttpError as exc:
                result = error_response(exc.status, exc.error, exc.params)
            except Exception as exc:
                result = _internal_error(exc)
            if isinstance(result, Response):
                self._write(result, keep_alive)
                if not keep_alive:
                    return
                continue
            self._busy = True
            self._transport.pause_reading()
            self._task = self._loop.create_task(self._finish(result, keep_alive))
            return
        if self._transport is not None:
            if self._closing:
                self._transport.close()
            else:
                self._arm_timer(self._limits.keepalive_timeout)

    def _next_request(self) -> tuple[Request, bool] | None:
        buf = self._buf
        head = parse_head(buf, self._limits)
        if head is None:
            return None
        length = _body_length(head, self._limits)
        if length is None:
            decoded = parse_chunked(buf, head.body_start, self._limits.max_body_bytes)
            if decoded is None:
                self._maybe_continue(head)
                return None
            body, end = decoded
        else:
            end = head.body_start + length
            if len(buf) < end:
                self._maybe_continue(head)
                return None
            body = bytes(buf[head.body_start : end])
        del buf[:end]
        connection = head.headers.get("connection", "").lower()
        if head.version == "HTTP/1.1":
            keep_alive = "close" not in connection
        else:
            keep_alive = "keep-alive" in connection
        path, _, query = head.target.partition("?")
        if path.startswith(("http://", "https://")):  # absolute-form target
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        request = Request(head.method, path, query, head.version, head.headers, body)
        return request, keep_alive and not self._closing

    def _maybe_continue(self, head: _Head) -> None:
        if head.headers.get("expect", "").lower() == "100-continue" and self._transport:
            head.headers.pop("expect")
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def _finish(self, pending: Any, keep_alive: bool) -> None:
        try:
            try:
                result = await pending if not isinstance(pending, StreamResponse) else pending
            except HttpError as exc:
                result = error_response(exc.status, exc.error, exc.params)
            except Exception as exc:
                result = _internal_error(exc)
            if isinstance(result, StreamResponse):
                await self._write_stream(result, keep_alive)
            else:
                self._write(result, keep_alive)
        except (asyncio.CancelledError, ConnectionError):
            return
        finally:
            self._task = None
        self._busy = False
        if self._transport is not None and keep_alive:
            self._transport.resume_reading()
            self._process()

    # writing ------------------------------------------------------------------------------------

    def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        head = _head_bytes(
            response.status,
            response.content_type,
            f"Content-Length: {len(response.body)}\r\n",
            keep_alive,
        )
        transport.write(head + b"\r\n" + response.body)
        if not keep_alive:
            self._closing = True
            transport.close()

    async def _write_stream(self, response: StreamResponse, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        head = _head_bytes(
            response.status, response.content_type, "Transfer-Encoding: chunked\r\n", keep_alive
        )
        transport.write(head + b"\r\n")
        try:
            async for chunk in response.chunks:
                if self._transport is None:
                    raise ConnectionResetError("client went away")
                if chunk:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    if self._paused_writing:
                        self._drain_waiter = self._loop.create_future()
                        await self._drain_waiter
        except AbortConnection:
            transport.abort()
            return
        except Exception as exc:  # the status line is gone: all we can do is cut the body off
            _log("stream_failed", error=repr(exc))
            transport.abort()
            return
        transport.write(b"0\r\n\r\n")
        if not keep_alive:
            self._closing = True
            transport.close()

    def _arm_timer(self, seconds: float) -> None:
        # Re-scheduling a timer on every request is wasteful: keep one that fires no later than
        # the deadline and look at the real deadline when it fires.
        deadline = self._loop.time() + seconds
        self._timer_deadline = deadline
        if self._timer is not None and self._timer.when() > deadline:
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        now = self._loop.time()
        if now < self._timer_deadline:
            self._timer = self._loop.call_at(self._timer_deadline, self._on_timer)
            return
        if self._busy:  # a handler is running; it is not the client's fault
            self._arm_timer(self._limits.keepalive_timeout)
            return
        if self._buf:
            self._write(error_response(408, "Request not completed in time"), keep_alive=False)
        else:
            self._transport.close()


def _internal_error(exc: Exception) -> Response:
    _log("handler_failed", error=repr(exc))
    return error_response(500, "Internal service error", {"reason": str(exc)})


def _log(event: str, **fields: Any) -> None:
    """One JSON line on stderr: containers are read with ``docker logs``."""
    line = {"event": event, **fields}
    print(json.dumps(line, default=str), file=sys.stderr, flush=True)


# --- the Infernet service routes ------------------------------------------------------------------


@dataclass(slots=True)
class ServiceJob:
    """The body of ``POST /service_output`` (Infernet's service-container protocol)."""

    source: int
    destination: int
    data: Any
    requires_proof: bool = False

    @classmethod
    def from_body(cls, body: Any) -> ServiceJob:
        if not isinstance(body, dict):
            raise HttpError(400, "Body must be a JSON object")
        if "data" not in body:
            raise HttpError(400, "Missing field", {"field": "data"})
        fields: dict[str, Any] = {"data": body["data"]}
        for name in ("source", "destination"):
            value = body.get(name, OFFCHAIN)
            if not isinstance(value, int) or isinstance(value, bool) or value not in (0, 1, 2):
                raise HttpError(400, "Field must be 0, 1 or 2", {"field": name, "value": value})
            fields[name] = value
        proof = body.get("requires_proof", False)
        if not isinstance(proof, bool):
            raise HttpError(400, "Field must be a boolean", {"field": "requires_proof"})
        fields["requires_proof"] = proof
        return cls(**fields)


_ROUTES = {
    "/service_output": ("POST", "_service_output"),
    "/service-resources": ("GET", "_resources"),
    "/health": ("GET", "_health"),
}


@dataclass
class InfernetService:
    """Base of the example services: routes, resources and the stream helper.

    Subclasses implement :meth:`run`, returning a JSON-serialisable object (usually a dict), a
    :class:`Response`, a :class:`StreamResponse` or an awaitable of one of those.
    """

    name: str = "service"
    models: tuple[str, ...] = ()
    chunk_delay: float = field(default_factory=lambda: _env_float("STREAM_CHUNK_DELAY", 0.005))

    def run(self, job: ServiceJob) -> Any:
        raise NotImplementedError

    # routing ------------------------------------------------------------------------------------

    def __call__(self, request: Request) -> HandlerResult | Awaitable[HandlerResult]:
        route = _ROUTES.get(request.path)
        if route is None:
            raise HttpError(404, "Not found", {"path": request.path})
        method, handler_name = route
        if request.method != method:
            raise HttpError(405, "Method not allowed", {"allowed": method})
        handler: Handler = getattr(self, handler_name)
        return handler(request)

    def _service_output(self, request: Request) -> HandlerResult | Awaitable[HandlerResult]:
        # The body is parsed as JSON whatever its Content-Type says (curl sends form-encoded).
        job = ServiceJob.from_body(request.json())
        result = self.run(job)
        if isinstance(result, Response | StreamResponse):
            return result
        if isinstance(result, Awaitable):
            return result
        return json_response(result)

    def _resources(self, request: Request) -> Response:
        model_ids = request.query().get("model_id")
        if model_ids is not None:
            return json_response({"supported": model_ids[0] in self.models})
        return json_response(self.resources())

    def _health(self, request: Request) -> Response:
        return json_response({"status": "healthy", "service": self.name})

    def resources(self) -> dict[str, Any]:
        """A ServiceResources object (infernet-ml's shape)."""
        return {
            "service_id": self.name,
            "compute_capability": [
                {
                    "id": self.name,
                    "type": "custom",
                    "task": [self.name],
                    "models": list(self.models),
                }
            ],
            "hardware_capabilities": [
                {
                    "capability_id": "base",
                    "cpu_info": {"architecture": platform.machine(), "num_cores": os.cpu_count()},
                    "os_info": {"name": platform.system(), "version": platform.release()},
                    "gpu_info": [],
                    "disk_info": [],
                }
            ],
        }

    # streaming ----------------------------------------------------------------------------------

    def stream(self, tokens: list[str], delay: float | None = None) -> StreamResponse:
        """Send each token as its own HTTP chunk, with a pause so they arrive separately."""
        pause = self.chunk_delay if delay is None else delay

        async def chunks() -> AsyncIterator[bytes]:
            for index, token in enumerate(tokens):
                if index and pause > 0:
                    await asyncio.sleep(pause)
                yield token.encode()

        return StreamResponse(chunks())


def text_of(data: Any) -> str:
    """The text a streaming example works on: ``data["prompt"|"text"]`` or the data as JSON."""
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        for key in ("prompt", "text"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return json.dumps(data, separators=(",", ":"))


def tokens_of(text: str) -> list[str]:
    """Split text into word tokens that keep their trailing space (joined they give the text)."""
    tokens: list[str] = []
    for word in text.split(" "):
        tokens.append(word + " ")
    if tokens:
        tokens[-1] = tokens[-1][:-1]
    return [t for t in tokens if t] or [""]


def stream_delay(data: Any) -> float | None:
    """A per-request override of the pause between chunks: ``data["stream_delay"]`` seconds."""
    if isinstance(data, dict):
        value = data.get("stream_delay")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return min(max(float(value), 0.0), 5.0)
    return None


# --- serving --------------------------------------------------------------------------------------


async def start(
    handler: Handler, host: str = "0.0.0.0", port: int = 3000, limits: Limits | None = None
) -> asyncio.Server:
    """Start serving (returns the listening server; port 0 picks a free one)."""
    loop = asyncio.get_running_loop()
    bounds = limits or Limits.from_env()
    return await loop.create_server(
        lambda: HttpProtocol(handler, bounds), host, port, reuse_address=True, backlog=1024
    )


def main(service: InfernetService) -> None:
    """Entry point of a container: serve ``service`` on ``$HOST:$PORT`` (0.0.0.0:3000)."""
    host = os.environ.get("HOST", "0.0.0.0")
    port = int(os.environ.get("PORT", "3000"))

    async def serve() -> None:
        server = await start(service, host, port)
        stop = asyncio.Event()
        # As PID 1 in a container, Python gets no default SIGTERM action: without a handler
        # `docker stop` would wait for its timeout and then kill us.
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        _log("listening", service=service.name, host=host, port=port)
        await stop.wait()
        server.close()  # open keep-alive connections die with the process
        _log("stopped", service=service.name)

    try:
        # Optional: faster where installed, absent from the stdlib-only images.
        runner: Callable[[Any], Any] = importlib.import_module("uvloop").run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve())
