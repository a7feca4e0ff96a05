"""Load generator for node-agent: sustained job throughput and end-to-end latency.

Two targets:

- ``agent``: every worker submits ``POST /api/jobs`` and then waits until the job is final in
  ``GET /api/jobs``. Latency is submit -> result visible; throughput counts jobs that reached
  status ``success`` per second. How results are read (``--results``):

  - ``per-job``: each worker asks for its own job, ``GET /api/jobs?id=<id>&wait=<s>`` (a
    long-poll extension; when the server ignores ``wait`` it polls every millisecond);
  - ``batched``: a few collectors per load process (``--collectors``, default 2; each job goes
    to the next one in turn) each ask for all of their outstanding jobs at once,
    ``GET /api/jobs?id=a&id=b…&wait=<s>&until=any&pending=false`` (it answers as soon as one
    of them is final, with the final ones only), the way a client with many jobs in flight
    reads results (infernet-client's ``get_job_results(ids)`` takes a list for the same
    reason). Two rather than one so that jobs finishing while one poll travels are picked up
    by the other.
- ``direct``: every worker posts ``/service_output`` to the service container itself — the
  ceiling the agent is compared against.

``--concurrency 1,16,64`` runs one measurement per level (that many requests in flight). Results
are printed as a table and written to ``bench/results/<scenario>-<timestamp>.json``; the newest
result of every scenario is also merged into ``bench/results/latest.json``.

    python bench/loadgen.py --target direct --url http://127.0.0.1:3000 --concurrency 1,16,64
    python bench/loadgen.py --target agent --url http://127.0.0.1:4000 \
        --containers echo,transform,transform --agent-pid 1234
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yarl

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Exit status of a bench that ran to the end but missed a target: not 1, which an uncaught
# exception also gives, so a test of the bench can tell a slow machine from a crash.
MISSED_TARGET_EXIT = 3
FINAL_STATUSES = ("success", "failed")
DEFAULT_PAYLOAD = {"prompt": "hello from the node-agent benchmark"}


@dataclass(frozen=True)
class LevelPlan:
    """One measurement: what one load process does (picklable for worker processes)."""

    target: str
    url: str
    containers: tuple[str, ...]
    concurrency: int
    duration: float
    warmup: float
    payload: Any
    wait: float
    request_timeout: float
    results: str = "per-job"
    collectors: int = 2


@dataclass
class LevelTally:
    """What one load process observed during the measurement window."""

    latencies_ms: list[float] = field(default_factory=list)
    succeeded: int = 0
    failed_jobs: int = 0
    errors: int = 0
    polls: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])

    def merge(self, other: LevelTally) -> None:
        self.latencies_ms.extend(other.latencies_ms)
        self.succeeded += other.succeeded
        self.failed_jobs += other.failed_jobs
        self.errors += other.errors
        self.polls += other.polls
        for sample in other.error_samples:
            if len(self.error_samples) < 5:
                self.error_samples.append(sample)


# --- one operation per target ---------------------------------------------------------------------


async def direct_call(session: aiohttp.ClientSession, plan: LevelPlan, tally: LevelTally) -> bool:
    """POST /service_output as the agent would; True when the service answered 200 JSON."""
    body = {"source": 1, "destination": 1, "data": plan.payload, "requires_proof": False}
    async with session.post(f"{plan.url}/service_output", json=body) as resp:
        text = await resp.read()
        if resp.status != 200:
            tally.error(f"HTTP {resp.status}: {text[:200]!r}")
            return False
        json.loads(text)
    return True


async def submit_job(
    session: aiohttp.ClientSession, plan: LevelPlan, tally: LevelTally
) -> str | None:
    """``POST /api/jobs``; the new job's id, or ``None`` (counted as an error) when refused."""
    body = {"containers": list(plan.containers), "data": plan.payload}
    async with session.post(f"{plan.url}/api/jobs", json=body) as resp:
        reply = await resp.json(content_type=None)
        if resp.status != 200 or not isinstance(reply, dict) or "id" not in reply:
            tally.error(f"submit HTTP {resp.status}: {str(reply)[:200]}")
            return None
    return str(reply["id"])


