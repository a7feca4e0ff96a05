"""Image pulls with progress, for service containers (at start and on reload) and workloads.

One streaming pull loop feeds a ``PullProgress`` per image; a ``PullBoard`` holds the pulls in
flight and the last few finished ones, which ``/info``, ``STATUS=`` and the log read. A
multi-gigabyte model image takes minutes to pull: without this a provider sees a node that is
"starting" and nothing else.

The loop runs in a thread (the Docker SDK blocks). A registry can stall without closing the
connection, so the caller also waits with a timeout and sets ``stop``; the loop checks ``stop``
and the deadline between events and closes the stream, which ends the transfer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# One progress line per pull at most this often: a 40-layer pull must not flood the journal.
LOG_EVERY_S = 5.0
# Finished pulls kept for /info: enough to see what just happened, bounded for months of uptime.
KEEP_FINISHED = 16
# Layers named in a log line (per-layer bytes); the totals always cover every layer.
LOG_LAYERS = 12


class PullFailed(Exception):
    """The registry or Docker refused the pull; the message is Docker's reason, short."""


class PullStopped(Exception):
    """The caller asked the pull to stop (a cancelled job, a shutdown, a timeout)."""


def split_tag(image: str) -> tuple[str, str | None]:
    """``repo[:tag]`` → (repo, tag); a registry port (``host:5000/x``) is not a tag, and a
    digest reference (``repo@sha256:...``) is pulled as it is."""
    if "@" in image:
        return image, None
    name, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return image, "latest"


def error_text(exc: BaseException) -> str:
    """Docker's own explanation of a failed call (its ``APIError.explanation``), short."""
    explanation = getattr(exc, "explanation", None)
    return (str(explanation or exc) or type(exc).__name__)[:300]


class PullProgress:
    """Per-layer bytes of one pull, fed from Docker's event stream (thread-safe)."""

    def __init__(self, image: str, purpose: str, clock: Callable[[], float] = time.time) -> None:
        self.image = image
        self.purpose = purpose
        self.started = clock()
        self.finished: float | None = None
        self.error: str | None = None
        self._clock = clock
        self._layers: dict[str, tuple[int, int]] = {}
        self._complete: set[str] = set()  # layers downloaded, or already present locally
        self._lock = threading.Lock()
        self.last_logged = 0.0

    def feed(self, event: Mapping[str, Any]) -> None:
        """One decoded event of ``/images/create``: ``Downloading`` carries (current, total);
        ``Pull complete``/``Already exists`` close a layer."""
        layer = event.get("id")
        if not isinstance(layer, str) or not layer:
            return
        detail = event.get("progressDetail") or {}
        with self._lock:
            if isinstance(detail, Mapping) and detail.get("total"):
                if event.get("status") == "Downloading":
                    self._layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
                else:  # "Extracting" reports on the same bytes: the layer is downloaded
                    total = self._layers.get(layer, (0, int(detail["total"])))[1]
                    self._layers[layer] = (total, total)
                    self._complete.add(layer)
            elif event.get("status") in ("Pull complete", "Already exists", "Download complete"):
                total = self._layers.get(layer, (0, 0))[1]
                self._layers[layer] = (total, total)
                self._complete.add(layer)
            elif layer not in self._layers and event.get("status") == "Pulling fs layer":
                self._layers[layer] = (0, 0)

    def finish(self, error: str | None = None) -> None:
        self.finished = self._clock()
        self.error = error

    @property
    def done(self) -> bool:
        return self.finished is not None

    def counts(self) -> dict[str, Any]:
        """Totals over every layer seen so far (a workload's ``pull_progress``)."""
        with self._lock:
            layers = list(self._layers.values())
            complete = len(self._complete)
        body: dict[str, Any] = {
            "layers": len(layers),
            "layers_done": complete,
            "bytes": sum(current for current, _ in layers),
            "total_bytes": sum(total for _, total in layers),
        }
        if self.done:
            body["done"] = True
        return body

    def layer_bytes(self, limit: int = LOG_LAYERS) -> dict[str, list[int]]:
        with self._lock:
            items = list(self._layers.items())[:limit]
        return {layer[:12]: [current, total] for layer, (current, total) in items}

    def describe(self) -> dict[str, Any]:
        body = {"image": self.image, "for": self.purpose, "started": round(self.started, 3)}
        body.update(self.counts())
        if self.finished is not None:
            body["finished"] = round(self.finished, 3)
        if self.error is not None:
            body["error"] = self.error
        return body

    def percent(self) -> int | None:
        counts = self.counts()
        if not counts["total_bytes"]:
            return None
        return min(100, int(100 * counts["bytes"] / counts["total_bytes"]))


