from __future__ import annotations

import json
from pathlib import Path

import pytest

from node_agent.cli import main
from node_agent.config import load_config, parse_config, resolve_state_dir
from node_agent.errors import ConfigError

INFERNET_CONFIG = {
    "log_path": "infernet_node.log",
    "manage_containers": True,
    "server": {"port": 4000, "rate_limit": {"num_requests": 100, "period": 100}},
    "chain": {
        "enabled": False,
        "trail_head_blocks": 0,
        "rpc_url": "http://127.0.0.1:8545",
        "registry_address": "0x663F3ad617193148711d28f5334eE4Ed07016602",
        "wallet": {"max_gas_limit": 4000000, "private_key": "0x" + "11" * 32},
        "snapshot_sync": {"sleep": 3, "batch_size": 10000, "starting_sub_id": 0},
    },
    "startup_wait": 1.0,
    "docker": {"username": "u", "password": "p"},
    "redis": {"host": "redis", "port": 6379},
    "forward_stats": True,
    "containers": [
        {
            "id": "hello-world",
            "image": "ritualnetwork/hello-world-infernet:latest",
            "external": True,
            "port": "3000",
            "allowed_delegate_addresses": [],
            "allowed_addresses": [],
            "allowed_ips": [],
            "command": "--bind=0.0.0.0:3000 --workers=2",
            "env": {},
            "volumes": [],
            "accepted_payments": {},
            "generates_proofs": False,
        }
    ],
}


def test_existing_infernet_config_json_works(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(INFERNET_CONFIG))
    config = load_config(path)
    assert config.server.rate_limit.num_requests == 100
    assert config.containers[0].port == 3000
    assert config.chain.wallet is not None
    assert "11" * 32 not in repr(config)  # secrets are never shown


def test_errors_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"server": {"port": "many"}}, source="x.yaml")
    assert "server.port" in raised.value.error
    path = tmp_path / "bad.yaml"
    path.write_text("containers:\n  - id: a\n    image: img\n    max_concurrency: 0\n")
    assert main(["check-config", "--config", str(path)]) == 2
    assert "containers.0.max_concurrency" in capsys.readouterr().err


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("0x" + "22" * 32 + "\n")
    monkeypatch.setenv("BEARER_TOKEN", "s3cret")
    config = parse_config(
        {
            "containers": [{"id": "a", "image": "i", "bearer": {"env": "BEARER_TOKEN"}}],
            "chain": {
                "enabled": True,
                "rpc_url": "http://x",
                "registry_address": "0x" + "1" * 40,
                "wallet": {"private_key": {"file": str(key_file)}},
            },
        }
    )
    assert config.containers[0].bearer is not None
    assert config.containers[0].bearer.get_secret_value() == "s3cret"
    assert config.chain.wallet is not None and config.chain.wallet.private_key is not None
    assert config.chain.wallet.private_key.get_secret_value() == "0x" + "22" * 32
    with pytest.raises(ConfigError) as raised:
        parse_config({"containers": [{"id": "a", "image": "i", "bearer": {"env": "NOPE_X"}}]})
    assert "NOPE_X" in raised.value.error


def test_state_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    config = parse_config({"agent": {"state_dir": str(tmp_path / "cfg")}})
    assert resolve_state_dir(config, tmp_path / "cli") == tmp_path / "cli"
    assert resolve_state_dir(config, None) == tmp_path / "cfg"


def test_duplicate_container_ids_refused() -> None:
    with pytest.raises(ConfigError):
        parse_config({"containers": [{"id": "a", "image": "i"}, {"id": "a", "image": "j"}]})