def succeeded(result: dict[str, Any], tally: LevelTally) -> bool:
    """A final job result: True for success; a failed job is counted with its error."""
    if result.get("status") == "failed":
        tally.failed_jobs += 1
        tally.error(f"job failed: {str(result.get('result'))[:200]}")
        return False
    return True


async def agent_job(session: aiohttp.ClientSession, plan: LevelPlan, tally: LevelTally) -> bool:
    """Submit a job and wait until its result is visible; True when it ended in success."""
    job_id = await submit_job(session, plan, tally)
    if job_id is None:
        return False
    params = {"id": job_id, "wait": str(plan.wait)}
    while True:
        asked = time.perf_counter()
        async with session.get(f"{plan.url}/api/jobs", params=params) as resp:
            results = await resp.json(content_type=None)
        tally.polls += 1
        if resp.status != 200 or not isinstance(results, list):
            tally.error(f"result HTTP {resp.status}: {str(results)[:200]}")
            return False
        status = results[0].get("status") if results else None
        if status in FINAL_STATUSES:
            return succeeded(results[0], tally)
        if time.perf_counter() - asked < plan.wait / 2:
            await asyncio.sleep(0.001)  # the server ignored ``wait``: poll every millisecond


MAX_IDS_PER_POLL = 128  # keeps the request line well under aiohttp's 8 KiB limit


