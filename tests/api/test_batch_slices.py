"""A large batch is taken in a slice at a time, so other requests are served meanwhile.

How much it helps is measured in bench/batch_fairness.py; here: the loop turns between
slices, and answers stay aligned with the input across slices whatever each entry is."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from node_agent.api import handlers
from node_agent.daemon import Daemon


async def test_a_batch_yields_between_slices_and_stays_aligned(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, url = agent
    monkeypatch.setattr(handlers, "BATCH_SLICE", 8)
    turns = 0
    seen: list[int] = []  # the loop's turn count at each job taken in
    original = daemon.jobs.start

    def start(*args: Any, **kwargs: Any) -> Any:
        seen.append(turns)
        return original(*args, **kwargs)

    monkeypatch.setattr(daemon.jobs, "start", start)

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ok = {"containers": ["second"], "data": {"n": 1}}
    entries: list[Any] = []
    for i in range(40):
        entries.append(ok if i % 5 else {"containers": ["nope"], "data": {}})
    entries[13] = "not a job"
    entries[27] = {"subscription": {}, "signature": {}, "data": {}}  # delegated, malformed
    counting = asyncio.create_task(ticker())
    try:
        async with http.post(f"{url}/api/jobs/batch", json=entries) as resp:
            assert resp.status == 200
            answers = await resp.json()
    finally:
        counting.cancel()
    assert len(answers) == 40
    for i, answer in enumerate(answers):
        if i == 13:
            assert "error" in answer
        elif i == 27:
            assert answer["error"] == "Invalid request body"  # from the delegated path
        elif i % 5 == 0:
            assert answer["error"] == "Container not supported", answer
        else:
            assert set(answer) == {"id"}
    # Jobs of one slice are taken in within one turn; the next slice comes a turn later.
    slices = sorted(set(seen))
    assert len(slices) >= 4, seen
    ids = [a["id"] for a in answers if "id" in a]
    query = "&".join(f"id={i}" for i in ids)
    async with http.get(f"{url}/api/jobs?{query}&wait=10") as resp:
        jobs = await resp.json()
    assert [j["status"] for j in jobs] == ["success"] * len(ids)
