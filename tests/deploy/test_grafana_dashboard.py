"""The Grafana dashboard in deploy/grafana: well-formed, and every query valid PromQL.

That it only uses series the agent exports is checked against a real agent's scrape in
tests/chain/test_metrics_scrape.py; here each query, with Grafana's variables filled in, is
parsed by promtool (as a recording rule), so a typo in a panel fails the suite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.promtool import run

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "node-agent.json"
# What Grafana puts in place of its variables before it sends a query.
VARIABLES = {"$__rate_interval": "5m", "$instance": ".*"}


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_dashboard_is_well_formed() -> None:
    board = load()
    assert board["uid"] == "node-agent" and board["title"] == "node-agent"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for panel in load()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, replacement in VARIABLES.items():
                expr = expr.replace(name, replacement)
            assert "$" not in expr, expr
            rules.append(
                {"record": f"dashboard:panel_{panel['id']}:{target['refId']}", "expr": expr}
            )
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
