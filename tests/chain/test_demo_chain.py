"""`make demo`'s on-chain part (scripts/demo_chain.py) run as the demo runs it: anvil, the
contracts, the real example containers in Docker, node-agent as its own process. Checks what it
prints: the free deliveries, the node's Wallet made by ``node-agent wallet create``, the paid
deliveries each paying the node's Wallet and the fee recipient, and ``node-agent wallet show``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.docker_env import ROOT, ensure_images, remove_containers, unique
from tests.support.net import free_port

pytestmark = [pytest.mark.chain, pytest.mark.docker]

ROW = re.compile(
    r"^\s+(\d+)\s+([\d.]+) ETH\s+\+([\d.]+) ETH\s+\+([\d.]+) ETH\s+([\d.]+) ETH\s+0x[0-9a-f]+…$"
)


def test_the_demo_shows_free_and_paid_subscriptions_and_the_wallet_growing(
    tmp_path: Path,
) -> None:
    ensure_images()
    free, paid = unique("demo-echo"), unique("demo-transform")
    base = tmp_path / "config.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "startup_wait": 30,
                "runtime": {"pull": False},
                "containers": [
                    {"id": free, "image": "node-agent/echo:latest", "port": free_port()},
                    {"id": paid, "image": "node-agent/transform:latest", "port": free_port()},
                ],
            }
        )
    )
    argv = [sys.executable, str(ROOT / "scripts" / "demo_chain.py"), "--config", str(base)]
    argv += ["--port", str(free_port()), "--work", str(tmp_path / "chain")]
    argv += ["--free-container", free, "--paid-container", paid]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=420, cwd=ROOT)
    finally:
        remove_containers([free, paid])
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout

    assert "== delivered to the subscription consumer" in out
    assert "== POST /api/jobs, delegated subscription -> 200" in out
    assert "== node-agent wallet create --json" in out
    assert '"payment_address_valid": true' in out and '"refused": 0' in out

    rows = [m.groups() for line in out.splitlines() if (m := ROW.match(line))]
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    # 0.01 ETH a delivery, FEE 5 % (the Coordinator takes 2 x FEE): 0.009 to the node, 0.001 cut
    assert [r[1] for r in rows] == ["0.009000", "0.018000", "0.027000"]  # the Wallet grows
    assert {r[2] for r in rows} == {"0.009000"} and {r[3] for r in rows} == {"0.001000"}
    assert [r[4] for r in rows] == ["0.020000", "0.010000", "0.000000"]  # the consumer pays

    shown = out.split("== node-agent wallet show", 1)[1]
    assert re.search(r"^\s+ETH\s+27000000000000000\s+0\s+max$", shown, re.M), shown
    withdrawn = out.split("== node-agent wallet withdraw --amount all", 1)[1]
    assert "Withdrew 27000000000000000 ETH" in withdrawn and "0 unlocked, 0 locked" in withdrawn
    assert "59c6995e998f97a5" not in out + done.stderr  # the node key is never printed
