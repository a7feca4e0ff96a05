"""The load generator against a real echo service process (no timing asserted, only accounting)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import loadgen  # noqa: E402


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 0.5) == 50.0
    assert loadgen.percentile(values, 0.99) == 99.0
    assert loadgen.percentile([7.0], 0.9) == 7.0


def test_results_merge_into_latest(tmp_path: Path) -> None:
    loadgen.write_results("a", {"n": 1}, tmp_path)
    loadgen.write_results("b", {"n": 2}, tmp_path)
    loadgen.write_results("a", {"n": 3}, tmp_path)
    assert json.loads((tmp_path / "latest.json").read_text()) == {"a": {"n": 3}, "b": {"n": 2}}
    assert len(list(tmp_path.glob("a-*.json"))) >= 1


@pytest.fixture
def echo_url() -> Iterator[str]:
    """The echo example as a plain process on a free port (the same code as in the image)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1"}
    env["PYTHONPATH"] = str(ROOT / "examples" / "containers" / "common")
    service = ROOT / "examples" / "containers" / "echo" / "service.py"
    process = subprocess.Popen([sys.executable, str(service)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_direct_run_counts_and_writes_results(echo_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "bench" / "loadgen.py"), "--target", "direct",
            "--url", echo_url, "--concurrency", "1,4", "--duration", "0.5", "--warmup", "0.1",
            "--results-dir", str(tmp_path), "--scenario", "t",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "in flight" in done.stdout
    report = json.loads((tmp_path / "latest.json").read_text())["t"]
    assert [row["concurrency"] for row in report["results"]] == [1, 4]
    for row in report["results"]:
        assert row["completed"] > 0 and row["errors"] == 0
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]


def test_agent_mode_counts_refused_submissions_as_errors(echo_url: str, tmp_path: Path) -> None:
    """The echo service is no agent: every POST /api/jobs gets a 404, all counted as errors."""
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "bench" / "loadgen.py"), "--target", "agent",
            "--url", echo_url, "--concurrency", "2", "--duration", "0.3", "--warmup", "0",
            "--results-dir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    row = json.loads((tmp_path / "latest.json").read_text())["agent-echo"]["results"][0]
    assert row["completed"] == 0 and row["errors"] > 0
    assert "404" in row["error_samples"][0]


@pytest.mark.parametrize("results", ["per-job", "batched"])
async def test_agent_mode_reads_every_result(echo_url: str, results: str, tmp_path: Path) -> None:
    """Against a real agent: every submitted job is seen final, with one GET per job or with
    the collectors' shared long-polls (fewer GETs than jobs)."""
    from tests.support.agent import running_agent

    raw = {"manage_containers": False, "containers": [{"id": "echo", "url": echo_url}]}
    async with running_agent(raw, tmp_path / "state") as (_, url):
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "bench" / "loadgen.py"), "--target", "agent",
            "--url", url, "--concurrency", "1,8",
            "--duration", "0.6", "--warmup", "0.1", "--results", results,
            "--results-dir", str(tmp_path), "--scenario", "t",
        )  # fmt: skip
        assert await process.wait() == 0
    report = json.loads((tmp_path / "latest.json").read_text())["t"]
    assert report["results_read"] == results
    for row in report["results"]:
        assert row["completed"] > 0 and row["errors"] == 0, row
    at_8 = report["results"][1]
    if results == "batched":
        assert at_8["polls_per_job"] < 1  # several results per GET
    else:
        assert at_8["polls_per_job"] >= 1


async def test_collector_fails_jobs_past_their_deadline_oldest_first() -> None:
    plan = loadgen.LevelPlan(
        target="agent", url="http://127.0.0.1:9", containers=("echo",), concurrency=1,
        duration=1, warmup=0, payload={}, wait=5, request_timeout=2.0, results="batched",
    )  # fmt: skip
    collector = loadgen.ResultCollector(None, plan, loadgen.LevelTally())  # type: ignore[arg-type]
    now = asyncio.get_running_loop().time()
    old, new = collector.expect("old"), collector.expect("new")
    collector._expire(now + 1.0)
    assert not old.done() and not new.done()
    collector.waiting["new"] = (new, now + 10.0)  # expected later than "old"
    collector._expire(now + 3.0)
    with pytest.raises(RuntimeError, match="no final result within 2 s"):
        old.result()
    assert not new.done() and list(collector.waiting) == ["new"]


async def test_a_crashed_collector_fails_every_job_it_holds_and_every_later_one() -> None:
    """A bug in the collector (here: no session, so its first poll raises) must not leave
    workers waiting forever: the jobs it holds fail, and jobs handed to it later fail at once."""
    plan = loadgen.LevelPlan(
        target="agent", url="http://127.0.0.1:9", containers=("echo",), concurrency=1,
        duration=1, warmup=0, payload={}, wait=5, request_timeout=2.0, results="batched",
    )  # fmt: skip
    collector = loadgen.ResultCollector(None, plan, loadgen.LevelTally())  # type: ignore[arg-type]
    held = collector.expect("held")  # session None: the first poll raises AttributeError
    with pytest.raises(AttributeError):
        await collector.run()
    with pytest.raises(RuntimeError, match="collector crashed"):
        held.result()
    later = collector.expect("later")
    with pytest.raises(RuntimeError, match="collector crashed: AttributeError"):
        later.result()
