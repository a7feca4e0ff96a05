"""The pure part of a settings reload: what changed, what applies now, what needs a restart."""

from __future__ import annotations

from typing import Any

from node_agent.config import Config, parse_config
from node_agent.reload import diff_config, effective_config, is_live


def config(**raw: Any) -> Config:
    return parse_config({"manage_containers": False, **raw})


def test_nothing_changed() -> None:
    changes = diff_config(config(), config())
    assert changes.live == () and changes.restart == ()


def test_live_settings_apply_now() -> None:
    new = config(
        log={"level": "DEBUG"},
        server={"rate_limit": {"num_requests": 5}},
        jobs={"retention_count": 500, "max_batch_size": 10},
        api_keys={"required": True},
        containers=[{"id": "a", "url": "http://127.0.0.1:1"}],
    )
    changes = diff_config(config(), new)
    assert changes.restart == ()
    assert changes.live == (
        "containers",
        "log.level",
        "server.rate_limit.num_requests",
        "jobs.retention_count",
        "jobs.max_batch_size",
        "api_keys.required",
    )
    assert effective_config(config(), new, changes) == new


def test_restart_settings_are_named_and_keep_their_running_value() -> None:
    running = config(server={"port": 4000}, chain={"wallet": {"private_key": "0x" + "1" * 64}})
    new = config(
        server={"port": 4100, "host": "127.0.0.1", "rate_limit_enabled": False},
        chain={"rpc_url": "http://rpc", "wallet": {"private_key": "0x" + "2" * 64}},
        gpus={"poll_interval": 1},
        log={"level": "WARNING", "path": "/tmp/agent.log"},
        docker={"username": "u", "password": "p"},
    )
    changes = diff_config(running, new)
    assert changes.restart == (
        "chain.rpc_url",
        "chain.wallet.private_key",  # named, never shown
        "docker",  # a section switched on
        "log.path",
        "server.port",
        "server.host",
        "gpus.poll_interval",
    )
    assert changes.live == ("log.level", "server.rate_limit_enabled")
    effective = effective_config(running, new, changes)
    assert effective.server.port == 4000 and effective.server.host == running.server.host
    assert effective.server.rate_limit_enabled is False  # live: the new value
    assert effective.log.level == "WARNING" and effective.log.path is None
    assert effective.chain == running.chain and effective.docker is None
    assert effective.gpus == running.gpus
    # Compared with the file again (the next reload), the same settings still wait.
    assert diff_config(effective, new).restart == changes.restart
    assert diff_config(effective, new).live == ()


def test_an_unlisted_setting_needs_a_restart() -> None:
    assert is_live("jobs.retention_seconds") and is_live("server.rate_limit.period")
    assert not is_live("jobs.durability") and not is_live("server.rate_limit_x")
    assert not is_live("some_future_section.key")
