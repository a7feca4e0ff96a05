"""A stand-in chain side for tests/chain/test_process.py, built by the chain process itself
(``ChainProcess(factory="tests.chain.standin_chain:StandInChain")``): each delegated request
is an instruction, so a test can drive container runs, cancellations, metrics and logs
across the process boundary without a chain."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from node_agent.chain.runner import JobRunner
from node_agent.config import Config
from node_agent.errors import GuardianRejection
from node_agent.recorder import Recorder

log = structlog.get_logger("tests.standin_chain")


class StandInChain:
    def __init__(self, config: Config, state_dir: Path, runner: JobRunner, recorder: Recorder):
        self.runner = runner
        self.recorder = recorder
        self.runs = 0
        self.accepted = 0
        fail_if = os.environ.get("STANDIN_FAIL_START_IF", "")  # while this file exists
        self.fail_start = bool(os.environ.get("STANDIN_FAIL_START")) or (
            bool(fail_if) and os.path.exists(fail_if)
        )

    @property
    def address(self) -> str:
        return f"0xstandin-{os.getpid()}"

    async def start(self) -> None:
        if self.fail_start:
            raise GuardianRejection("Invalid payment", {"code": "test", "reason": "no start"})

    async def stop(self, grace: float = 10.0) -> None:
        log.info("standin_stopped", grace=grace)

    def status(self) -> dict[str, Any]:
        return {"enabled": True, "runs": self.runs, "accepted": self.accepted, "pid": os.getpid()}

    def health(self) -> dict[str, Any]:
        return {"status": "ok", **self.status()}

    def pending_count(self) -> int:
        return self.accepted

    async def accept_delegated(self, body: Mapping[str, Any], client_ip: str) -> None:
        if body.get("reject"):
            raise GuardianRejection("Invalid signature", {"reason": body["reject"]})
        if "run" in body:  # a container run on the parent's pipeline
            outcome = await self.runner.run(
                ["echo"], body["run"], source=1, destination=0, requires_proof=False
            )
            self.runs += 1
            log.info("standin_ran", outcome=repr(outcome.results), client=client_ip)
        if "warn" in body:
            log.warning("standin_warned", reason=body["warn"])
        if "run_for" in body:  # a run given up after this long (a delivery cancelled)
            try:
                await asyncio.wait_for(
                    self.runner.run(["echo"], {}, source=1, destination=0, requires_proof=False),
                    body["run_for"],
                )
            except TimeoutError:
                log.warning("standin_run_given_up")
        self.recorder.rpc_called("eth_call", 0.25)
        self.accepted += 1
