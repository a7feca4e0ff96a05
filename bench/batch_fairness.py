"""Does a large batch block everyone else? ``/health`` latency while 1,000-job batches arrive.

Starts the agent with the echo container (as ``run.py`` does), then:

1. ``idle``: one client polls ``GET /health`` every ``--interval`` seconds for ``--duration``;
2. ``batches``: the same poller while another process posts ``POST /api/jobs/batch`` of
   ``--batch`` jobs to echo in a loop (the next batch as soon as the previous one answered).

Prints p50/p99/max of ``/health`` in both phases, batches/s and the batch answer time, and
writes ``bench/results/batch-fairness-<ts>.json`` (and ``latest.json``). The issue's target:
``/health`` p99 ≤ 20 ms while 1,000-job batches arrive.

    python bench/batch_fairness.py [--batch 1000] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import loadgen
import orjson
import run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def poll_health(url: str, duration: float, interval: float) -> list[float]:
    """Latencies (ms) of ``GET /health`` on one kept-alive connection."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            async with session.get(f"{url}/health") as reply:
                await reply.read()
                assert reply.status == 200, reply.status
            latencies.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(interval)
    return latencies


def post_batches(url: str, size: int, stop: Any, out: Any) -> None:
    """Process body: post batches of ``size`` echo jobs until ``stop`` is set."""

    async def main() -> None:
        body = orjson.dumps([{"containers": ["echo"], "data": {"n": i}} for i in range(size)])
        times: list[float] = []
        accepted = refused = 0
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                began = time.perf_counter()
                async with session.post(
                    f"{url}/api/jobs/batch",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as reply:
                    answer = orjson.loads(await reply.read())
                times.append((time.perf_counter() - began) * 1000)
                accepted += sum(1 for a in answer if "id" in a)
                refused += sum(1 for a in answer if "id" not in a)
        out.put({"batch_ms": times, "accepted": accepted, "refused": refused})

    asyncio.run(main())


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "n": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between polls")
    parser.add_argument("--agent-cmd", default=None)
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--label", default="", help="free text stored with the result")
    parser.add_argument("--results-dir", default=str(loadgen.RESULTS_DIR))
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"batch": args.batch, "duration_s": args.duration}
    report["label"] = args.label
    with (
        tempfile.TemporaryDirectory(prefix="node-agent-fairness-") as tmp,
        run.running_agent(args, Path(tmp)) as (url, _pid, _echo_port),
    ):
        report["idle"] = summary(asyncio.run(poll_health(url, args.duration, args.interval)))
        ctx = multiprocessing.get_context("spawn")
        stop, out = ctx.Event(), ctx.Queue()
        poster = ctx.Process(target=post_batches, args=(url, args.batch, stop, out))
        poster.start()
        time.sleep(1.0)  # the first batches are in flight before the poller starts
        loaded = asyncio.run(poll_health(url, args.duration, args.interval))
        stop.set()
        posted = out.get(timeout=120)
        poster.join(timeout=30)
        report["batches"] = summary(loaded)
        batch_ms = posted["batch_ms"]
        report["batch_answer"] = summary(batch_ms)
        report["batches_per_s"] = round(len(batch_ms) / (args.duration + 1.0), 2)
        report["jobs_accepted"] = posted["accepted"]
        report["jobs_refused"] = posted["refused"]
    print(f"batch of {args.batch}, {args.duration:.0f} s per phase ({args.label})")
    for phase in ("idle", "batches"):
        s = report[phase]
        print(
            f"  /health {phase:8s} n={s['n']:5d} p50 {s['p50_ms']:7.2f} ms"
            f"  p99 {s['p99_ms']:7.2f} ms  max {s['max_ms']:7.2f} ms"
        )
    b = report["batch_answer"]
    print(
        f"  batch answer p50 {b['p50_ms']:.1f} ms p99 {b['p99_ms']:.1f} ms;"
        f" {report['batches_per_s']} batches/s; jobs accepted {report['jobs_accepted']},"
        f" refused {report['jobs_refused']}"
    )
    path = loadgen.write_results("batch-fairness", report, Path(args.results_dir))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
