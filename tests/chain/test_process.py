"""The chain process: the chain side runs in a child process; container runs cross back to the
parent's pipeline (cancellation included), delegated requests cross over with their errors,
metrics and log events come back to the parent, the API reads published snapshots, and the
child never outlives its parent. A stand-in chain side (tests/chain/standin_chain.py) built by
the child stands in for ChainService; the real one runs through the daemon in
test_daemon_chain.py, test_agent_processes.py and the burst."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from structlog.testing import capture_logs

from node_agent.chain.errors import ChainUnavailable
from node_agent.chain.process import CHAIN_NICE, ChainProcess, Channel
from node_agent.chain.runner import JobRunner
from node_agent.chain.settings import OnchainConfig
from node_agent.config import Config, LogConfig
from node_agent.errors import GuardianRejection
from node_agent.jobs.model import ContainerResult
from node_agent.jobs.pipeline import PipelineOutcome
from node_agent.logging import RENDERED, configure_logging
from node_agent.recorder import Recorder

STANDIN = "tests.chain.standin_chain:StandInChain"
ROOT = Path(__file__).resolve().parents[2]


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@dataclass
class RecordingRunner:
    """The parent's pipeline: records its runs; with ``hang`` a run waits until cancelled."""

    hang: bool = False
    runs: list[Any] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(
        self,
        containers: Sequence[str],
        data: Any,
        *,
        source: int,
        destination: int,
        requires_proof: bool,
    ) -> PipelineOutcome:
        self.runs.append((list(containers), data, os.getpid()))
        if self.hang:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return PipelineOutcome(results=[ContainerResult(containers[-1], output=data)])


class RecordingRecorder(Recorder):
    def __init__(self) -> None:
        self.rpc: list[tuple[str, float]] = []
        self.restarts = 0

    def rpc_called(self, method: str, seconds: float) -> None:
        self.rpc.append((method, seconds))

    def chain_process_restarted(self) -> None:
        self.restarts += 1


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


async def started(
    tmp_path: Path, runner: RecordingRunner, recorder: Recorder | None = None
) -> ChainProcess:
    pipeline = cast(JobRunner, runner)
    chain = ChainProcess(
        Config(), tmp_path, pipeline, recorder or Recorder(), factory=STANDIN, status_every=0.05
    )
    await chain.start()
    return chain


async def test_the_chain_side_runs_in_its_own_process_and_containers_in_the_parent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the child drops lines below the parent's level
    runner, recorder = RecordingRunner(), RecordingRecorder()
    chain = await started(tmp_path, runner, recorder)
    try:
        child = chain.pid
        assert child is not None and child != os.getpid() and alive(child)
        # onchain.process_nice (10): the API and the containers get the CPU first
        niceness = os.getpriority(os.PRIO_PROCESS, child) - os.getpriority(os.PRIO_PROCESS, 0)
        assert niceness == OnchainConfig().process_nice == CHAIN_NICE
        assert chain.address == f"0xstandin-{child}"
        with capture_logs() as logs:
            await chain.accept_delegated({"run": {"x": 1}}, "10.0.0.1")
        # the container ran here, in the parent's pipeline, and its outcome went back
        assert runner.runs == [(["echo"], {"x": 1}, os.getpid())]
        ran = [e for e in logs if e["event"] == "standin_ran"]
        assert ran and ran[0]["client"] == "10.0.0.1" and "'x': 1" in ran[0]["outcome"]
        assert ran[0]["log_level"] == "info"
        # metrics come back to the parent's recorder
        assert recorder.rpc == [("eth_call", 0.25)]
        # the snapshot was published right after the call
        assert chain.status()["runs"] == 1 and chain.pending_count() == 1
        assert chain.health()["status"] == "ok" and chain.status()["pid"] == child
        await eventually(lambda: chain.status()["event_loop"]["samples"] > 0)
    finally:
        await chain.stop(2.0)
    assert not alive(child)
    assert chain.health()["status"] == "ok"  # stopped on purpose: not a dead process


