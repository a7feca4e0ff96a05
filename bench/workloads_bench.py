"""Workloads (``/v1/jobs``) against a real agent and a real Docker engine.

Scenarios (each on a fresh agent, started as ``node-agent run`` with a generated config:
``workloads.max_running: 1``, no GPUs, one API key; image ``node-agent/base:bookworm``):

- ``start``: time from ``POST /v1/jobs`` to the job's command running (the command prints
  ``date +%s.%N`` as its first act) against the same image and command started directly
  (``docker-sdk``: ``containers.create`` + ``start`` through the Docker SDK, the strict
  reference; ``docker-cli``: ``docker run --rm``), interleaved round by round
- ``logs``: a container writing as fast as it can (``python3`` writing 1 MiB blocks of text
  lines) while a client follows ``GET /v1/jobs/{id}/logs/live``: MB/s of decoded output
  received, the agent's peak RSS meanwhile; beside it the ceiling, the same container's
  output read straight from Docker's attach stream by this process, interleaved
- ``queued``: agent RSS before and after 1,000 jobs waiting behind one running job, then all
  cancelled
- ``callbacks``: jobs with a ``callback_url`` on a local aiohttp receiver: latency from the
  status change (the body's ``timestamp``, millisecond precision) to receipt

    python bench/workloads_bench.py                  # everything (~2 minutes)
    python bench/workloads_bench.py --quick          # small sizes (the test runs this)
    python bench/workloads_bench.py --only start,logs

Prints a table and writes ``bench/results/workloads-<ts>.json`` (and ``latest.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import loadgen
import orjson
from aiohttp import web
from run import agent_command, free_port, wait_for

from node_agent.auth.keys import hash_key, new_key
from node_agent.workloads.docker_adapter import NAME_PREFIX

IMAGE = "node-agent/base:bookworm"
SCENARIOS = ("start", "logs", "queued", "callbacks")

# The targets (2-core reference machine).
TARGET_START_OVERHEAD_MS = 50.0
TARGET_LOGS_MB_S = 50.0
TARGET_QUEUED_RSS_MB = 20.0
TARGET_CALLBACK_P50_MS = 20.0

STAMP_SCRIPT = "date +%s.%N"
# 1 MiB of text lines per write, as fast as the pipe takes them. dockerd's cost is per line
# (~400,000 lines/s on the 2-core machine): 62-byte lines cap any Docker consumer near 25 MB/s,
# 1 KiB lines near 140 MB/s (measured with the attach stream alone), so both are run.
WRITER = (
    "import sys\n"
    "line = b'x' * {pad} + b' log line\\n'\n"
    "block = line * (1048576 // len(line))\n"
    "w = sys.stdout.buffer.write\n"
    "for _ in range({blocks}):\n"
    "    w(block)\n"
    "sys.stdout.flush()\n"
)
MB = 1_000_000


def pct(values: list[float], fraction: float) -> float:
    return round(loadgen.percentile(sorted(values), fraction), 2)


def status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (0 when it is gone or unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dockerd_pid() -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == "dockerd":
                    return int(entry)
            except OSError:
                continue
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM (Linux: ``5`` to ``clear_refs``; our own child, so allowed)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Agent:
    url: str
    pid: int
    headers: dict[str, str]
    http: aiohttp.ClientSession
    submitted: list[str]

    def rss_mb(self) -> float:
        return round((status_kb(self.pid, "VmRSS") or 0) / 1024, 1)

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.url}/v1/jobs", json=body, headers=self.headers) as r:
            answer: dict[str, Any] = await r.json()
            if r.status != 201:
                raise RuntimeError(f"submit answered {r.status}: {answer}")
            self.submitted.append(answer["job_id"])
            return answer

    async def job(self, job_id: str, suffix: str = "") -> dict[str, Any]:
        async with self.http.get(f"{self.url}/v1/jobs/{job_id}{suffix}", headers=self.headers) as r:
            answer: dict[str, Any] = await r.json()
            return answer

    async def cancel(self, job_id: str) -> dict[str, Any]:
        url = f"{self.url}/v1/jobs/{job_id}/cancel"
        async with self.http.post(url, headers=self.headers) as r:
            answer: dict[str, Any] = await r.json()
            return answer

    async def wait(
        self, job_id: str, statuses: set[str], timeout: float = 120, every: float = 0.1
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["status"] in statuses:
                return job
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} still {job['status']} after {timeout}s")
            await asyncio.sleep(every)


FINAL = {"succeeded", "failed", "cancelled"}


def draft(script: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "bench",
        "workload_type": "batch",
        "image": IMAGE,
        "command": ["sh", "-c"],
        "args": [script],
        **extra,
    }


@asynccontextmanager
async def running_agent(
    args: argparse.Namespace, workloads: dict[str, Any]
) -> AsyncIterator[Agent]:
    key_id, token = new_key()
    port = free_port()
    config = {
        "server": {"port": port, "rate_limit_enabled": False},
        "manage_containers": False,
        "containers": [],
        "gpus": {"enabled": False},
        "api_keys": {
            "keys": [{"id": key_id, "hash": hash_key(token), "scopes": ["jobs:read", "jobs:write"]}]
        },
        "workloads": {"max_running": 1, "stop_grace": 1, **workloads},
        "log": {"level": "WARNING"},
    }
    with tempfile.TemporaryDirectory(prefix="node-agent-wlbench-") as tmp:
        config_path = Path(tmp) / "config.yaml"
        config_path.write_text(json.dumps(config, indent=2))
        log_path = Path(tmp) / "agent.log"
        command = [*agent_command(args), "run", "--config", str(config_path)]
        command += ["--state-dir", str(Path(tmp) / "state")]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
        url = f"http://127.0.0.1:{port}"
        submitted: list[str] = []
        try:
            await asyncio.to_thread(wait_for, f"{url}/health", 60)
            async with aiohttp.ClientSession() as http:
                headers = {"Authorization": f"Bearer {token}"}
                agent = Agent(url, proc.pid, headers, http, submitted)
                # One job first: code paths, SQLite pages and the Docker client warm.
                warm = await agent.submit(draft("true"))
                await agent.wait(warm["job_id"], FINAL, every=0.05)
                await asyncio.sleep(0.3)
                yield agent
        except BaseException:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            # The agent leaves running workloads running: a bench cut short leaves none behind.
            await asyncio.to_thread(remove_containers, submitted)


def remove_containers(job_ids: list[str]) -> None:
    names = {NAME_PREFIX + job_id for job_id in job_ids}
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name={NAME_PREFIX}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    left = sorted(names.intersection(listed))
    if left:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True, check=False)


# --- start overhead -----------------------------------------------------------------------------


def printed_stamp(output: str) -> float:
    for line in output.splitlines():
        line = line.strip()
        if line:
            return float(line)
    raise RuntimeError(f"no timestamp in the output: {output[:200]!r}")


async def agent_start(agent: Agent) -> float:
    t0 = time.time()
    job = await agent.submit(draft(STAMP_SCRIPT))
    await agent.wait(job["job_id"], FINAL, every=0.05)
    runtime = await agent.job(job["job_id"], "/runtime")
    return (printed_stamp(runtime["log_tail"]) - t0) * 1000


def sdk_start(client: Any) -> float:
    t0 = time.time()
    container = client.containers.create(
        IMAGE, entrypoint=["sh", "-c"], command=[STAMP_SCRIPT], detach=True
    )
    try:
        container.start()
        container.wait()
        output = container.logs().decode()
    finally:
        container.remove(force=True)
    return (printed_stamp(output) - t0) * 1000


def cli_start() -> float:
    t0 = time.time()
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", IMAGE, "-c", STAMP_SCRIPT],
        check=True,
        capture_output=True,
        text=True,
    )
    return (printed_stamp(done.stdout) - t0) * 1000


async def bench_start(args: argparse.Namespace, docker_client: Any) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"agent": [], "docker-sdk": [], "docker-cli": []}
    async with running_agent(args, {}) as agent:
        for number in range(args.start_rounds):
            order = list(samples)
            # Rotate who goes first: the machine's drift must not favour one side.
            order = order[number % 3 :] + order[: number % 3]
            for name in order:
                if name == "agent":
                    samples[name].append(await agent_start(agent))
                elif name == "docker-sdk":
                    samples[name].append(await asyncio.to_thread(sdk_start, docker_client))
                else:
                    samples[name].append(await asyncio.to_thread(cli_start))
                await asyncio.sleep(0.2)
    report: dict[str, Any] = {"rounds": args.start_rounds, "script": STAMP_SCRIPT}
    for name, values in samples.items():
        report[name] = {
            "p50_ms": pct(values, 0.5),
            "p90_ms": pct(values, 0.9),
            "samples_ms": [round(v, 2) for v in values],
        }
    # Per-round differences (the same round's machine state), then their median.
    for ref in ("docker-sdk", "docker-cli"):
        diffs = [a - b for a, b in zip(samples["agent"], samples[ref], strict=True)]
        report[f"overhead_vs_{ref}"] = {
            "p50_diff_ms": round(report["agent"]["p50_ms"] - report[ref]["p50_ms"], 2),
            "p90_diff_ms": round(report["agent"]["p90_ms"] - report[ref]["p90_ms"], 2),
            "median_of_round_diffs_ms": pct(diffs, 0.5),
        }
    return report


# --- logs/live throughput -----------------------------------------------------------------------


async def follow_live(agent: Agent, job_id: str) -> dict[str, Any]:
    """Read the SSE stream, decode every ``log`` event's JSON string; times from the first
    output byte to the ``end`` event."""
    received = 0
    events = 0
    first: float | None = None
    end: dict[str, Any] | None = None
    buffer = bytearray()
    url = f"{agent.url}/v1/jobs/{job_id}/logs/live"
    timeout = aiohttp.ClientTimeout(total=600, sock_read=60)
    async with agent.http.get(url, headers=agent.headers, timeout=timeout) as response:
        if response.status != 200:
            raise RuntimeError(f"logs/live answered {response.status}")
        async for data in response.content.iter_any():
            buffer += data
            start = 0
            while True:
                cut = buffer.find(b"\n\n", start)
                if cut < 0:
                    break
                event = bytes(buffer[start:cut])
                start = cut + 2
                if event.startswith(b"event: log\ndata: "):
                    text: str = orjson.loads(event[17:])
                    if first is None:
                        first = time.perf_counter()
                    received += len(text.encode())
                    events += 1
                elif event.startswith(b"event: end\ndata: "):
                    end = orjson.loads(event[17:])
            del buffer[:start]
            if end is not None:
                break
    last = time.perf_counter()
    seconds = last - first if first is not None else 0.0
    return {
        "received_bytes": received,
        "events": events,
        "seconds": round(seconds, 3),
        "mb_s": round(received / MB / seconds, 1) if seconds else 0.0,
        "end": end,
    }


async def sample_rss(pid: int, stop: asyncio.Event, every: float = 0.02) -> float:
    peak = 0
    while not stop.is_set():
        peak = max(peak, status_kb(pid, "VmRSS") or 0)
        await asyncio.sleep(every)
    return round(peak / 1024, 1)


def writer(blocks: int, line_bytes: int) -> str:
    return WRITER.format(blocks=blocks, pad=line_bytes - 10)


async def agent_logs_round(agent: Agent, blocks: int, line_bytes: int) -> dict[str, Any]:
    script = 'sleep 0.5; exec python3 -c "$W"'
    job = await agent.submit(draft(script, env={"W": writer(blocks, line_bytes)}))
    job_id = job["job_id"]
    await agent.wait(job_id, {"starting", "running", *FINAL}, every=0.01)
    idle = agent.rss_mb()
    hwm_reset = reset_peak_rss(agent.pid)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(agent.pid, stop))
    dockerd = dockerd_pid()
    cpu = cpu_seconds(agent.pid), cpu_seconds(dockerd) if dockerd else 0.0
    result = await follow_live(agent, job_id)
    stop.set()
    if result["seconds"]:
        # CPU over the streaming window (cores): who is busy while the output flows.
        spent = cpu_seconds(agent.pid) - cpu[0], (cpu_seconds(dockerd) - cpu[1]) if dockerd else 0
        result["agent_cpu_cores"] = round(spent[0] / result["seconds"], 2)
        if dockerd:
            result["dockerd_cpu_cores"] = round(spent[1] / result["seconds"], 2)
    result["agent_rss_before_mb"] = idle
    result["agent_rss_peak_sampled_mb"] = await sampler
    if hwm_reset:
        result["agent_rss_hwm_mb"] = round((status_kb(agent.pid, "VmHWM") or 0) / 1024, 1)
    final = await agent.wait(job_id, FINAL)
    result["status"] = final["status"]
    if final.get("started_at") and final.get("finished_at"):
        started = datetime.fromisoformat(final["started_at"]).timestamp()
        finished = datetime.fromisoformat(final["finished_at"]).timestamp()
        # The capture side: all output through the capture thread into the log file.
        result["container_seconds"] = round(finished - started, 3)
    # The agent's own path alone: the finished job's log file through logs/live again.
    replay = await follow_live(agent, job_id)
    result["replay_mb_s"] = replay["mb_s"]
    result["replay_complete"] = replay["received_bytes"] == result["received_bytes"]
    return result


def direct_logs_round(client: Any, blocks: int, line_bytes: int) -> dict[str, Any]:
    """The ceiling: the same container's output read straight from Docker's attach stream."""
    script = 'sleep 0.5; exec python3 -c "$W"'
    container = client.containers.create(
        IMAGE,
        entrypoint=["sh", "-c"],
        command=[script],
        environment={"W": writer(blocks, line_bytes)},
        detach=True,
    )
    try:
        stream = client.api.attach(
            container.id, stdout=True, stderr=True, stream=True, logs=True, demux=False
        )
        container.start()
        received = 0
        chunks = 0
        first: float | None = None
        for chunk in stream:
            if first is None:
                first = time.perf_counter()
            received += len(chunk)
            chunks += 1
        seconds = time.perf_counter() - first if first is not None else 0.0
        container.wait()
    finally:
        container.remove(force=True)
    return {
        "received_bytes": received,
        "chunks": chunks,
        "mean_chunk_bytes": received // max(chunks, 1),
        "seconds": round(seconds, 3),
        "mb_s": round(received / MB / seconds, 1) if seconds else 0.0,
    }


async def bench_logs(
    args: argparse.Namespace, docker_client: Any, line_bytes: int
) -> dict[str, Any]:
    blocks = max(1, args.log_mb)
    rows: list[dict[str, Any]] = []
    # A cap above the output, so every byte is kept and the reader never skips a rotation.
    settings = {"log_max_bytes": max(64 * 1024 * 1024, blocks * 1048576 * 4)}
    async with running_agent(args, settings) as agent:
        for number in range(args.log_rounds):
            agent_row = await agent_logs_round(agent, blocks, line_bytes)
            direct_row = await asyncio.to_thread(
                direct_logs_round, docker_client, blocks, line_bytes
            )
            rows.append({"round": number, "agent": agent_row, "direct": direct_row})
            print(
                f"logs round {number} ({line_bytes}-byte lines): "
                f"agent {agent_row['mb_s']:6.1f} MB/s "
                f"(peak RSS {agent_row['agent_rss_peak_sampled_mb']} MB, "
                f"CPU agent {agent_row.get('agent_cpu_cores')} dockerd "
                f"{agent_row.get('dockerd_cpu_cores')} cores)  "
                f"docker attach {direct_row['mb_s']:6.1f} MB/s  "
                f"replay of the finished log {agent_row['replay_mb_s']:6.1f} MB/s",
                flush=True,
            )
    expected = blocks * (1048576 // line_bytes) * line_bytes
    return {
        "output_bytes": expected,
        "line_bytes": line_bytes,
        "writer": f"python3, 1 MiB blocks of {line_bytes}-byte lines",
        "rounds": rows,
        "agent_mb_s_p50": pct([r["agent"]["mb_s"] for r in rows], 0.5),
        "direct_mb_s_p50": pct([r["direct"]["mb_s"] for r in rows], 0.5),
        "replay_mb_s_p50": pct([r["agent"]["replay_mb_s"] for r in rows], 0.5),
        "agent_rss_before_mb": pct([r["agent"]["agent_rss_before_mb"] for r in rows], 0.5),
        "agent_rss_peak_mb": max(r["agent"]["agent_rss_peak_sampled_mb"] for r in rows),
        "all_bytes_received": all(r["agent"]["received_bytes"] == expected for r in rows),
        # The ``end`` event carries the job's final status (not a moment-early ``running``).
        "end_event_final": all((r["agent"]["end"] or {}).get("status") in FINAL for r in rows),
    }


# --- queued jobs --------------------------------------------------------------------------------


async def gather_limited(count: int, make: Callable[[int], Any], limit: int = 8) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(i: int) -> Any:
        async with semaphore:
            return await make(i)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def bench_queued(args: argparse.Namespace) -> dict[str, Any]:
    count = args.queued
    async with running_agent(args, {"max_queued": max(1000, count + 10)}) as agent:
        blocker = await agent.submit(draft("sleep 3600"))
        await agent.wait(blocker["job_id"], {"running"})
        await asyncio.sleep(1.0)
        before = agent.rss_mb()
        started = time.perf_counter()
        jobs = await gather_limited(count, lambda i: agent.submit(draft("sleep 3600")))
        submit_s = time.perf_counter() - started
        await asyncio.sleep(1.0)
        after = agent.rss_mb()
        # Submissions run eight at a time, so the list's order is not the queue's order: read
        # every job's position and check they are exactly 1..count.
        details = await gather_limited(count, lambda i: agent.job(jobs[i]["job_id"]))
        positions = sorted(int(d.get("queue_position") or 0) for d in details)
        started = time.perf_counter()
        cancelled = await gather_limited(count, lambda i: agent.cancel(jobs[i]["job_id"]))
        cancel_s = time.perf_counter() - started
        await agent.cancel(blocker["job_id"])
        await agent.wait(blocker["job_id"], FINAL)
        await asyncio.sleep(1.0)
        after_cancel = agent.rss_mb()
    return {
        "queued": count,
        "rss_before_mb": before,
        "rss_with_queue_mb": after,
        "rss_delta_mb": round(after - before, 1),
        "rss_after_cancel_mb": after_cancel,
        "last_queue_position": positions[-1],
        "queue_positions_complete": positions == list(range(1, count + 1)),
        "submit_s": round(submit_s, 2),
        "submit_per_s": round(count / submit_s, 1),
        "cancel_s": round(cancel_s, 2),
        "all_cancelled": all(c.get("status") == "cancelled" for c in cancelled),
    }


# --- callbacks ----------------------------------------------------------------------------------


async def bench_callbacks(args: argparse.Namespace) -> dict[str, Any]:
    received: dict[str, list[tuple[str, float, float]]] = {}
    arrived = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        now = time.time()
        body = await request.json()
        stamp = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).timestamp()
        received.setdefault(body["node_job_id"], []).append((body["status"], stamp, now))
        arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/cb", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    callback_url = f"http://127.0.0.1:{port}/cb"
    try:
        async with running_agent(args, {}) as agent:
            for _ in range(args.callback_jobs):
                job = await agent.submit(draft("true", callback_url=callback_url))
                deadline = time.monotonic() + 60
                while not any(s in FINAL for s, _, _ in received.get(job["job_id"], [])):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"no final callback for {job['job_id']}")
                    arrived.clear()
                    await asyncio.wait_for(arrived.wait(), 60)
                await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()
    latencies: dict[str, list[float]] = {"all": []}
    for events in received.values():
        for status, stamp, now in events:
            ms = (now - stamp) * 1000
            latencies["all"].append(ms)
            latencies.setdefault(status, []).append(ms)
    return {
        "jobs": args.callback_jobs,
        "callbacks": len(latencies["all"]),
        "note": "timestamp has millisecond precision (truncated): latencies read up to 1 ms high",
        **{
            name: {"p50_ms": pct(v, 0.5), "p90_ms": pct(v, 0.9), "max_ms": round(max(v), 2)}
            for name, v in latencies.items()
        },
    }


# --- report -------------------------------------------------------------------------------------


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float, at_least: bool) -> None:
        ok = value is not None and (value >= limit if at_least else value <= limit)
        checks.append({"target": name, "value": value, "limit": limit, "ok": ok})

    if "start" in report:
        overhead = report["start"]["overhead_vs_docker-sdk"]["p50_diff_ms"]
        check("start overhead vs docker SDK, p50 (ms)", overhead, TARGET_START_OVERHEAD_MS, False)
    if "logs" in report:
        check("logs/live MB/s (median)", report["logs"]["agent_mb_s_p50"], TARGET_LOGS_MB_S, True)
    if "queued" in report:
        delta = report["queued"]["rss_delta_mb"]
        check("RSS for queued jobs (MB)", delta, TARGET_QUEUED_RSS_MB, False)
    if "callbacks" in report:
        p50 = report["callbacks"]["all"]["p50_ms"]
        check("callback p50 after status change (ms)", p50, TARGET_CALLBACK_P50_MS, False)
    return checks


def print_table(report: dict[str, Any]) -> None:
    print("\n== workloads")
    if "start" in report:
        s = report["start"]
        print(f"start overhead ({s['rounds']} interleaved rounds), POST/run → command running:")
        print(f"  {'':<12} {'p50 ms':>8} {'p90 ms':>8}")
        for name in ("agent", "docker-sdk", "docker-cli"):
            print(f"  {name:<12} {s[name]['p50_ms']:>8} {s[name]['p90_ms']:>8}")
        for ref in ("docker-sdk", "docker-cli"):
            o = s[f"overhead_vs_{ref}"]
            print(
                f"  agent − {ref:<10} p50 {o['p50_diff_ms']:+.1f} ms, p90 {o['p90_diff_ms']:+.1f}"
                f" ms, median of per-round differences {o['median_of_round_diffs_ms']:+.1f} ms"
            )
    for s in report.get("logs_by_line", {}).values():
        print(
            f"logs/live ({s['output_bytes'] / MB:.0f} MB output, {s['line_bytes']}-byte lines):"
            f" agent {s['agent_mb_s_p50']} MB/s"
            f" (median), docker attach directly {s['direct_mb_s_p50']} MB/s, a finished"
            f" job's log replayed {s['replay_mb_s_p50']} MB/s; agent RSS"
            f" {s['agent_rss_before_mb']} MB before, peak {s['agent_rss_peak_mb']} MB;"
            f" every byte received: {s['all_bytes_received']}"
        )
    if "queued" in report:
        s = report["queued"]
        print(
            f"queued: {s['queued']} jobs: RSS {s['rss_before_mb']} → {s['rss_with_queue_mb']} MB"
            f" (+{s['rss_delta_mb']} MB), submitted in {s['submit_s']} s"
            f" ({s['submit_per_s']}/s), cancelled in {s['cancel_s']} s;"
            f" RSS after cancel {s['rss_after_cancel_mb']} MB"
        )
    if "callbacks" in report:
        s = report["callbacks"]
        parts = [
            f"{name} p50 {v['p50_ms']} / p90 {v['p90_ms']} ms"
            for name, v in s.items()
            if isinstance(v, dict)
        ]
        print(f"callbacks ({s['callbacks']} from {s['jobs']} jobs): " + ", ".join(parts))


async def run_all(args: argparse.Namespace, only: list[str]) -> dict[str, Any]:
    import docker

    client = docker.from_env()
    report: dict[str, Any] = {}
    try:
        if "start" in only:
            report["start"] = await bench_start(args, client)
        if "logs" in only:
            sizes = [int(n) for n in args.log_line_bytes.split(",") if n]
            by_line = {str(n): await bench_logs(args, client, n) for n in sizes}
            report["logs_by_line"] = by_line
            report["logs"] = by_line[str(sizes[0])]  # the target is checked on the first
        if "queued" in only:
            report["queued"] = await bench_queued(args)
        if "callbacks" in only:
            report["callbacks"] = await bench_callbacks(args)
    finally:
        client.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--start-rounds", type=int, default=20)
    parser.add_argument("--log-mb", type=int, default=200, help="output per logs round, MiB")
    parser.add_argument("--log-rounds", type=int, default=3)
    parser.add_argument(
        "--log-line-bytes",
        default="1024,62",
        help="line lengths of the logs writer, comma-separated; the target applies to the first",
    )
    parser.add_argument("--queued", type=int, default=1000)
    parser.add_argument("--callback-jobs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--agent-cmd", default=None, help="command that runs node-agent")
    parser.add_argument("--results-dir", default=str(loadgen.RESULTS_DIR))
    args = parser.parse_args(argv)
    if args.quick:
        args.start_rounds, args.log_mb, args.log_rounds = 2, 4, 1
        args.queued, args.callback_jobs = 20, 2
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")

    report = asyncio.run(run_all(args, only))
    report["targets"] = check_targets(report)
    report["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["cpus"] = os.cpu_count()
    report["quick"] = args.quick
    print_table(report)
    print("\n== targets")
    for item in report["targets"]:
        verdict = "ok  " if item["ok"] else "MISS"
        print(f"  {verdict} {item['target']:<42} {item['value']!s:>8}  (limit {item['limit']})")
    path = loadgen.write_results("workloads", report, Path(args.results_dir))
    print(f"wrote {path}")
    return 0 if all(item["ok"] for item in report["targets"]) else loadgen.MISSED_TARGET_EXIT


if __name__ == "__main__":
    sys.exit(main())
