"""Thin Docker adapter for workloads: every method is synchronous and runs in a thread (the
SDK blocks); the service decides, this module only does.

Containers carry ``io.node-agent.workload=<job id>`` so that a restarted agent finds its own
and nothing else; the GPU labels of ``gpu.assign`` ride along, so grants are rebuilt too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from node_agent.errors import NodeAgentError
from node_agent.pulls import PullFailed, PullProgress, PullStopped, stream_pull

log = structlog.get_logger(__name__)

LABEL_WORKLOAD = "io.node-agent.workload"
LABEL_OWNER_NODE = "io.node-agent.kind"
# Which node (state directory) owns the container: two agents on one host never adopt or
# remove each other's workloads.
LABEL_NODE = "io.node-agent.node"
NAME_PREFIX = "na-wl-"


class ImageUnavailable(NodeAgentError):
    status = 422
    default_message = "Image unavailable"


class PullCancelled(Exception):
    """The job was cancelled while its image was being pulled."""


@dataclass(frozen=True)
class Found:
    """A labelled workload container as Docker reports it."""

    job_id: str
    container_id: str
    running: bool
    exit_code: int | None
    labels: Mapping[str, str]
    # Created but never started: nothing of the job ran (the agent stopped in between).
    never_started: bool = False


def registry_host(image: str) -> str:
    """The registry an image reference points at (Docker's rule: a first path part with a dot,
    a colon or ``localhost`` is a host; otherwise Docker Hub)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


class WorkloadDocker:
    def __init__(self, client_factory: Callable[[], Any]) -> None:
        self._factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # --- images ------------------------------------------------------------------------------

    def image_present(self, image: str) -> bool:
        import docker.errors

        try:
            self.client.images.get(image)
            return True
        except docker.errors.ImageNotFound:
            return False

    def pull(
        self,
        image: str,
        auth: dict[str, str] | None,
        progress: PullProgress,
        on_event: Callable[[PullProgress], None],
        cancelled: threading.Event,
        deadline: float,
    ) -> None:
        """Pull with per-layer progress; raises ImageUnavailable (with Docker's reason) or
        PullCancelled. The stream is closed on cancel, which stops the transfer."""
        try:
            stream_pull(
                self.client,
                image,
                auth,
                progress,
                stop=cancelled,
                deadline=deadline,
                on_event=on_event,
            )
        except PullFailed as exc:
            raise ImageUnavailable(str(exc)) from None
        except PullStopped:
            raise PullCancelled from None

    # --- containers --------------------------------------------------------------------------

    def create(self, spec: dict[str, Any]) -> str:
        container = self.client.containers.create(**spec)
        return str(container.id)

    def start(self, container_id: str) -> dict[str, int]:
        """Start; returns the published host ports (container port -> host port)."""
        container = self.client.containers.get(container_id)
        container.start()
        container.reload()
        ports: dict[str, int] = {}
        for key, bindings in (container.attrs["NetworkSettings"].get("Ports") or {}).items():
            if bindings:
                ports[key.split("/")[0]] = int(bindings[0]["HostPort"])
        return ports

    def attach(self, container_id: str) -> Any:
        """Open the output stream of a created container *before* it starts, so not a byte
        is missed (attaching to a container that has already exited would wait forever)."""
        return self.client.api.attach(
            container_id, stdout=True, stderr=True, stream=True, logs=True, demux=False
        )

    def copy_output(self, stream: Any, write: Callable[[bytes], None]) -> None:
        """Copy an attached stream to ``write`` until the container exits. Blocking: runs on
        the job's own capture thread."""
        try:
            for chunk in stream:
                write(chunk)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def replay_output(self, container_id: str, write: Callable[[bytes], None]) -> None:
        """After an agent restart: everything the container wrote since it started (from its
        bounded Docker log), then new output until it exits; returns at once if it has."""
        self.copy_output(
            self.client.api.logs(container_id, stdout=True, stderr=True, stream=True, follow=True),
            write,
        )

    def wait(self, container_id: str, timeout: float | None = None) -> int | None:
        """The exit code once the container has stopped (``None`` if Docker has none)."""
        result = self.client.api.wait(container_id, timeout=timeout)
        code = result.get("StatusCode")
        return int(code) if code is not None else None

    def exit_code(self, container_id: str) -> tuple[bool, int | None]:
        """(running, exit code) right now."""
        state = self.client.api.inspect_container(container_id)["State"]
        code = state.get("ExitCode")
        return bool(state.get("Running")), (int(code) if code is not None else None)

    def stop(self, container_id: str, grace: float) -> None:
        """SIGTERM, ``grace`` seconds, SIGKILL (Docker's stop)."""
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.stop(container_id, timeout=int(max(0, grace)))

    def remove(self, container_id: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(container_id, force=True)

    def find_all(self, node_tag: str) -> list[Found]:
        """Every workload container of this node, running or not."""
        found = []
        labels_filter = [LABEL_WORKLOAD, f"{LABEL_NODE}={node_tag}"]
        for c in self.client.api.containers(all=True, filters={"label": labels_filter}):
            labels = c.get("Labels") or {}
            running = c.get("State") == "running"
            exit_code = None
            if not running:
                exit_code = self.exit_code(c["Id"])[1]
            found.append(
                Found(
                    labels[LABEL_WORKLOAD],
                    c["Id"],
                    running,
                    exit_code,
                    labels,
                    never_started=c.get("State") == "created",
                )
            )
        return found
