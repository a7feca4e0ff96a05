"""Every route as the real infernet-client 1.4.0 calls it (its own code, not a copy)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node_agent.daemon import Daemon
from tests.support.infernet_client import load_node_client


@pytest.fixture(scope="module")
def node_client_cls() -> Any:
    return load_node_client()


async def test_health_info_resources(agent: tuple[Daemon, str], node_client_cls: Any) -> None:
    client = node_client_cls(agent[1])
    assert await client.health() is True
    info = await client.get_info()
    assert info["version"] == "1.4.0"
    assert {c["id"] for c in info["containers"]} >= {"first", "second"}
    assert info["containers"][0] == {
        "id": "first",
        "description": "first service",
        "external": True,
        "image": "",
    }
    assert info["pending"] == {"offchain": 0, "onchain": 0}
    assert info["chain"] == {"enabled": False, "address": ""}
    resources = await client.get_resources()
    assert resources["first"]["service_id"] == "first"
    assert (await client.check_model_support("good"))["first"] == {"supported": True}


async def test_job_and_chain_with_intermediate(
    agent: tuple[Daemon, str], node_client_cls: Any
) -> None:
    client = node_client_cls(agent[1])
    job_id = await client.request_job({"containers": ["first", "second"], "data": {"x": 1}})
    result = await client.get_job_result_sync(job_id)
    assert result["status"] == "success"
    assert result["result"]["container"] == "second"
    assert result["result"]["output"]["input"] == {
        "service": "first",
        "input": {"x": 1},
        "source": 1,
    }
    assert "intermediate_results" not in result
    [full] = await client.get_job_results([job_id], intermediate=True)
    assert full["intermediate_results"] == [
        {"container": "first", "output": {"service": "first", "input": {"x": 1}, "source": 1}}
    ]


async def test_job_visible_immediately_after_post(
    agent: tuple[Daemon, str], node_client_cls: Any
) -> None:
    client = node_client_cls(agent[1])
    job_id = await client.request_job(
        {"containers": ["first"], "data": {"mode": "sleep", "seconds": 0.5}}
    )
    [job] = await client.get_job_results([job_id])
    assert job["status"] == "running"
    assert await client.get_jobs(pending=True) == [job_id]
    done = await client.get_job_result_sync(job_id)
    assert done["status"] == "success"
    assert await client.get_jobs(pending=False) == [job_id]
    assert await client.get_jobs() == [job_id]


async def test_batch_aligned_with_input(agent: tuple[Daemon, str], node_client_cls: Any) -> None:
    client = node_client_cls(agent[1])
    answers = await client.request_jobs(
        [
            {"containers": ["first"], "data": {"n": 1}},
            {"containers": ["missing"], "data": {}},
            {"containers": ["internal"], "data": {}},
            {"containers": ["first"], "data": {"n": 2}},
        ]
    )
    assert "id" in answers[0] and "id" in answers[3]
    assert answers[1] == {"error": "Container not supported", "params": {"container": "missing"}}
    assert answers[2] == {
        "error": "First container must be external",
        "params": {"first_container": "internal"},
    }
    results = await client.get_job_results([answers[0]["id"], answers[3]["id"]])
    assert len(results) == 2


async def test_guardian_errors_reach_client_as_api_errors(
    agent: tuple[Daemon, str], node_client_cls: Any
) -> None:
    client = node_client_cls(agent[1])
    cases = [
        ({"containers": [], "data": {}}, 400, "No containers specified", {}),
        (
            {"containers": ["first"], "data": {}, "requires_proof": True},
            400,
            "Container does not generate proof",
            {"container": "first"},
        ),
        (
            {"containers": ["lan-only"], "data": {}},
            403,
            "Container not allowed for address",
            {"container": "lan-only", "address": "127.0.0.1"},
        ),
    ]
    for job, status, error, params in cases:
        with pytest.raises(Exception) as raised:
            await client.request_job(job)
        exc = raised.value
        assert (exc.status_code, exc.message, exc.params) == (status, error, params), job


async def test_stream_read_as_the_client_reads_it(
    agent: tuple[Daemon, str], node_client_cls: Any
) -> None:
    client = node_client_cls(agent[1])
    chunks = [c async for c in client.request_stream({"containers": ["first"], "data": {"q": 1}})]
    job_id = chunks[0]
    assert isinstance(job_id, str) and len(job_id) == 36
    assert b"".join(chunks[1:]) == b"alpha beta gamma"
    await asyncio.sleep(0.05)
    [job] = await client.get_job_results([job_id])
    assert job["status"] == "success"
    assert job["result"] == {"container": "first", "output": {"output": "alpha beta gamma"}}


async def test_record_status_from_local_peer(
    agent: tuple[Daemon, str], node_client_cls: Any
) -> None:
    client = node_client_cls(agent[1])
    await client.record_status(
        "job-from-elsewhere", "success", {"containers": ["first"], "data": {}}
    )
    [job] = await client.get_job_results(["job-from-elsewhere"])
    assert job["status"] == "success" and job["result"] is None


async def test_delegated_subscription_without_chain(
    agent: tuple[Daemon, str], node_client_cls: Any
) -> None:
    """The body infernet-client sends, r/s as 256-bit ints: a JSON 'Chain not enabled'."""
    client = node_client_cls(agent[1])
    body = delegated_body()
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{agent[1]}/api/jobs", json=body) as resp,
    ):
        assert resp.status == 400
        assert await resp.json() == {"error": "Chain not enabled"}
    assert client is not None


def delegated_body() -> dict[str, Any]:
    zero = "0x" + "0" * 40
    return {
        "subscription": {
            "owner": "0x" + "ab" * 20,
            "active_at": 0,
            "period": 0,
            "frequency": 1,
            "redundancy": 1,
            "containers": "0x" + "11" * 32,
            "lazy": False,
            "verifier": zero,
            "payment_amount": 0,
            "payment_token": zero,
            "wallet": zero,
        },
        "signature": {"nonce": 1, "expiry": 2**32 - 1, "v": 27, "r": 2**255 + 12345, "s": 7},
        "data": {"prompt": "hi"},
    }
