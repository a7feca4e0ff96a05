"""GET /api/jobs without ids: pages (limit + cursor), and the unpaged form sent page by page."""

from __future__ import annotations

import aiohttp
import pytest

from node_agent.api import handlers
from node_agent.daemon import Daemon


async def test_id_listing_pages_and_streams_the_same_ids(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = agent
    monkeypatch.setattr(handlers, "ID_STREAM_PAGE", 3)  # the unpaged form takes 4 pages
    job = {"containers": ["second"], "data": {}}
    async with http.post(f"{url}/api/jobs/batch", json=[job] * 11) as resp:
        ids = [a["id"] for a in await resp.json()]
    query = "&".join(f"id={i}" for i in ids)
    async with http.get(f"{url}/api/jobs?{query}&wait=10") as resp:
        assert {j["status"] for j in await resp.json()} == {"success"}

    async with http.get(f"{url}/api/jobs") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        assert sorted(await resp.json()) == sorted(ids)
    async with http.get(f"{url}/api/jobs?pending=true") as resp:
        assert await resp.json() == []

    paged: list[str] = []
    cursor = ""
    pages = 0
    while True:
        async with http.get(f"{url}/api/jobs?limit=4{cursor}") as resp:
            assert resp.status == 200
            page = await resp.json()
        paged += page["ids"]
        pages += 1
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert pages == 3 and sorted(paged) == sorted(ids) and len(paged) == 11

    for bad in ("limit=0", "limit=x", "limit=10001", "cursor=%%%", "cursor=bm9wZQ"):
        async with http.get(f"{url}/api/jobs?{bad}") as resp:
            assert resp.status == 400, bad
            assert (await resp.json())["error"] == "Invalid query parameter"
