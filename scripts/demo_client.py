"""The demo's client side: the same HTTP calls infernet-client makes, with their results."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

ECHO, TRANSFORM = "demo-echo", "demo-transform"


def show(title: str, value: Any) -> None:
    print(f"\n== {title}\n{json.dumps(value, indent=2)}", flush=True)


async def wait_ready(http: aiohttp.ClientSession, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{url}/info") as resp:
                info = await resp.json()
            running = {c["id"] for c in info["containers"]}
            if {ECHO, TRANSFORM} <= running:
                show("GET /info", info)
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.25)
    raise SystemExit("node-agent did not become ready; see .demo/agent.log")


async def result(http: aiohttp.ClientSession, url: str, job_id: str) -> Any:
    async with http.get(
        f"{url}/api/jobs", params={"id": job_id, "intermediate": "true", "wait": "30"}
    ) as resp:
        return (await resp.json())[0]


async def main(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, url)
        async with http.get(f"{url}/health") as resp:
            show("GET /health", await resp.json())

        async with http.post(
            f"{url}/api/jobs", json={"containers": [ECHO], "data": {"text": "hello node"}}
        ) as resp:
            job = await resp.json()
        show("POST /api/jobs (echo)", job)
        show("its result", await result(http, url, job["id"]))

        chain = {"containers": [ECHO, TRANSFORM, TRANSFORM], "data": {"text": "chain me"}}
        async with http.post(f"{url}/api/jobs", json=chain) as resp:
            job = await resp.json()
        show(
            "chained job echo -> transform -> transform, with intermediate results",
            await result(http, url, job["id"]),
        )

        batch = [
            {"containers": [ECHO], "data": {"n": 1}},
            {"containers": ["no-such-container"], "data": {}},
            {"containers": [TRANSFORM], "data": {"text": "batch"}},
        ]
        async with http.post(f"{url}/api/jobs/batch", json=batch) as resp:
            answers = await resp.json()
        show("POST /api/jobs/batch (one item is refused, inline)", answers)
        for answer in answers:
            if "id" in answer:
                show(f"batch result {answer['id']}", await result(http, url, answer["id"]))

        stream = {"containers": [ECHO], "data": {"prompt": "streamed word by word"}}
        print("\n== POST /api/jobs/stream (first chunk is the job id)", flush=True)
        async with http.post(f"{url}/api/jobs/stream", json=stream) as resp:
            job_id = None
            async for chunk in resp.content.iter_any():
                if job_id is None:
                    job_id = chunk.decode().strip()
                    print(f"job id: {job_id}", flush=True)
                else:
                    print(f"chunk: {chunk!r}", flush=True)
        assert job_id is not None
        show("stream job record", await result(http, url, job_id))

        async with http.post(
            f"{url}/api/jobs", data=b"{oops", headers={"Content-Type": "application/json"}
        ) as resp:
            show(f"bad input gets JSON (HTTP {resp.status})", await resp.json())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
