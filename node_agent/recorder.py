"""The events the core reports as they happen, without importing a metrics library.

A latency is only known at the moment a job ends, a container answers or an RPC returns, so
the job service, the pipeline, the chain RPC transport and the chain service call these
methods then. ``node_agent.metrics.AgentMetrics`` implements them with ``prometheus_client``;
this base records nothing, so a component built without metrics (unit tests, ``node-agent
gpus``) needs no registry. Counts that the core keeps anyway (jobs by status, queue depth) are
read at scrape time instead and do not pass through here.
"""

from __future__ import annotations


class Recorder:
    """Every method is a no-op here; each must be cheap and must never raise."""

    def job_finished(self, status: str, seconds: float) -> None:
        """An Infernet job the node ran ended with ``status``, ``seconds`` after it began."""

    def job_refused(self, container: str) -> None:
        """A job was refused (503) because ``container``'s queue was full."""

    def queue_waited(self, container: str, seconds: float) -> None:
        """A job step waited ``seconds`` for one of ``container``'s concurrency slots."""

    def container_called(self, container: str, ok: bool, seconds: float) -> None:
        """One call of a service container (a job step or a delivery's step) ended."""

    def rpc_called(self, method: str, seconds: float) -> None:
        """One JSON-RPC request (``method``, or ``batch``) ended, answered or not."""

    def delivery_finished(self, state: str, blocks: int | None) -> None:
        """An on-chain delivery attempt ended in ``state`` (``node_agent.chain.journal``);
        ``blocks`` from the interval being found open to the delivery being mined, when known."""

    def payment_delivered(self, token: str, amount: int) -> None:
        """A delivery of a paid subscription was confirmed: ``amount`` (its paymentAmount, in
        ``token``'s base units) left the consumer's Wallet for it."""

    def payment_refused(self, code: str) -> None:
        """A paid delivery was refused before computing (``payments.Refusal.code``)."""

    def proof_settled(self, outcome: str) -> None:
        """A proof request of the node's ended ``released`` or ``slashed``."""

    def chain_process_restarted(self) -> None:
        """The chain process died (not stopped by the agent) and a new one was started."""

    def loop_lagged(self, seconds: float) -> None:
        """The event loop ran a timer ``seconds`` late (``node_agent.looplag``)."""


NO_RECORDER = Recorder()
