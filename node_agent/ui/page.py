"""The status page's routes and sampler.

``GET /ui`` and its two assets are static files shipped in the package (public: they carry no
data). ``GET /ui/state`` is the one document the page polls: the node's current state, built
from the same readers as ``/info`` and ``/health`` and cached for ``agent.info_cache_seconds``
however many pages are open, plus the samples the page does not have yet (``?since=``). It is
protected exactly like ``/info`` (``auth.keys.INFO_PATHS``). A workload's live log is not
proxied here: the page reads ``/v1/jobs/{id}/logs/live`` with the viewer's own API key, so only
the key that owns a workload can follow its output, as everywhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

import structlog
from aiohttp import web

from node_agent.api.context import NodeContext
from node_agent.api.dispatch import Routes
from node_agent.api.handlers import health_body, info_body
from node_agent.api.responses import json_response
from node_agent.errors import BadRequest, NodeAgentError
from node_agent.gpu.model import GpuState
from node_agent.tasks import run_forever
from node_agent.ui.config import UiConfig
from node_agent.ui.document import compose, gpu_key, job_rows, workload_row
from node_agent.ui.history import Buckets, GpuPoint, History

log = structlog.get_logger(__name__)

STATE_PATH = "/ui/state"
# Sent with the page and its assets: scripts, styles and requests from this origin only.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
ASSETS = {
    "/ui": ("index.html", "text/html"),
    "/ui/app.js": ("app.js", "text/javascript"),
    "/ui/app.css": ("app.css", "text/css"),
}


def load_assets() -> dict[str, tuple[bytes, str, str]]:
    """Path -> (bytes, content type, ETag) of the files in ``node_agent/ui/static``."""
    static = resources.files("node_agent.ui") / "static"
    loaded: dict[str, tuple[bytes, str, str]] = {}
    for path, (name, ctype) in ASSETS.items():
        data = (static / name).read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        loaded[path] = (data, ctype, etag)
    return loaded


def gpu_points(gpus: Sequence[GpuState]) -> dict[str, GpuPoint]:
    """The readings charted per GPU, from the monitor's latest snapshot."""
    points: dict[str, GpuPoint] = {}
    for gpu in gpus:
        tel = gpu.telemetry
        points[gpu_key(gpu.inventory.uuid, gpu.inventory.index)] = GpuPoint(
            util_pct=tel.util_gpu_pct,
            memory_used=tel.memory_used,
            temperature_c=tel.temperature_c,
            power_w=tel.power_draw_w,
        )
    return points


def histogram_buckets(histogram: Any) -> list[tuple[float, float]]:
    """A ``prometheus_client`` histogram's cumulative buckets, summed over its label values
    (the job latency of ``/metrics``, read at each sample: no second record of every job)."""
    sums: dict[float, float] = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                sums[bound] = sums.get(bound, 0.0) + sample.value
    return sorted(sums.items())