async def test_with_json_logs_the_child_renders_its_lines_and_follows_the_parents_level(
    tmp_path: Path,
) -> None:
    """journald and log files take JSON: the child renders its lines (redacted, the parent's
    format) and the parent only writes them; a reloaded level reaches the child."""
    stream, path = io.StringIO(), tmp_path / "agent.log"
    configure_logging(LogConfig(level="INFO", format="json", path=str(path)), stream=stream)
    structlog.get_logger("tests.parent").info("parent_line", n=1)
    chain = await started(tmp_path, RecordingRunner())
    records: list[logging.LogRecord] = []
    watcher = logging.Handler()
    watcher.emit = records.append  # type: ignore[method-assign,assignment]
    logging.getLogger().addHandler(watcher)  # after the start: the child chose JSON lines
    try:
        secret = "0x" + "ab" * 32  # shaped like a private key
        await chain.accept_delegated({"run": {"key": secret}}, "10.0.0.1")
        chain.set_log_level(logging.WARNING)
        await chain.accept_delegated({"run": {"x": 2}, "warn": "low balance"}, "10.0.0.2")
    finally:
        await chain.stop(2.0)
        logging.getLogger().removeHandler(watcher)
    # rendered in the child: the parent's record carries the finished line
    (ran_record,) = [r for r in records if '"standin_ran"' in r.getMessage()]
    assert json.loads(getattr(ran_record, RENDERED))["event"] == "standin_ran"
    for text in (stream.getvalue(), path.read_text()):
        lines = [json.loads(line) for line in text.splitlines()]
        events = [line["event"] for line in lines]
        # the info line of the second call was dropped in the child: it came after the level
        assert events.count("standin_ran") == 1 and "standin_warned" in events
        assert "standin_stopped" not in events  # info, after the level went to warning
        ran = lines[events.index("standin_ran")]
        assert ran["client"] == "10.0.0.1" and ran["level"] == "info"
        assert ran["logger"] == "tests.standin_chain" and ran["timestamp"].endswith("Z")
        assert secret not in text and "[redacted]" in ran["outcome"]
        parent = lines[events.index("parent_line")]
        assert list(ran)[-3:] == list(parent)[-3:] == ["level", "logger", "timestamp"]
        warned = lines[events.index("standin_warned")]
        assert warned["level"] == "warning" and warned["reason"] == "low balance"


async def test_errors_cross_intact_and_a_given_up_run_is_cancelled_in_the_parent(
    tmp_path: Path,
) -> None:
    runner = RecordingRunner(hang=True)
    chain = await started(tmp_path, runner)
    try:
        with pytest.raises(GuardianRejection) as rejected:
            await chain.accept_delegated({"reject": "bad v"}, "10.0.0.1")
        assert rejected.value.error == "Invalid signature"
        assert rejected.value.params == {"reason": "bad v"}
        await chain.accept_delegated({"run_for": 0.3}, "10.0.0.1")
        await asyncio.wait_for(runner.cancelled.wait(), 10)  # the pipeline run was cancelled
        assert len(runner.runs) == 1
    finally:
        await chain.stop(2.0)


async def test_a_chain_side_that_cannot_start_raises_its_error_and_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_FAIL_START", "1")
    chain = ChainProcess(Config(), tmp_path, cast(JobRunner, RecordingRunner()), factory=STANDIN)
    with pytest.raises(GuardianRejection) as failed:
        await chain.start()
    assert failed.value.params == {"code": "test", "reason": "no start"}
    assert chain.pid is not None and not alive(chain.pid)


