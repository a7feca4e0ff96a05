"""Faulty: a test-only service that misbehaves on request, for the node's failure-mode tests.

The request's ``data`` picks the behaviour:

- ``{"mode": "ok"}``            200 ``{"output": <data>, "mode": "ok"}``
- ``{"mode": "crash"}``         the process exits before replying (the container dies)
- ``{"mode": "non_json"}``      200 ``text/plain`` body that is not JSON
- ``{"mode": "json500"}``       500 with a JSON body
- ``{"sleep": seconds}``        replies ``{"output": ..., "slept": seconds}`` after that long
  (also ``{"mode": "sleep", "seconds": s}``)
- ``{"mode": "stream_fail"}``   a chunked body that is cut off after a few chunks
Anything else is a 400 JSON error naming the known modes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from infernet_service import (
    AbortConnection,
    HttpError,
    InfernetService,
    Response,
    ServiceJob,
    StreamResponse,
    json_response,
    main,
)

MODES = ("ok", "crash", "non_json", "json500", "sleep", "stream_fail")
CRASH_EXIT_CODE = 17


class FaultyService(InfernetService):
    def run(self, job: ServiceJob) -> Any:
        data = job.data if isinstance(job.data, dict) else {}
        mode = data.get("mode", "sleep" if "sleep" in data else None)
        if mode == "ok":
            return {"output": job.data, "mode": "ok"}
        if mode == "crash":
            os._exit(CRASH_EXIT_CODE)
        if mode == "non_json":
            return Response(200, b"this is not JSON", "text/plain; charset=utf-8")
        if mode == "json500":
            return json_response({"error": "deliberate failure", "mode": "json500"}, 500)
        if mode == "sleep":
            return self._sleep(data.get("sleep", data.get("seconds")))
        if mode == "stream_fail":
            return StreamResponse(self._broken_chunks())
        raise HttpError(400, "Unknown mode", {"mode": mode, "modes": list(MODES)})

    async def _sleep(self, seconds: Any) -> Response:
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise HttpError(400, "sleep must be a non-negative number of seconds")
        await asyncio.sleep(float(seconds))
        return json_response({"output": "slept", "slept": seconds})

    async def _broken_chunks(self) -> AsyncIterator[bytes]:
        for word in ("this ", "stream ", "breaks "):
            yield word.encode()
            await asyncio.sleep(self.chunk_delay)
        raise AbortConnection


def make_service() -> FaultyService:
    return FaultyService(name="faulty")


if __name__ == "__main__":
    main(make_service())
