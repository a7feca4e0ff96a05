"""A reload applies what can change live and names, in its log line and STATUS=, what waits
for a restart (a real daemon, real HTTP)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from structlog.testing import capture_logs

from node_agent.auth.keys import hash_key
from node_agent.config import load_config
from node_agent.daemon import Daemon
from tests.conftest import unmanaged_config
from tests.support.net import free_port
from tests.support.service import ProtocolService

KEY = "na_aaaaaaaaaaaa_" + "k" * 43
JOB = {"containers": ["first"], "data": {}}


def write(path: Path, raw: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(raw))


async def test_reload_applies_live_settings_and_names_the_rest(
    services: dict[str, tuple[ProtocolService, str]],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    port = free_port()
    key = {"id": "aaaaaaaaaaaa", "hash": hash_key(KEY), "scopes": ["jobs:read", "jobs:write"]}
    raw = unmanaged_config(
        services,
        server={"port": port, "rate_limit_enabled": False},
        api_keys={"required": False, "keys": [key]},
        jobs={"max_batch_size": 5},
    )
    path = tmp_path / "config.yaml"
    write(path, raw)
    daemon = Daemon(load_config(path), tmp_path / "state", config_path=path)
    await daemon.start()
    root_level = logging.getLogger().level
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        await daemon.containers_ready.wait()
        async with http.get(f"{url}/api/jobs") as resp:
            assert resp.status == 200  # keyless allowed
        assert "restart needed" not in daemon.status_line()

        write(
            path,
            {
                **raw,
                "server": {
                    "port": free_port(),  # restart
                    "rate_limit_enabled": True,  # live
                    "rate_limit": {"num_requests": 2, "period": 60},
                },
                "api_keys": {"required": True, "keys": [key]},  # live
                "jobs": {"max_batch_size": 2},  # live
                "log": {"level": "WARNING"},  # live
                "gpus": {"poll_interval": 1},  # restart
                "chain": {"rpc_url": "http://127.0.0.1:1"},  # restart (chain stays off)
                "sever": {"port": 1},  # a typo: logged, ignored
            },
        )
        with capture_logs() as logs:
            assert await daemon.reload()
        reloaded = next(e for e in logs if e["event"] == "config_reloaded")
        waiting = ["chain.rpc_url", "server.port", "gpus.poll_interval"]
        assert reloaded["restart_needed"] == waiting
        assert set(reloaded["applied"]) == {
            "log.level",
            "server.rate_limit.num_requests",
            "server.rate_limit_enabled",
            "jobs.max_batch_size",
            "api_keys.required",
        }
        typo = next(e for e in logs if e["event"] == "config_unknown_key")
        assert (typo["key"], typo["line"]) == ("sever", typo["line"]) and typo["line"] > 0
        assert daemon.status_line().endswith(
            "restart needed for chain.rpc_url, server.port, gpus.poll_interval"
        )
        assert daemon.config.server.port == port  # still where it listens

        async with http.get(f"{url}/api/jobs") as resp:
            assert resp.status == 401  # api_keys.required, live
        async with http.post(f"{url}/api/jobs/batch", json=[JOB] * 3, headers=auth) as resp:
            assert resp.status == 413  # jobs.max_batch_size, live
        statuses = []
        for _ in range(3):
            async with http.get(f"{url}/api/jobs", headers=auth) as resp:
                statuses.append(resp.status)
        # server.rate_limit, live: 2 per minute on /api/jobs, the keyless 401 above included.
        assert statuses == [200, 429, 429]
        assert logging.getLogger().level == logging.WARNING

        # The file back as it was: nothing waits for a restart any more.
        write(path, raw)
        assert await daemon.reload()
        assert "restart needed" not in daemon.status_line()
        assert daemon.restart_pending == ()
    finally:
        logging.getLogger().setLevel(root_level)
        await daemon.stop()