def since_arg(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = float(value)
    except ValueError:
        parsed = float("nan")
    if parsed != parsed or parsed in (float("inf"), float("-inf")):
        raise BadRequest("Invalid query parameter", {"param": "since", "value": value[:64]})
    return parsed


class StatusPage:
    def __init__(
        self,
        config: UiConfig,
        ctx: NodeContext,
        *,
        job_counts: Callable[[], Mapping[str, int]],
        gpus: Callable[[], Sequence[GpuState]],
        latency_buckets: Callable[[], Buckets] = list,
        workloads: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.history = History(config.capacity)
        self._job_counts = job_counts
        self._gpus = gpus
        self._latency_buckets = latency_buckets
        self._workloads = workloads  # node_agent.workloads.node.WorkloadNode, when enabled
        self._clock = clock
        self._assets: dict[str, tuple[bytes, str, str]] | None = None
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._building: asyncio.Lock | None = None

    @property
    def poll_seconds(self) -> float:
        """How often the page asks: every sample, within 1..5 s."""
        return min(5.0, max(1.0, self.config.sample_interval))

    def register(self, routes: Routes) -> None:
        routes.add("GET", "/", self.root)
        for path in ASSETS:
            routes.add("GET", path, self.asset)
        routes.add("GET", STATE_PATH, self.state)

    async def open(self) -> None:
        """Read the assets (a thread: files) before the server listens."""
        self._assets = await asyncio.to_thread(load_assets)

    # --- sampling ----------------------------------------------------------------------------

    def sample(self) -> None:
        """One sample of job rates, queue, latency and GPU readings (all read from memory)."""
        now = self._clock()
        counts = self._job_counts()
        self.history.record(
            now,
            completed=counts.get("succeeded", 0) + counts.get("failed", 0),
            running=counts.get("running", 0),
            queued=counts.get("queued", 0),
            latency_buckets=self._latency_buckets(),
            gpus=gpu_points(self._gpus()),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """The sampler: one sample every ``ui.sample_interval`` until ``stop``."""

        async def step() -> None:
            self.sample()

        await run_forever(step, name="ui-sampler", interval=self.config.sample_interval, stop=stop)

    # --- routes ------------------------------------------------------------------------------

    async def root(self, request: web.BaseRequest) -> web.Response:
        """``/`` leads to the page (relative, so it works behind a path-prefixing proxy)."""
        return web.Response(status=302, headers={"Location": "ui", "Cache-Control": "no-cache"})

    async def asset(self, request: web.BaseRequest) -> web.Response:
        if self._assets is None:
            await self.open()
        assert self._assets is not None
        data, ctype, etag = self._assets[request.path]
        headers = {**PAGE_HEADERS, "ETag": etag}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, content_type=ctype, charset="utf-8", headers=headers)

    async def state(self, request: web.BaseRequest) -> web.Response:
        since = since_arg(request.query.get("since"))
        body = dict(await self._current())
        body["history"] = {
            "interval": self.config.sample_interval,
            "window_seconds": self.config.history_seconds,
            "samples": [s.to_wire() for s in self.history.since(since)],
        }
        return json_response(body, headers={"Cache-Control": "no-store"})

    async def _current(self) -> dict[str, Any]:
        """The document less its history, rebuilt at most every ``agent.info_cache_seconds``."""
        if self._building is None:
            self._building = asyncio.Lock()
        async with self._building:  # many open pages: one build, the others share it
            ttl = self.ctx.config.agent.info_cache_seconds
            cached = self._cached
            if cached is not None and self._clock() - cached[0] < ttl:
                return cached[1]
            doc = await self._build()
            self._cached = (self._clock(), doc)
            return doc

    async def _build(self) -> dict[str, Any]:
        ctx = self.ctx
        limit = self.config.recent_jobs
        _, health = health_body(ctx)
        info = info_body(ctx)
        recent: dict[str, Any] = {"items": [], "error": None}
        try:
            if limit:
                recent["items"] = job_rows(await ctx.jobs.store.recent(limit))
        except NodeAgentError as exc:  # the store is down: /health says so too
            recent["error"] = exc.error
        grid = ctx.config.grid
        return compose(
            info=info,
            health=health,
            grid_enabled=grid.enabled,
            grid_url=grid.url,
            chain_configured=ctx.config.chain.enabled,
            recent_jobs=recent,
            workloads=await self._recent_workloads(limit),
            poll_seconds=self.poll_seconds,
            now=self._clock(),
        )

    async def _recent_workloads(self, limit: int) -> dict[str, Any]:
        node = self._workloads
        if node is None:
            return {"enabled": False, "items": [], "error": None}
        service = node.service
        try:
            jobs = await service.store.recent(limit) if limit else []
        except NodeAgentError as exc:
            return {"enabled": True, "items": [], "error": exc.error}
        items = [workload_row(service.wire(service.current(j))) for j in jobs]
        return {"enabled": True, "items": items, "error": None}
