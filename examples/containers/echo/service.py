"""Echo: the smallest Infernet-compatible service.

Off-chain and on-chain jobs get ``{"output": <data>}`` back; a stream job (destination 2) gets
the text of its data (``data["prompt"]``/``data["text"]``, else the data as JSON) back, one word
per HTTP chunk.
"""

from __future__ import annotations

from typing import Any

from infernet_service import (
    STREAM,
    InfernetService,
    ServiceJob,
    main,
    stream_delay,
    text_of,
    tokens_of,
)


class EchoService(InfernetService):
    def run(self, job: ServiceJob) -> Any:
        if job.destination == STREAM:
            return self.stream(tokens_of(text_of(job.data)), stream_delay(job.data))
        return {"output": job.data}


def make_service() -> EchoService:
    return EchoService(name="echo", models=("echo",))


if __name__ == "__main__":
    main(make_service())
