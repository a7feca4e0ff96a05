"""Jobs submitted with an API key belong to the key, not to the address it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from node_agent.auth.keys import hash_key
from tests.conftest import unmanaged_config
from tests.support.agent import running_agent
from tests.support.service import ProtocolService

WRITER = "na_aaaaaaaaaaaa_" + "w" * 43
OTHER_WRITER = "na_cccccccccccc_" + "o" * 43
READER = "na_bbbbbbbbbbbb_" + "r" * 43


def keys_config() -> dict[str, Any]:
    both = ["jobs:read", "jobs:write"]
    return {
        "required": False,  # keyless clients keep Infernet's address namespace
        "keys": [
            {"id": "aaaaaaaaaaaa", "hash": hash_key(WRITER), "scopes": both},
            {"id": "cccccccccccc", "hash": hash_key(OTHER_WRITER), "scopes": both},
            {"id": "bbbbbbbbbbbb", "hash": hash_key(READER), "scopes": ["jobs:read"]},
        ],
    }


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def submit(http: aiohttp.ClientSession, url: str, key: str | None) -> str:
    body = {"containers": ["first"], "data": {"n": 1}}
    async with http.post(f"{url}/api/jobs", json=body, headers=auth(key)) as resp:
        assert resp.status == 200, await resp.text()
        job_id: str = (await resp.json())["id"]
    return job_id


async def listed(http: aiohttp.ClientSession, url: str, key: str | None) -> set[str]:
    async with http.get(f"{url}/api/jobs", headers=auth(key)) as resp:
        assert resp.status == 200, await resp.text()
        return set(await resp.json())


async def fetched(http: aiohttp.ClientSession, url: str, key: str | None, job_id: str) -> list[Any]:
    async with http.get(f"{url}/api/jobs", params={"id": job_id}, headers=auth(key)) as resp:
        assert resp.status == 200, await resp.text()
        result: list[Any] = await resp.json()
    return result


async def test_keys_from_one_address_never_see_each_others_jobs(
    services: dict[str, tuple[ProtocolService, str]],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    raw = unmanaged_config(services, api_keys=keys_config())
    async with running_agent(raw, tmp_path / "state") as (_, url):
        mine = await submit(http, url, WRITER)
        theirs = await submit(http, url, OTHER_WRITER)
        batch_body = [{"containers": ["first"], "data": {"n": 2}}]
        async with http.post(
            f"{url}/api/jobs/batch", json=batch_body, headers=auth(WRITER)
        ) as resp:
            batched = (await resp.json())[0]["id"]
        keyless = await submit(http, url, None)

        # Every client is on 127.0.0.1: only the key separates them.
        assert await listed(http, url, WRITER) == {mine, batched}
        assert await listed(http, url, OTHER_WRITER) == {theirs}
        assert await listed(http, url, READER) == set()
        assert await listed(http, url, None) == {keyless}
        # Asking for another principal's job by id finds nothing either.
        assert await fetched(http, url, READER, mine) == []
        assert await fetched(http, url, None, mine) == []
        assert await fetched(http, url, OTHER_WRITER, mine) == []
        assert [job["id"] for job in await fetched(http, url, WRITER, mine)] == [mine]
        assert [job["id"] for job in await fetched(http, url, None, keyless)] == [keyless]
