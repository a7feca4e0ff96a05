"""The verdicts and screens of ``status`` and ``doctor``, from documents alone."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account

from node_agent import doctor
from node_agent.config import parse_config
from node_agent.status import Fetched, combined, render, verdict

HEALTHY: dict[str, Any] = {
    "status": "healthy",
    "checks": {"jobs": {"status": "ok", "running": 2, "queued": 1}, "gpus": {"status": "ok"}},
}


def with_check(status: str, **extra: Any) -> dict[str, Any]:
    return {**HEALTHY, "checks": {**HEALTHY["checks"], "gpus": {"status": status, **extra}}}


def test_verdict_takes_the_worst_component() -> None:
    assert verdict(HEALTHY) == "healthy"
    assert verdict(with_check("degraded")) == "degraded"
    assert verdict(with_check("unhealthy")) == "unhealthy"
    assert verdict({"status": "stopping", "checks": {}}) == "unhealthy"
    assert verdict(None) == "unreachable"


def test_render_names_reasons_gpus_containers_and_chain() -> None:
    health = with_check("unhealthy", reasons=["gpu lost"], remedy="reboot")
    info = {
        "agent_version": "0.1.0",
        "version": "1.4.0",
        "services": [{"id": "llm", "state": "running", "restarts": 3, "image": "img:1"}],
        "queues": {"llm": 4},
        "gpus": [
            {
                "inventory": {"index": 0, "name": "H100", "memory_total": 80 * 2**30},
                "telemetry": {"memory_used": 2**30, "util_gpu_pct": 50, "power_draw_w": 300.4},
                "health": "lost",
            }
        ],
        "node": {"facts": {"driver_version": "550.1", "cuda_driver_version": "12.4"}},
        "chain": {"enabled": True, "chain_id": 8453, "head": 10, "synced_block": 8, "lag": 2},
    }
    screen = render("http://n", Fetched(503, health), Fetched(200, info))
    assert "node-agent 0.1.0 (Infernet API 1.4.0) at http://n: unhealthy" in screen
    assert "! gpus: gpu lost" in screen and "remedy: reboot" in screen
    assert "driver 550.1" in screen and "H100" in screen and "1.0/80.0" in screen
    assert "300W" in screen and "lost" in screen
    assert "llm" in screen and "running" in screen and "img:1" in screen
    assert "chain id 8453" in screen and "lag 2" in screen
    assert "jobs: running 2, queued 1" in screen


def test_json_document_keeps_info_errors_apart() -> None:
    doc = combined("http://n", Fetched(200, HEALTHY), Fetched(401, {"error": "x"}, "HTTP 401"))
    assert doc["verdict"] == "healthy" and doc["info"] is None
    assert doc["errors"] == {"info": "HTTP 401"}
    unreachable = render("http://n", Fetched(None, None, "cannot connect"), Fetched(None, None))
    assert "unreachable (cannot connect)" in unreachable


def test_doctor_marks_and_exit_status() -> None:
    checks = [doctor.ok("a", "fine"), doctor.warn("b", "meh", "do x")]
    assert doctor.exit_code(checks) == 0
    assert doctor.render(checks) == "✓ a: fine\n! b: meh\n    → do x\n"
    checks.append(doctor.fail("c", "broken", "fix"))
    assert doctor.exit_code(checks) == 1
    assert json.loads(doctor.to_json(checks))["ok"] is False


def test_docker_runtime_and_cdi() -> None:
    version = {"Version": "27.1", "ApiVersion": "1.46"}
    plain = doctor.docker_checks(version, {"Runtimes": {"runc": {}}}, None)
    assert [c.status for c in plain] == ["ok", "warn"] and "27.1" in plain[0].detail
    nvidia = doctor.docker_checks(version, {"Runtimes": {"nvidia": {}}}, None)
    assert nvidia[1].status == "ok"
    cdi = doctor.docker_checks(version, {"Runtimes": {}, "CDISpecDirs": ["/etc/cdi"]}, None)
    assert cdi[1].status == "ok" and "/etc/cdi" in cdi[1].detail
    down = doctor.docker_checks(None, None, "connection refused")
    assert [c.status for c in down] == ["fail"] and down[0].remedy


def test_nvml_disk_port_and_images() -> None:
    assert doctor.nvml_check(False, None, None, 0, "no lib", "install").status == "warn"
    assert doctor.nvml_check(True, "550", "12.4", 2, "", "").status == "ok"
    assert doctor.disk_check("d", "/x", 5 * 2**30).status == "warn"
    assert doctor.disk_check("d", "/x", 50 * 2**30).status == "ok"
    assert doctor.disk_check("d", "/x", None, "denied").status == "warn"
    assert doctor.port_check("0.0.0.0", 4000, False, False).status == "ok"
    assert doctor.port_check("0.0.0.0", 4000, True, True).status == "ok"
    assert doctor.port_check("0.0.0.0", 4000, True, False).status == "fail"
    images = {"a:1": True, "b:1": False}
    assert [c.status for c in doctor.image_checks(images, True, True)] == ["ok", "warn"]
    assert [c.status for c in doctor.image_checks(images, False, True)] == ["ok", "fail"]
    assert doctor.image_checks(images, False, False)[0].status == "ok"


def test_urls_are_shown_without_their_secrets() -> None:
    url = "https://user:pw@mainnet.example.io:8545/v3/SECRETKEY?token=abc"
    assert doctor.safe_url(url) == "https://mainnet.example.io:8545"
    check = doctor.chain_check(url, None, "timed out")
    assert "SECRETKEY" not in check.detail and "pw" not in check.detail
    assert doctor.grid_check(url, 404, None).status == "ok"


GOOD_KEY = "jg_good_provider_key"
NODE_KEY = "0x" + "11" * 32


class _Rpc(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": "0x2105"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        if self.path.endswith("/v1/nodes/mine"):  # the orchestrator's provider route
            good = self.headers.get("Authorization") == f"Bearer {GOOD_KEY}"
            self.send_response(200 if good else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def rpc_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Rpc)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/key/SECRET"
    finally:
        server.shutdown()
        server.server_close()


def test_chain_and_orchestrator_probes(rpc_url: str) -> None:
    [chain] = doctor._chain_probe(rpc_url)
    assert chain.status == "ok" and "chain id 8453" in chain.detail
    assert "SECRET" not in chain.detail
    [grid] = doctor._grid_probe(rpc_url)
    assert grid.status == "ok" and "HTTP 404" in grid.detail
    [down] = doctor._grid_probe("http://127.0.0.1:1/")
    assert down.status == "fail"


def test_wallet_and_orchestrator_key_verdicts() -> None:
    assert doctor.wallet_check("0xabc", 0, None).status == "warn"
    assert doctor.wallet_check("0xabc", 10**18, None).detail == "0xabc: 1 ETH"
    assert doctor.wallet_check("0xabc", None, "timed out").status == "fail"
    assert doctor.grid_key_check("http://o", 200, None).status == "ok"
    assert doctor.grid_key_check("http://o", 403, None).status == "fail"
    assert doctor.grid_key_check("http://o", 404, None).status == "warn"


def test_wallet_balance_and_key_probes(rpc_url: str) -> None:
    config = parse_config(
        {
            "chain": {
                "enabled": True,
                "rpc_url": rpc_url,
                "registry_address": "0x" + "22" * 20,
                "wallet": {"private_key": NODE_KEY, "payment_address": "0x" + "33" * 20},
            }
        },
        source="test",
    )
    node, payment = doctor._wallet_probe(config)
    address = Account.from_key(NODE_KEY).address
    # the test RPC answers 0x2105 (8453 wei) to every call
    assert node.status == "ok" and node.detail == f"{address}: 8.453e-15 ETH"
    assert payment.status == "ok" and payment.name == "payment wallet"
    assert NODE_KEY[2:] not in repr(node) + repr(payment)
    base = rpc_url.rsplit("/key/", 1)[0]
    reach, key = doctor._grid_probe(base, GOOD_KEY)
    assert reach.status == "ok" and key.status == "ok" and GOOD_KEY not in key.detail
    _, refused = doctor._grid_probe(base, "jg_revoked")
    assert refused.status == "fail" and "refused (HTTP 401)" in refused.detail