class ResultCollector:
    """Reads the results of all of a load process's outstanding jobs with one long-poll.

    A job still not final ``plan.request_timeout`` seconds after it was expected fails with a
    timeout (checked after every poll, oldest first: cheaper than a timer per job)."""

    def __init__(self, session: aiohttp.ClientSession, plan: LevelPlan, tally: LevelTally) -> None:
        self.session = session
        self.plan = plan
        self.tally = tally
        # job id -> (its future, its deadline); insertion order is deadline order
        self.waiting: dict[str, tuple[asyncio.Future[dict[str, Any]], float]] = {}
        self.wake = asyncio.Event()
        self.crashed: str | None = None

    def expect(self, job_id: str) -> asyncio.Future[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        if self.crashed is not None:  # nobody would ever poll for it
            future.set_exception(RuntimeError(self.crashed))
            return future
        self.waiting[job_id] = (future, loop.time() + self.plan.request_timeout)
        self.wake.set()
        return future

    async def run(self) -> None:
        try:
            await self._poll_forever()
        except Exception as exc:  # whoever waits, now or later, must hear of it, not hang
            self.crashed = f"collector crashed: {type(exc).__name__}: {exc}"
            self._fail(list(self.waiting), self.crashed)
            raise

    async def _poll_forever(self) -> None:
        while True:
            if not self.waiting:
                self.wake.clear()
                await self.wake.wait()
                continue
            ids = list(itertools.islice(self.waiting, MAX_IDS_PER_POLL))
            query = "&".join(f"id={i}" for i in ids)
            # pending=false: only the jobs that are final come back, not all listed ones.
            # The ids are already URL-safe, so the URL is not parsed and requoted per poll.
            url = yarl.URL(
                f"{self.plan.url}/api/jobs?{query}&wait={self.plan.wait}&until=any&pending=false",
                encoded=True,
            )
            try:
                async with self.session.get(url) as resp:
                    results = await resp.json(content_type=None)
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self._fail(ids, f"result poll: {type(exc).__name__}: {exc}")
                continue
            self.tally.polls += 1
            if status != 200 or not isinstance(results, list):
                self._fail(ids, f"result HTTP {status}: {str(results)[:200]}")
                continue
            for result in results:
                if result.get("status") in FINAL_STATUSES:
                    entry = self.waiting.pop(result["id"], None)
                    if entry is not None and not entry[0].done():
                        entry[0].set_result(result)
            self._expire(asyncio.get_running_loop().time())

    def _expire(self, now: float) -> None:
        late = list(itertools.takewhile(lambda i: self.waiting[i][1] <= now, self.waiting))
        self._fail(late, f"no final result within {self.plan.request_timeout:g} s")

    def _fail(self, ids: list[str], text: str) -> None:
        for job_id in ids:
            entry = self.waiting.pop(job_id, None)
            if entry is not None and not entry[0].done():
                entry[0].set_exception(RuntimeError(text))


async def agent_job_batched(
    session: aiohttp.ClientSession,
    plan: LevelPlan,
    tally: LevelTally,
    collectors: Iterator[ResultCollector],
) -> bool:
    """Submit a job; its result arrives through the process's collector."""
    job_id = await submit_job(session, plan, tally)
    if job_id is None:
        return False
    try:
        result = await next(collectors).expect(job_id)
    except RuntimeError as exc:
        tally.error(str(exc))
        return False
    return succeeded(result, tally)


Operation = Callable[[aiohttp.ClientSession, LevelPlan, LevelTally], Coroutine[Any, Any, bool]]


async def run_level_async(plan: LevelPlan) -> LevelTally:
    """Keep ``plan.concurrency`` operations in flight for warmup + duration seconds."""
    tally = LevelTally()
    connector = aiohttp.TCPConnector(limit=0, force_close=False, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=plan.request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        collector_tasks: list[asyncio.Task[None]] = []
        operation: Operation = agent_job if plan.target == "agent" else direct_call
        if plan.target == "agent" and plan.results == "batched":
            collectors = [ResultCollector(session, plan, tally) for _ in range(plan.collectors)]
            collector_tasks = [asyncio.create_task(c.run()) for c in collectors]
            operation = functools.partial(agent_job_batched, collectors=itertools.cycle(collectors))
        start = time.perf_counter()
        window_start = start + plan.warmup
        window_end = window_start + plan.duration

        async def worker() -> None:
            while True:
                began = time.perf_counter()
                if began >= window_end:
                    return
                try:
                    ok = await operation(session, plan, tally)
                except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
                    ok = False
                    if began >= window_start:
                        tally.error(f"{type(exc).__name__}: {exc}")
                    else:
                        await asyncio.sleep(0.01)
                    continue
                ended = time.perf_counter()
                if began >= window_start and ended <= window_end and ok:
                    tally.succeeded += 1
                    tally.latencies_ms.append((ended - began) * 1000.0)

        try:
            await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
        finally:
            for task in collector_tasks:
                task.cancel()
            for task in collector_tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return tally


def run_level(plan: LevelPlan) -> LevelTally:
    """Entry point of one load process (also used in-process when ``--procs 1``)."""
    try:
        import uvloop

        return uvloop.run(run_level_async(plan))
    except ImportError:
        return asyncio.run(run_level_async(plan))


# --- agent memory ---------------------------------------------------------------------------------


def rss_kb(pid: int) -> int | None:
    """VmRSS of a process in KiB (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Samples a process's RSS from a thread while the load runs (the loop stays free)."""

    def __init__(self, pid: int | None, interval: float = 0.2) -> None:
        self._pid = pid
        self._interval = interval
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        if self._pid is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        assert self._pid is not None
        while not self._stop.wait(self._interval):
            value = rss_kb(self._pid)
            if value is not None:
                self._samples.append(value)

    def summary(self) -> dict[str, float] | None:
        if not self._samples:
            return None
        return {
            "max_mb": round(max(self._samples) / 1024, 1),
            "mean_mb": round(sum(self._samples) / len(self._samples) / 1024, 1),
        }


# --- reporting ------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(plan: LevelPlan, tally: LevelTally, rss: dict[str, float] | None) -> dict[str, Any]:
    values = sorted(tally.latencies_ms)
    return {
        "concurrency": plan.concurrency,
        "duration_s": plan.duration,
        "completed": tally.succeeded,
        "failed_jobs": tally.failed_jobs,
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "throughput_per_s": round(tally.succeeded / plan.duration, 1),
        "polls_per_job": round(tally.polls / max(tally.succeeded, 1), 2),
        "latency_ms": {
            "p50": round(percentile(values, 0.50), 3),
            "p90": round(percentile(values, 0.90), 3),
            "p99": round(percentile(values, 0.99), 3),
            "max": round(values[-1], 3) if values else math.nan,
            "mean": round(sum(values) / len(values), 3) if values else math.nan,
        },
        "agent_rss_under_load": rss,
    }


def print_table(scenario: str, rows: list[dict[str, Any]], idle_rss: float | None) -> None:
    print(f"\n== {scenario}" + (f"   (agent RSS idle {idle_rss} MB)" if idle_rss else ""))
    print(
        f"{'in flight':>9} {'ok/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'errors':>7} {'RSS max MB':>10}"
    )
    for row in rows:
        lat = row["latency_ms"]
        rss = row["agent_rss_under_load"]
        print(
            f"{row['concurrency']:>9} {row['throughput_per_s']:>9.1f} {lat['p50']:>8.2f} "
            f"{lat['p90']:>8.2f} {lat['p99']:>8.2f} {row['errors']:>7} "
            f"{(rss['max_mb'] if rss else '-'):>10}"
        )
    for row in rows:
        for sample in row["error_samples"][:2]:
            print(f"   error at {row['concurrency']} in flight: {sample}")


def write_results(scenario: str, report: dict[str, Any], results_dir: Path) -> Path:
    """Write ``<scenario>-<timestamp>.json`` and merge the report into ``latest.json``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"{scenario}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    latest_path = results_dir / "latest.json"
    try:
        latest = json.loads(latest_path.read_text())
        if not isinstance(latest, dict):
            latest = {}
    except (OSError, ValueError):
        latest = {}
    latest[scenario] = report
    tmp = latest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(latest, indent=2, sort_keys=True) + "\n")
    tmp.replace(latest_path)
    return path


# --- command line ---------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    containers = tuple(c for c in args.containers.split(",") if c)
    levels = [int(c) for c in args.concurrency.split(",") if c]
    scenario = args.scenario or f"{args.target}-{'+'.join(containers)}"
    if not args.scenario and args.target == "agent" and args.results == "batched":
        scenario += "-batched"
    payload = json.loads(args.payload) if args.payload else DEFAULT_PAYLOAD
    idle = rss_kb(args.agent_pid) if args.agent_pid else None
    rows = []
    for level in levels:
        procs = max(1, min(args.procs, level))
        plans = [
            LevelPlan(
                target=args.target,
                url=args.url.rstrip("/"),
                containers=containers,
                concurrency=level // procs + (1 if i < level % procs else 0),
                duration=args.duration,
                warmup=args.warmup,
                payload=payload,
                wait=args.wait,
                request_timeout=args.request_timeout,
                results=args.results,
                collectors=args.collectors,
            )
            for i in range(procs)
        ]
        tally = LevelTally()
        with RssSampler(args.agent_pid) as sampler:
            if procs == 1:
                tally = run_level(plans[0])
            else:
                with ProcessPoolExecutor(procs) as pool:
                    for part in pool.map(run_level, plans):
                        tally.merge(part)
        whole = dataclasses.replace(plans[0], concurrency=level)
        rows.append(summarise(whole, tally, sampler.summary()))
    idle_mb = round(idle / 1024, 1) if idle else None
    report = {
        "scenario": scenario,
        "target": args.target,
        "url": args.url,
        "containers": list(containers),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_processes": args.procs,
        "results_read": args.results if args.target == "agent" else None,
        "collectors": args.collectors if args.results == "batched" else None,
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "agent_pid": args.agent_pid,
        "agent_rss_idle_mb": idle_mb,
        "results": rows,
    }
    print_table(scenario, rows, idle_mb)
    if not args.no_write:
        path = write_results(scenario, report, Path(args.results_dir))
        print(f"wrote {path}")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("agent", "direct"), default="agent")
    parser.add_argument("--url", required=True, help="agent base URL, or the container's")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated levels")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per level")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--containers", default="echo", help="agent mode: the container chain")
    parser.add_argument("--payload", default=None, help="JSON for the job's data")
    parser.add_argument("--scenario", default=None, help="name used in the results file")
    parser.add_argument("--agent-pid", type=int, default=None, help="sample this process's RSS")
    parser.add_argument("--wait", type=float, default=5.0, help="long-poll seconds per GET")
    parser.add_argument(
        "--results",
        choices=("per-job", "batched"),
        default="per-job",
        help="agent mode: one GET per job, or collectors long-polling all outstanding jobs",
    )
    parser.add_argument(
        "--collectors", type=int, default=2, help="batched mode: long-polls per load process"
    )
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--procs", type=int, default=1, help="load-generating processes")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = measure(args)
    return 0 if all(row["completed"] > 0 for row in report["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
