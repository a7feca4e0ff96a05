"""The status page's document, composed from /info's and /health's bodies (pure): what each
panel gets, the empty states, and that no secret survives into it."""

from __future__ import annotations

import json
from typing import Any

from node_agent.ui.document import REDACTED, compose, origin, scrub, scrub_text, workload_row

PRIVATE_KEY = "0x" + "ab" * 32


def doc(info: dict[str, Any], health: dict[str, Any] | None = None, **more: Any) -> Any:
    args: dict[str, Any] = {
        "info": info,
        "health": health or {"status": "healthy", "checks": {}},
        "grid_enabled": False,
        "grid_url": None,
        "recent_jobs": {"items": [], "error": None},
        "workloads": {"enabled": False, "items": [], "error": None},
        "poll_seconds": 5.0,
        "now": 1.0,
        **more,
    }
    return compose(**args)


def test_urls_keep_only_their_origin() -> None:
    assert origin("https://user:pw@rpc.example.org:8545/v3/KEY?apikey=Q") == (
        "https://rpc.example.org:8545"
    )
    assert origin("http://[::1]:9/x") == "http://[::1]:9"
    assert origin("http://host:99999/") == REDACTED  # not a URL Python can read
    assert origin(None) is None and origin("") is None
    text = scrub_text("connect to wss://u:secret@node.example/ws/TOKEN failed; retry")
    assert text == "connect to wss://node.example failed; retry"


def test_key_shaped_text_is_redacted() -> None:
    text = scrub_text(
        f"key {PRIVATE_KEY[2:]} or {PRIVATE_KEY}, na_0123456789ab_{'s' * 43}, "
        f"jg_live_abcdef123456 and Authorization: Bearer tok.en-1"
    )
    assert "ab" * 32 not in text and "s" * 43 not in text
    assert "jg_live" not in text and "tok.en-1" not in text
    assert text.count(REDACTED) == 5
    # Addresses (20 bytes) and UUIDs are not secrets.
    address, uuid = "0x" + "11" * 20, "GPU-5c3a1e2f-8b7d-4c1a-9e21-0a1b2c3d4e5f"
    assert scrub({"a": [address, uuid]}) == {"a": [address, uuid]}


def test_workloads_are_listed_without_what_a_client_put_secrets_in() -> None:
    wire = {
        "job_id": "01a23136-c4f8-78d2-ad5c-7b06e4be1305",
        "name": "train",
        "status": "running",
        "image": "ghcr.io/acme/train:1",
        "command": ["sh", "-c"],
        "args": ["--token=abc"],
        "callback_url": "https://hooks.example/cb?sig=zzz",
        "gpus": [{"index": 0, "uuid": "GPU-1", "family": "h100", "memory_total": 1, "x": 2}],
        "cost_usd": 1.5,
        "queue_position": 2,
    }
    row = workload_row(wire)
    assert row == {
        "job_id": wire["job_id"],
        "name": "train",
        "status": "running",
        "image": "ghcr.io/acme/train:1",
        "queue_position": 2,
        "gpus": [{"index": 0, "uuid": "GPU-1", "family": "h100", "name": None}],
    }


def test_an_empty_node_gives_every_panel_its_empty_state() -> None:
    info = {"version": "1.4.0", "agent_version": "0.1.0", "chain": {"enabled": False}}
    out = doc(info)
    assert out["gpus"] == {
        "monitoring": False,
        "nvml_available": None,
        "health": None,
        "reasons": [],
        "remedy": None,
        "driver_version": None,
        "cuda_driver_version": None,
        "devices": [],
    }
    assert out["chain"] == {"enabled": False}
    assert out["grid"] == {"enabled": False}
    assert out["containers"] == [] and out["jobs"]["queues"] == {}
    assert out["node"] == {
        "agent_version": "0.1.0",
        "infernet_version": "1.4.0",
        "status": "healthy",
        "verdict": "healthy",
    }


def test_a_chain_that_did_not_start_says_why() -> None:
    info = {"chain": {"enabled": False, "address": ""}}
    health = {"status": "healthy", "checks": {"chain": {"status": "unhealthy", "reason": "no key"}}}
    assert doc(info, health, chain_configured=True)["chain"] == {
        "enabled": False,
        "configured": True,
        "reason": "no key",
    }
    assert doc(info, health)["chain"] == {"enabled": False, "address": ""}


def test_panels_come_from_info_and_health_and_are_scrubbed() -> None:
    rpc = "https://user:rpc-pass@rpc.example/v3/infura-key"
    info = {
        "version": "1.4.0",
        "agent_version": "0.1.0",
        "pending": {"offchain": 2, "onchain": 1},
        "queues": {"echo": 3},
        "services": [{"id": "echo", "state": "failed", "reason": f"pull from {rpc} failed"}],
        "chain": {"enabled": True, "head": 10, "last_error": f"rpc {rpc}: {PRIVATE_KEY}"},
        "gpus": [
            {
                "inventory": {"index": 0, "uuid": "GPU-1", "name": "L4", "memory_total": 24},
                "telemetry": {"util_gpu_pct": 7, "memory_used": 3, "power_draw_w": 16.5},
                "health": "healthy",
                "reasons": [],
            }
        ],
        "node": {
            "gpu_monitoring": True,
            "nvml_available": True,
            "health": "healthy",
            "facts": {"driver_version": "570"},
            "grid": {"state": "backing_off", "last_error": f"POST {rpc} refused"},
        },
    }
    health = {"status": "healthy", "checks": {"chain": {"status": "degraded", "reason": rpc}}}
    out = doc(
        info,
        health,
        grid_enabled=True,
        grid_url="https://grid-user:grid-pass@grid.example/api?key=k",
    )
    assert out["jobs"] == {"running_offchain": 2, "pending_onchain": 1, "queues": {"echo": 3}}
    assert out["gpus"]["devices"][0] == {
        "key": "GPU-1",
        "index": 0,
        "uuid": "GPU-1",
        "family": None,
        "name": "L4",
        "health": "healthy",
        "reasons": [],
        "memory_total": 24,
        "power_limit_w": None,
        "util_pct": 7,
        "memory_used": 3,
        "temperature_c": None,
        "power_w": 16.5,
    }
    assert out["grid"]["url"] == "https://grid.example" and out["grid"]["state"] == "backing_off"
    assert out["node"]["verdict"] == "degraded"
    text = json.dumps(out)
    for secret in ("rpc-pass", "infura-key", "grid-pass", "key=k", "ab" * 32):
        assert secret not in text, secret
    assert "https://rpc.example" in out["chain"]["last_error"]
