"""The demo's orchestrator side: a workload (image + command) submitted to /v1/jobs with an
API key, its output followed live, its callback received by a local receiver, its result."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp
from aiohttp import web

IMAGE = "node-agent/base:bookworm"  # offline here; real orchestrators send e.g. python:3.11
TOKEN = "demo-callback-token"


def show(title: str, value: Any) -> None:
    print(f"\n== {title}\n{json.dumps(value, indent=2)}", flush=True)


async def main(url: str, api_key: str) -> None:
    callbacks: list[dict[str, Any]] = []
    final = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "bad token"}, status=401)
        body = await request.json()
        callbacks.append(
            {
                "headers": {k: v for k, v in request.headers.items() if k.startswith("X-Jungle")},
                "body": {k: body.get(k) for k in ("job_id", "status", "exit_code", "correlation")},
            }
        )
        if body["status"] in ("succeeded", "failed", "cancelled"):
            final.set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/callback", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_port = runner.addresses[0][1]
    headers = {"Authorization": f"Bearer {api_key}"}
    draft = {
        "name": "demo-batch",
        "workload_type": "batch",
        "image": IMAGE,
        "command": "python3",
        "args": [
            "-c",
            "import time\nfor i in range(5):\n    print('step', i, flush=True); time.sleep(0.4)\n"
            "print('result: 42')",
        ],
        "max_runtime": 120,
        "callback_url": f"http://127.0.0.1:{hook_port}/callback",
        "callback_auth_token": TOKEN,
        "callback_metadata": {"request_id": "req_123"},
    }
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/v1/jobs/estimate", json=draft, headers=headers) as r:
                show("POST /v1/jobs/estimate", await r.json())
            async with http.post(f"{url}/v1/jobs", json=draft, headers=headers) as r:
                job = await r.json()
            show("POST /v1/jobs", job)
            job_id = job["job_id"]
            print("\n== GET /v1/jobs/{id}/logs/live (server-sent events, as they arrive)")
            async with http.get(f"{url}/v1/jobs/{job_id}/logs/live", headers=headers) as r:
                async for raw in r.content:
                    line = raw.decode().rstrip("\n")
                    if line:
                        print("   ", line, flush=True)
            await asyncio.wait_for(final.wait(), 60)
            show("callbacks received (headers and body fields)", callbacks)
            async with http.get(f"{url}/v1/jobs/{job_id}", headers=headers) as r:
                show("GET /v1/jobs/{id}", await r.json())
            async with http.get(f"{url}/v1/jobs/{job_id}/runtime", headers=headers) as r:
                runtime = await r.json()
            show("GET /v1/jobs/{id}/runtime: log tail", runtime["log_tail"].splitlines())
            if runtime["exit_code"] != 0 or not final.is_set():
                raise SystemExit("the demo workload did not succeed")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
