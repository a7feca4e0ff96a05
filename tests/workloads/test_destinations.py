"""Callbacks never reach blocked networks: the pure rule, the resolver on real lookups, and a
real agent that refuses a literal address at submit and a name that resolves into one at
delivery (the receiver, a real HTTP server, gets nothing)."""

from __future__ import annotations

import ipaddress
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from node_agent.config import parse_config
from node_agent.errors import ConfigError
from node_agent.workloads.destinations import (
    DEFAULT_BLOCKED,
    BlockedDestination,
    GuardedResolver,
    guarded_session,
    is_blocked,
    parse_networks,
)
from tests.support.agent import running_agent
from tests.workloads.support import (
    FINAL,
    Key,
    draft,
    eventually,
    node_config,
    running_receiver,
    wait_status,
)

DEFAULTS = parse_networks(DEFAULT_BLOCKED)
LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("169.254.169.254", True),  # the cloud metadata service
        ("::ffff:169.254.169.254", True),  # the same, IPv4-mapped
        ("fd00:ec2::254", True),
        ("fe80::1", True),
        ("0.0.0.0", True),
        ("239.1.2.3", True),
        ("255.255.255.255", True),
        ("127.0.0.1", False),  # loopback callbacks are part of the orchestrator's protocol
        ("10.1.2.3", False),  # private ranges: the provider's call (blocked_networks)
        ("93.184.216.34", False),
        ("2606:4700::1111", False),
    ],
)
def test_default_blocked_networks(address: str, blocked: bool) -> None:
    assert is_blocked(ipaddress.ip_address(address), DEFAULTS) is blocked


def test_a_bad_network_in_the_config_is_refused() -> None:
    raw = {"workloads": {"callbacks": {"blocked_networks": ["10.0.0.0/8", "not-a-net"]}}}
    with pytest.raises(ConfigError, match="blocked_networks"):
        parse_config(raw)
    ok = parse_config({"workloads": {"callbacks": {"blocked_networks": ["10.0.0.0/8"]}}})
    assert ok.workloads.callbacks.blocked == parse_networks(["10.0.0.0/8"])


async def test_the_resolver_drops_blocked_answers_of_a_real_lookup() -> None:
    allowed = await GuardedResolver(lambda: DEFAULTS).resolve("localhost", 80)
    assert allowed and all(ipaddress.ip_address(a["host"]).is_loopback for a in allowed)
    with pytest.raises(BlockedDestination, match="localhost resolves only to"):
        await GuardedResolver(lambda: LOOPBACK).resolve("localhost", 80)


async def test_a_guarded_session_never_connects_to_a_blocked_address() -> None:
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hook)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    blocked = LOOPBACK
    try:
        async with guarded_session(lambda: blocked) as session:
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await session.get(f"http://localhost:{server.port}/")
            assert isinstance(caught.value.os_error, BlockedDestination)
            blocked = ()  # read per lookup: a reload applies to the next request
            async with session.get(f"http://localhost:{server.port}/") as reply:
                assert reply.status == 200
    finally:
        await server.close()
    assert hits == ["/"]


def outbox_outcomes(state: Path, job_id: str) -> list[tuple[str | None, str | None]]:
    db = sqlite3.connect(f"file:{state / 'workloads.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT outcome, last_error FROM outbox WHERE job_id = ? AND kind = 'callback'",
            (job_id,),
        ).fetchall()
    finally:
        db.close()
    return [(outcome, error) for outcome, error in rows]


@pytest.mark.docker
async def test_an_agent_blocks_callbacks_into_blocked_networks(
    keys: dict[str, Key], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    callbacks = {"blocked_networks": [*DEFAULT_BLOCKED, "127.0.0.0/8", "::1/128"]}
    raw = node_config(list(keys.values()), callbacks=callbacks)
    state = tmp_path / "state"
    alice = keys["alice"]
    async with running_receiver() as (receiver, hook_url), running_agent(raw, state) as (_, url):
        # a literal address in a blocked network: refused at submit, nothing stored
        literal = draft("true", callback_url=hook_url)
        async with http.post(f"{url}/v1/jobs", json=literal, headers=alice.headers) as r:
            assert r.status == 400
            body = await r.json()
        assert body["params"]["field"] == "callback_url"
        assert "network the node does not call" in body["params"]["problem"]
        # a name that resolves into one: accepted, then never called, recorded as failed
        by_name = draft("true", callback_url=hook_url.replace("127.0.0.1", "localhost"))
        async with http.post(f"{url}/v1/jobs", json=by_name, headers=alice.headers) as r:
            assert r.status == 201, await r.text()
            job_id = (await r.json())["job_id"]
        assert (await wait_status(http, url, alice, job_id, FINAL))["status"] == "succeeded"

        async def both_given_up() -> bool:
            outcomes = outbox_outcomes(state, job_id)
            return len(outcomes) == 2 and all(o == "failed" for o, _ in outcomes)

        await eventually(both_given_up, timeout=30, what="callbacks given up at once")
        assert all(
            "resolves only to networks" in (e or "") for _, e in outbox_outcomes(state, job_id)
        )
        assert receiver.calls == []
