"""config.example.yaml documents every default truthfully."""

from __future__ import annotations

from pathlib import Path

from node_agent.config import Config, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def test_example_defaults_are_the_real_defaults() -> None:
    example = load_config(EXAMPLE)
    defaults = parse_config(
        {
            "containers": [{"id": "echo", "image": "node-agent/echo:latest"}],
            "chain": {"wallet": {}},  # the example spells out the wallet section's defaults
        }
    )
    assert example.model_dump() == defaults.model_dump()


def test_every_section_is_documented() -> None:
    text = EXAMPLE.read_text()
    for section in Config.model_fields:
        assert f"\n{section}:" in text, section