async def test_a_chain_process_that_died_is_unhealthy_then_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed (the OOM killer, a crash): calls fail at once while it is down, a new child is
    started once the old one is gone, with a growing delay while starts fail."""
    caplog.set_level(logging.INFO)
    broken = tmp_path / "broken"
    monkeypatch.setenv("STANDIN_FAIL_START_IF", str(broken))
    runner, recorder = RecordingRunner(), RecordingRecorder()
    pipeline = cast(JobRunner, runner)
    chain = ChainProcess(Config(), tmp_path, pipeline, recorder, factory=STANDIN, restart_after=0.3)
    await chain.start()
    first = chain.pid
    assert first is not None
    try:
        with capture_logs() as logs:
            broken.touch()  # the next start fails: the one after waits twice as long
            os.kill(first, signal.SIGKILL)
            await eventually(lambda: chain.health()["status"] == "unhealthy")
            health = chain.health()
            assert health["reason"] == "chain process stopped"
            assert 0 <= health["restart_in_s"] <= 0.3
            with pytest.raises(ChainUnavailable):
                await asyncio.wait_for(chain.accept_delegated({}, "10.0.0.1"), 5)
            failed: list[Any] = []

            def restart_failed() -> bool:
                failed[:] = [e for e in logs if e["event"] == "chain_process_restart_failed"]
                return bool(failed)

            await eventually(restart_failed)
            assert failed[0]["retry_in_s"] == 0.6
            assert chain.health()["status"] == "unhealthy" and not alive(first)
            broken.unlink()
            await eventually(lambda: chain.health()["status"] == "ok")
        ended = [e for e in logs if e["event"] == "chain_process_ended"]
        assert ended[0]["exit_code"] == -signal.SIGKILL and ended[0]["restart_in_s"] == 0.3
        restarted = [e for e in logs if e["event"] == "chain_process_restarted"]
        assert restarted and restarted[0]["pid"] == chain.pid != first
        assert chain.status()["process_restarts"] == 1 and recorder.restarts == 1
        # the new child works: its container runs come to this process's pipeline again
        await chain.accept_delegated({"run": {"x": 2}}, "10.0.0.1")
        assert runner.runs[-1] == (["echo"], {"x": 2}, os.getpid())
    finally:
        await chain.stop(1.0)
    assert chain.pid is not None and not alive(chain.pid)


async def test_a_message_that_fails_to_be_handled_is_logged_and_skipped(tmp_path: Path) -> None:
    """One bad message must not end the reader: that would cut the chain side off."""

    class Feed:
        def __init__(self, messages: list[tuple[Any, ...]]) -> None:
            self.messages = messages

        async def receive(self) -> tuple[Any, ...]:
            if not self.messages:
                raise asyncio.IncompleteReadError(b"", 4)
            return self.messages.pop(0)

    recorder = RecordingRecorder()
    chain = ChainProcess(
        Config(), tmp_path, cast(JobRunner, RecordingRunner()), recorder, factory=STANDIN
    )
    chain._stopping = True  # the feed's end is no death: nothing to start again
    feed = Feed(
        [
            ("rec", "rpc_called", ("eth_call",)),  # an argument short: raises in the handler
            ("rec", "rpc_called", ("eth_call", 0.5)),
            ("status", {"enabled": True}, {"status": "ok"}, 3),
        ]
    )
    with capture_logs() as logs:
        await chain._read_loop(cast(Channel, feed))
    (failed,) = [e for e in logs if e["event"] == "chain_message_failed"]
    assert failed["kind"] == "rec" and "TypeError" in failed["error"]
    assert recorder.rpc == [("eth_call", 0.5)] and chain.pending_count() == 3


PARENT = """
import asyncio, sys
from pathlib import Path
from node_agent.chain.process import CHAIN_NICE, ChainProcess, Channel
from node_agent.chain.settings import OnchainConfig
from node_agent.chain.runner import JobRunner
from node_agent.config import Config
from node_agent.recorder import Recorder

class Runner:
    async def run(self, *args, **kwargs):
        raise RuntimeError("unused")

async def main():
    chain = ChainProcess(Config(), Path(sys.argv[1]), Runner(), Recorder(),
                         factory="tests.chain.standin_chain:StandInChain")
    await chain.start()
    print(chain.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_the_chain_process_dies_with_its_parent_even_by_kill_9(tmp_path: Path) -> None:
    """An orphan chain process could send transactions the next agent does not know of."""
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PARENT,
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert parent.stdout is not None
    child = int(await asyncio.wait_for(parent.stdout.readline(), 60))
    assert alive(child)
    parent.kill()  # SIGKILL: no cleanup runs in the parent
    await parent.wait()
    await eventually(lambda: not alive(child))
