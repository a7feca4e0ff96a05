"""Limits on the API's connections, so that idle or slow clients cannot hold its capacity.

aiohttp closes an idle keep-alive connection after ``keepalive_timeout`` but has no deadline for
a request's head: a client that sends one byte a minute (slowloris) keeps its connection, and a
file descriptor, forever. Nor does it bound the number of connections: past the process's file
limit, ``accept`` fails and every client waits without an answer. And it parses pipelined
requests in batches, so a malformed request cost the answers of the valid ones before it in the
same read. :class:`GuardedRequestHandler` adds a head deadline (JSON 408, then close), a cap on
connections (JSON 503, then close) and parses one request at a time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_parser import HttpRequestParser
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo

from node_agent import jsonpolicy
from node_agent.api.dispatch import JsonErrorRequestHandler
from node_agent.api.responses import error_response
from node_agent.errors import NodeAgentError

log = structlog.get_logger(__name__)


class HeaderTimeout(Exception):
    """A request's head did not arrive within the deadline."""


def refusal(status: int, reason: str, error: NodeAgentError) -> bytes:
    """A complete JSON error answer that closes the connection, for use without a request."""
    body = jsonpolicy.dumps(error.to_wire())
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
    ).encode() + body


class GuardedRequestHandler(JsonErrorRequestHandler):
    """One connection: a request head must arrive within ``header_timeout`` seconds of its
    first byte; past ``max_connections`` open connections a new one is refused at once;
    pipelined requests are parsed one at a time, so each is answered in order (a malformed one
    after valid ones gets its 400 after their answers)."""

    def __init__(
        self,
        manager: web.Server,
        *,
        header_timeout: float,
        max_connections: int,
        max_line_size: int = 8190,
        max_field_size: int = 8190,
        max_headers: int = 128,
        auto_decompress: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            manager,
            max_line_size=max_line_size,
            max_field_size=max_field_size,
            max_headers=max_headers,
            auto_decompress=auto_decompress,
            **kwargs,
        )
        # aiohttp's parser hands over up to 32 requests per read and drops them all when a
        # later one is malformed: with a queue of one it stops after each request (the rest of
        # the read waits in its tail, parsed when the request before it was taken).
        self._parser = HttpRequestParser(
            self,
            self._loop,
            self._read_bufsize,
            max_line_size=max_line_size,
            max_field_size=max_field_size,
            max_headers=max_headers,
            payload_exception=RequestPayloadError,
            auto_decompress=auto_decompress,
            max_msg_queue_size=1,
        )
        self._max_msg_queue_size = 1
        self._msg_queue_resume_size = 0
        self._header_timeout = header_timeout
        self._max_connections = max_connections
        self._header_timer: asyncio.TimerHandle | None = None
        self._body: StreamReader = EMPTY_PAYLOAD

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        manager = self._manager
        if manager is not None and len(manager._connections) >= self._max_connections:
            # Answered without a request: the client learns why, instead of a hang or a reset.
            error = NodeAgentError("Too many connections", {"max": self._max_connections})
            transport.write(refusal(503, "Service Unavailable", error))  # type: ignore[attr-defined]
            transport.close()
            self._force_close = True  # ignore whatever it sends meanwhile
            self._manager = None  # never registered: connection_lost has nothing to undo
            log.warning("connection_refused", reason="max_connections", limit=self._max_connections)
            return
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        # Bytes that arrive while a body is still owed belong to that body (a request answered
        # before its body came, e.g. a 405, still has them on the wire): they start no head
        # deadline, or an idle keep-alive connection would get a 408 that the client reads as
        # the answer to its next request.
        body_owed = self._body is not EMPTY_PAYLOAD and not self._body.is_eof()
        super().data_received(data)
        if data and self._request_count == count and not self._messages:
            self._reparse_held_back()
        if self._request_count != count:  # a head arrived (or was refused): no more deadline
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            if self._messages:
                self._body = self._messages[-1][1]
        elif (
            data
            and not body_owed
            and self._header_timer is None
            and (self._body is EMPTY_PAYLOAD or self._body.is_eof())
            and not (self._force_close or self._close)
        ):
            self._header_timer = self._loop.call_later(self._header_timeout, self._head_too_late)

    def _reparse_held_back(self) -> None:
        """aiohttp's C parser counts a message as queued when its body ends; the handler takes
        it (and frees the slot) when its head ends. A request answered before its body arrived
        (a 405 at the head) is taken first, its body ends later, and the parser believes the
        queue full: the next request's head waits in its tail, unanswered, for good (CI met it
        under schemathesis; a keep-alive client hangs). With no message queued no slot can be
        taken, so free the leaked one and parse what was held back."""
        parser = self._parser
        if parser is None:
            return
        parser.message_consumed()
        super().data_received(b"")  # what it parses is seen by data_received's checks

    def _head_too_late(self) -> None:
        """Queue a 408 after whatever is being answered, and take no more bytes."""
        self._header_timer = None
        if self._force_close or self._close:
            return
        problem = f"request head not received within {self._header_timeout:g} s"
        self._messages.append((_ErrInfo(408, HeaderTimeout(problem), problem), EMPTY_PAYLOAD))
        self._request_count += 1
        self._close = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        result = await super().finish_response(request, resp, start_time)
        if resp.status == 413 and not request.content.is_eof():
            # A body refused by its declared size is not read at all: aiohttp would read and
            # drop it for up to 10 s first. The answer is written; closing sends it, then FIN.
            self.force_close()
        return result

    def _process_keepalive(self) -> None:
        if self._header_timer is None:  # a head on its way has its own deadline (and a 408)
            super()._process_keepalive()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HeaderTimeout):  # a slow client, not a fault of ours: no traceback
            log.info("request_head_timeout", peer=request.remote, problem=message)
            error = NodeAgentError("Request Timeout", {"problem": message or ""})
            error.status = 408
            response = error_response(error)
            response.force_close()
            return response
        return super().handle_error(request, status, exc, message)


class GuardedServer(web.Server):
    """``web.Server`` whose connections use :class:`GuardedRequestHandler`."""

    def __init__(self, *args: Any, header_timeout: float, max_connections: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._max_connections = max_connections

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(
            self,
            loop=self._loop,
            header_timeout=self._header_timeout,
            max_connections=self._max_connections,
            **self._kwargs,
        )
