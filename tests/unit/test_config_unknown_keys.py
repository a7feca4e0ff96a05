"""Unknown config keys are named with their line; --strict refuses them; the example has none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node_agent.cli import main
from node_agent.config import Config
from node_agent.configcheck import UnknownKey, find_unknown_keys, unknown_keys

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"

TYPOS = """\
server:
  prot: 4001
  rate_limit: {num_request: 1}
containers:
  - id: a
    image: img
    imgae: other
    env: {ANY_NAME: 1}
    gpu: true
chain:
  wallet:
    privte_key: x
  snapshot_sync: {slep: 1}
workloads:
  callbacks: {timout: 1}
  registries: {ghcr.io: {usrname: u, password: p}}
bogus: 1
"""


def test_every_unknown_key_is_named_with_its_line_and_known_ones_are_not() -> None:
    assert unknown_keys(TYPOS) == [
        UnknownKey("server.prot", 2),
        UnknownKey("server.rate_limit.num_request", 3),
        UnknownKey("containers[0].imgae", 7),
        UnknownKey("chain.wallet.privte_key", 12),
        UnknownKey("chain.snapshot_sync.slep", 13),
        UnknownKey("workloads.callbacks.timout", 15),
        UnknownKey("workloads.registries.ghcr.io.usrname", 16),
        UnknownKey("bogus", 17),
    ]


def test_json_config_too(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "server": {"port": 4000,\n    "prot": 1}\n}\n')
    assert find_unknown_keys(path) == [UnknownKey("server.prot", 3)]
    tabs = tmp_path / "tabs.json"  # JSON PyYAML cannot read: still checked, without lines
    tabs.write_text('{\n\t"server": {"prot": 1}\n}\n')
    assert find_unknown_keys(tabs) == [UnknownKey("server.prot", None)]


def test_check_config_warns_and_strict_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("manage_containers: false\nserver:\n  prot: 4001\n")
    assert main(["check-config", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"warning: {path}:3: unknown key 'server.prot' (ignored)" in err
    assert "OK" in out and "1 unknown keys ignored" in out
    assert main(["check-config", "--strict", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert f"error: {path}:3: unknown key 'server.prot'" in err
    assert "OK" not in out
    path.write_text("manage_containers: false\nserver:\n  port: 4001\n")
    assert main(["check-config", "--strict", "--config", str(path)]) == 0


def test_example_documents_each_section_once_and_only_keys_that_exist() -> None:
    text = EXAMPLE.read_text()
    sections = re.findall(r"^([a-z_]+):", text, flags=re.MULTILINE)
    assert len(sections) == len(set(sections)), sections
    assert set(sections) == set(Config.model_fields)
    assert find_unknown_keys(EXAMPLE) == []
    # Accepted for Infernet configs, but nothing reads it: not documented as if it did.
    assert "sleep:" not in text
