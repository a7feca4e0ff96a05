"""Cost of the per-request and per-scrape provider pieces: API-key checks, /metrics rendering,
GPU allocation, and one NVML collection over 8 fixture GPUs (fake NVML: measures our overhead,
not the driver's). Prints numbers and writes bench/results/provider.json."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node_agent.auth.config import ApiKeyEntry  # noqa: E402
from node_agent.auth.keys import authorize, hash_key  # noqa: E402
from node_agent.config import GpuRequest  # noqa: E402
from node_agent.gpu.assign import GpuAllocator, gpu_run_options  # noqa: E402
from node_agent.gpu.cli import collect_once  # noqa: E402
from node_agent.gpu.config import GpusConfig  # noqa: E402
from node_agent.metrics import AgentMetrics  # noqa: E402
from tests.gpu.fake_nvml import FakeNvml, board  # noqa: E402


def per_call_us(fn: object, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    key = "na_aaaaaaaaaaaa_" + "k" * 43
    keys = {"aaaaaaaaaaaa": ApiKeyEntry(id="aaaaaaaaaaaa", hash=hash_key(key))}
    now = datetime.now(UTC)
    headers = {"Authorization": f"Bearer {key}"}
    boards = [board(name) for name in ("h100-sxm", "l4", "rtx4090", "h100-sxm") * 2]
    for i, b in enumerate(boards):
        b["uuid"] = f"GPU-{i:08d}-0000-4000-8000-000000000000"
    started = time.perf_counter()
    snapshot = asyncio.run(collect_once(GpusConfig(), library=FakeNvml(boards)))
    collect_ms = (time.perf_counter() - started) * 1000
    metrics = AgentMetrics()
    counters = {(f"c{i}", s): 10 for i in range(20) for s in ("success", "failed")}

    def scrape() -> None:
        metrics.observe_capacity(snapshot)
        metrics.observe_jobs(counters, {f"c{i}": 1 for i in range(20)}, 3)
        metrics.render()

    def allocate() -> None:
        allocator = GpuAllocator()
        for i in range(8):
            gpu_run_options(allocator.allocate(f"c{i}", GpuRequest(count=1), snapshot.gpus))

    results = {
        "authorize_valid_key_us": per_call_us(
            lambda: authorize(headers, "jobs:write", now, keys=keys, required=True), 20000
        ),
        "authorize_no_key_open_us": per_call_us(
            lambda: authorize({}, "jobs:write", now, keys=keys, required=False), 20000
        ),
        "metrics_scrape_8_gpus_20_containers_us": per_call_us(scrape, 2000),
        "allocate_8_containers_on_8_gpus_us": per_call_us(allocate, 2000),
        "nvml_first_collection_8_gpus_fake_ms": collect_ms,
    }
    for name, value in results.items():
        print(f"{name:45s} {value:10.1f}")
    out = ROOT / "bench" / "results" / "provider.json"
    out.write_text(json.dumps({"python": sys.version.split()[0], **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