class PullBoard:
    """The pulls in flight and the last few finished ones, for /info, STATUS= and the log."""

    def __init__(
        self,
        keep_finished: int = KEEP_FINISHED,
        log_every: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._active: dict[int, PullProgress] = {}
        self._finished: deque[PullProgress] = deque(maxlen=keep_finished)
        self._lock = threading.Lock()
        self._log_every = log_every
        self._clock = clock

    def begin(self, image: str, purpose: str) -> PullProgress:
        progress = PullProgress(image, purpose, self._clock)
        with self._lock:
            self._active[id(progress)] = progress
        log.info("image_pull_started", image=image, purpose=purpose)
        return progress

    def report(self, progress: PullProgress) -> None:
        """Called from the pull thread after each event; logs at most every ``log_every``."""
        now = time.monotonic()
        if now - progress.last_logged < self._log_every:
            return
        layer_bytes = progress.layer_bytes()
        if not layer_bytes:  # the manifest is still being read: nothing to say yet
            return
        progress.last_logged = now
        log.info(
            "image_pull_progress",
            image=progress.image,
            purpose=progress.purpose,
            layer_bytes=layer_bytes,
            **progress.counts(),
        )

    def finish(self, progress: PullProgress, error: str | None = None) -> None:
        progress.finish(error)
        with self._lock:
            self._active.pop(id(progress), None)
            self._finished.append(progress)
        seconds = round((progress.finished or progress.started) - progress.started, 1)
        if error is None:
            log.info("image_pulled", image=progress.image, seconds=seconds, **progress.counts())
        else:
            log.warning("image_pull_failed", image=progress.image, seconds=seconds, error=error)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            active, finished = list(self._active.values()), list(self._finished)
        return {
            "active": [p.describe() for p in active],
            "recent": [p.describe() for p in reversed(finished)],
        }

    def status_text(self) -> str:
        """``pulling a:1 42%, b:2`` for STATUS= (empty when nothing is being pulled)."""
        with self._lock:
            active = list(self._active.values())
        if not active:
            return ""
        parts = []
        for progress in active[:3]:
            percent = progress.percent()
            parts.append(progress.image + (f" {percent}%" if percent is not None else ""))
        more = f" and {len(active) - 3} more" if len(active) > 3 else ""
        return "pulling " + ", ".join(parts) + more


def stream_pull(
    client: Any,
    image: str,
    auth: dict[str, str] | None,
    progress: PullProgress,
    *,
    stop: threading.Event,
    deadline: float,
    on_event: Callable[[PullProgress], None] = lambda _: None,
) -> None:
    """Pull ``image`` through Docker's streaming API (blocking; run it in a thread).

    Raises PullFailed with Docker's reason (an ``error`` event included: the SDK's
    ``images.pull`` hides those) or PullStopped. ``deadline`` is ``time.monotonic()``-based.
    """
    import docker.errors

    repository, tag = split_tag(image)
    try:
        stream: Iterator[dict[str, Any]] = client.api.pull(
            repository, tag=tag, stream=True, decode=True, auth_config=auth
        )
    except docker.errors.APIError as exc:
        raise PullFailed(f"image {image} could not be pulled: {error_text(exc)}") from None
    try:
        for event in stream:
            if stop.is_set():
                raise PullStopped
            if time.monotonic() > deadline:
                raise PullFailed(f"image {image}: pull timed out")
            if "error" in event:
                raise PullFailed(f"image {image} could not be pulled: {event['error']}"[:400])
            progress.feed(event)
            on_event(progress)
    except docker.errors.APIError as exc:
        raise PullFailed(f"image {image} could not be pulled: {error_text(exc)}") from None
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
