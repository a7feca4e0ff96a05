"""The Prometheus alert rules in deploy/prometheus: valid, and firing on synthetic series.

``promtool`` (Debian's prometheus package, installed by scripts/setup-test-deps.sh) checks the
rules and runs their unit tests (node-agent-rules.test.yml); see tests.deploy.promtool for what
happens without it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.deploy.promtool import run

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "node-agent-rules.yml"
RULE_TESTS = RULES_DIR / "node-agent-rules.test.yml"


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_rules_pass_promtool_check() -> None:
    result = run("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout
    assert {
        "NodeAgentUnhealthy",
        "NodeAgentGpuLost",
        "NodeAgentGpuXidError",
        "NodeAgentQueueSaturated",
        "NodeAgentChainLagging",
        "NodeAgentDeliveriesFailing",
        "NodeAgentOrchestratorUnreachable",
        "NodeAgentPaymentsRefusedNodeWallet",
        "NodeAgentGasRunningOut",
        "NodeAgentEventLoopStalled",
    } <= set(alert_names())


def test_alerts_fire_on_synthetic_series() -> None:
    result = run("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    tested = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for group in tested
        for case in group["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert len(fired) >= 2 and fired <= set(alert_names())


def test_the_rule_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests can fail: with the GPU rule reading the wrong value they do."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    text = RULES.read_text()
    assert text.count("node_agent_gpu_healthy == 0") == 1
    (tmp_path / RULES.name).write_text(
        text.replace("node_agent_gpu_healthy == 0", "node_agent_gpu_healthy < 0")
    )
    result = run("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "NodeAgentGpuLost" in result.stdout + result.stderr
