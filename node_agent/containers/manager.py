"""Docker adapter: make each configured service container exist, run, and answer.

All Docker SDK calls run in a thread executor (the SDK is synchronous). Containers carry our
labels, so on start they are adopted when their configuration is unchanged and recreated when
it changed (the reference silently keeps stale ones). Ports are published on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from node_agent.config import ContainerConfig, ContainersRuntimeConfig, DockerCredentials
from node_agent.containers.ports import assign_ports
from node_agent.containers.service_client import ServiceClient, ServiceEndpoint
from node_agent.errors import ContainerError
from node_agent.gpu.assign import GpuRunOptions
from node_agent.pulls import PullBoard, stream_pull
from node_agent.tasks import run_in_own_thread

log = structlog.get_logger(__name__)
T = TypeVar("T")

LABEL_MANAGED = "io.node-agent.managed"
LABEL_ID = "io.node-agent.container-id"
LABEL_HASH = "io.node-agent.config-hash"
SERVICE_PORT = "3000/tcp"
# A model image can be tens of GB; a pull that has not finished by then is given up (the local
# copy, if any, is used).
PULL_TIMEOUT_S = 600.0


class ContainerState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"
    DISABLED = "disabled"
    STOPPED = "stopped"


GpuPlanner = Callable[[ContainerConfig], GpuRunOptions]


def basic_gpu_options(config: ContainerConfig) -> GpuRunOptions:
    """GPU options without an inventory: ``gpu: true`` or explicit UUIDs, else no GPU at all."""
    import docker.types

    request = config.gpu
    if request is None:
        return GpuRunOptions(environment={"NVIDIA_VISIBLE_DEVICES": "void"})
    if request.uuids:
        ids = list(request.uuids)
        return GpuRunOptions(
            device_requests=[docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])],
            environment={"NVIDIA_VISIBLE_DEVICES": ",".join(ids)},
        )
    if request.all:
        return GpuRunOptions(
            device_requests=[docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])],
            environment={"NVIDIA_VISIBLE_DEVICES": "all"},
        )
    raise ContainerError(f"container {config.id}: GPU request needs the GPU inventory (NVML)")


@dataclass(slots=True)
class ServiceContainer:
    """A configured container and what the node currently knows about it."""

    config: ContainerConfig
    port: int
    managed: bool
    state: ContainerState = ContainerState.STARTING
    reason: str | None = None
    restarts: int = 0
    next_restart_at: float = 0.0
    image_id: str | None = None
    # The container's own address on its Docker network, when the node talks to it directly.
    address: str | None = None
    endpoint: ServiceEndpoint = field(init=False)

    def __post_init__(self) -> None:
        self._build_endpoint()

    def _build_endpoint(self) -> None:
        bearer = self.config.bearer.get_secret_value() if self.config.bearer else None
        self.endpoint = ServiceEndpoint(
            self.config.id, self.base_url, bearer, timeout=self.config.timeout
        )

    def set_address(self, address: str | None) -> None:
        if address != self.address:
            self.address = address
            self._build_endpoint()

    @property
    def base_url(self) -> str:
        if self.config.url:
            return self.config.url
        if self.address:
            return f"http://{self.address}:{SERVICE_PORT.split('/')[0]}"
        host = "host.docker.internal" if os.environ.get("RUNTIME") == "docker" else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.config.id,
            "description": self.config.description,
            "external": self.config.external,
            "image": self.config.image,
            "state": self.state.value,
            **({"reason": self.reason} if self.reason else {}),
            "restarts": self.restarts,
        }


def config_hash(
    config: ContainerConfig,
    port: int,
    runtime: ContainersRuntimeConfig,
    image_id: str | None,
    gpu: GpuRunOptions,
) -> str:
    """A digest of everything that shapes the container; a change means recreate it."""
    material = {
        "image": config.image,
        "image_id": image_id,
        "command": config.command,
        "env": config.env,
        "port": port,
        "publish_host": runtime.publish_host,
        "network": runtime.network,
        "volumes": list(config.volumes),
        "memory_limit": config.memory_limit,
        "cpus": config.cpus,
        "gpu": {"env": gpu.environment, "labels": gpu.labels},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


class ContainerManager:
    """Owns the service containers: start, readiness, watch/restart, stop, reconfigure."""

    def __init__(
        self,
        configs: Sequence[ContainerConfig],
        *,
        runtime: ContainersRuntimeConfig,
        manage: bool,
        startup_wait: float,
        client: ServiceClient,
        credentials: DockerCredentials | None = None,
        docker_factory: Callable[[], Any] | None = None,
        gpu_planner: GpuPlanner = basic_gpu_options,
        pulls: PullBoard | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pulls = pulls or PullBoard()
        self.runtime = runtime
        self.manage = manage
        self.startup_wait = startup_wait
        self._client = client
        self._credentials = credentials
        self._docker_factory = docker_factory or _docker_from_env
        self._docker: Any = None
        self._gpu_planner = gpu_planner
        self._clock = clock
        self.containers: dict[str, ServiceContainer] = {}
        # Services that are not configured but run as workloads (``workloads.services``):
        # reachable like the others, never created, restarted or stopped by this manager.
        self._dynamic: dict[str, ServiceContainer] = {}
        self._wake = asyncio.Event()
        self._set_configs(configs)

    def _set_configs(self, configs: Sequence[ContainerConfig]) -> None:
        ports = assign_ports([c.port for c in configs])
        current = self.containers
        self.containers = {}
        for config, port in zip(configs, ports, strict=True):
            existing = current.get(config.id)
            if existing is not None and existing.config == config and existing.port == port:
                self.containers[config.id] = existing
            else:
                self.containers[config.id] = ServiceContainer(config, port, managed=self.manage)
        for cid, dynamic in self._dynamic.items():
            self.containers.setdefault(cid, dynamic)

    def add_dynamic(self, config: ContainerConfig) -> ServiceContainer:
        """Serve a running workload as a service container (its URL is on loopback)."""
        container = ServiceContainer(config, 0, managed=False, state=ContainerState.RUNNING)
        self._dynamic[config.id] = container
        self.containers[config.id] = container
        log.info("dynamic_service_added", container=config.id, url=config.url)
        return container

    def remove_dynamic(self, container_id: str) -> None:
        if self._dynamic.pop(container_id, None) is not None:
            self.containers.pop(container_id, None)
            log.info("dynamic_service_removed", container=container_id)

    # --- queries -----------------------------------------------------------------------------

    def endpoint(self, container_id: str) -> ServiceEndpoint:
        container = self.containers.get(container_id)
        if container is None:  # removed by a reload while the job waited for it
            raise ContainerError(f"container {container_id} is no longer configured on this node")
        return container.endpoint

    def running(self) -> list[ServiceContainer]:
        return [c for c in self.containers.values() if c.state is ContainerState.RUNNING]

    def describe(self) -> list[dict[str, Any]]:
        return [c.describe() for c in self.containers.values()]

    def all_ready(self) -> bool:
        return all(
            c.state in (ContainerState.RUNNING, ContainerState.DISABLED)
            for c in self.containers.values()
        )

    def suspect(self, container_id: str) -> None:
        """A job could not reach the container: check it now instead of at the next tick."""
        container = self.containers.get(container_id)
        if container is not None and container.managed:
            self._wake.set()

    # --- docker plumbing ---------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

    async def _docker_client(self) -> Any:
        if self._docker is None:
            self._docker = await self._run(self._docker_factory)
        return self._docker

    async def labels_by_container(self) -> dict[str, dict[str, str]]:
        """Labels of the managed containers Docker has (to rebuild GPU grants on start)."""
        if not self.manage:
            return {}
        client = await self._docker_client()
        found = await self._run(
            client.containers.list, all=True, filters={"label": f"{LABEL_MANAGED}=true"}
        )
        return {c.labels[LABEL_ID]: dict(c.labels) for c in found if LABEL_ID in c.labels}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring every container up concurrently; one container's failure never stops another."""
        if not self.manage:
            for container in self.containers.values():
                container.state = ContainerState.RUNNING
            return
        try:
            await self._docker_client()
        except Exception as exc:
            for container in self.containers.values():
                self._mark(container, ContainerState.FAILED, f"Docker engine unavailable: {exc}")
            return
        await asyncio.gather(*(self._bring_up(c) for c in self.containers.values() if c.managed))

    async def _bring_up(self, container: ServiceContainer) -> None:
        try:
            await self._ensure_container(container)
        except Exception as exc:
            if container.state is not ContainerState.DISABLED:
                self._mark(container, ContainerState.FAILED, str(exc))
            return
        await self._wait_ready(container, self.startup_wait)

    def _mark(self, container: ServiceContainer, state: ContainerState, reason: str | None) -> None:
        if container.state is not state or container.reason != reason:
            level = log.info if state is ContainerState.RUNNING else log.warning
            level(
                "container_state", container=container.config.id, state=state.value, reason=reason
            )
        container.state = state
        container.reason = reason

    async def _ensure_image(self, container: ServiceContainer) -> str:
        """Pull the image (falling back to a local copy) and return its id."""
        client = await self._docker_client()
        image = container.config.image
        if self.runtime.pull:
            try:
                await self._pull(client, image, f"container {container.config.id}")
            except Exception as exc:
                log.warning("image_pull_failed_using_local", image=image, error=str(exc)[:300])
        try:
            local = await self._run(client.images.get, image)
            return str(local.id)
        except Exception:
            self._mark(
                container,
                ContainerState.DISABLED,
                f"image {image} could not be pulled and is not present locally",
            )
            raise ContainerError(f"image {image} unavailable") from None

    async def _pull(self, client: Any, image: str, purpose: str) -> None:
        """Stream the pull in a thread of its own (minutes for a model image: not a slot of
        the shared executor), with its progress on the board; stopped at the deadline."""
        auth = self._credentials.as_auth_config() if self._credentials else None
        progress = self.pulls.begin(image, purpose)
        stop = threading.Event()
        deadline = time.monotonic() + PULL_TIMEOUT_S
        pull = run_in_own_thread(
            lambda: stream_pull(
                client,
                image,
                auth,
                progress,
                stop=stop,
                deadline=deadline,
                on_event=self.pulls.report,
            ),
            name=f"pull-{image}"[:60],
        )
        pull.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            await asyncio.wait_for(asyncio.shield(pull), PULL_TIMEOUT_S)
        except BaseException as exc:
            stop.set()  # a stalled registry, a shutdown: the thread drops the transfer
            self.pulls.finish(progress, str(exc)[:300] or type(exc).__name__)
            raise
        self.pulls.finish(progress)

    async def _ensure_container(self, container: ServiceContainer) -> None:
        import docker.errors

        client = await self._docker_client()
        config = container.config
        container.image_id = await self._ensure_image(container)
        gpu = self._gpu_planner(config)
        digest = config_hash(config, container.port, self.runtime, container.image_id, gpu)
        try:
            existing = await self._run(client.containers.get, config.id)
        except docker.errors.NotFound:
            existing = None
        if existing is not None:
            labels = existing.labels or {}
            if labels.get(LABEL_HASH) == digest:
                if existing.status != "running":
                    await self._run(existing.start)
                log.info("container_adopted", container=config.id)
                await self._learn_address(container)
                return
            reason = "config changed" if labels.get(LABEL_MANAGED) else "not created by node-agent"
            log.info("container_recreating", container=config.id, reason=reason)
            await self._run(existing.remove, force=True)
        await self._create(container, gpu, digest)

    async def _create(self, container: ServiceContainer, gpu: GpuRunOptions, digest: str) -> None:
        client = await self._docker_client()
        config = container.config
        kwargs: dict[str, Any] = {
            "image": config.image,
            "name": config.id,
            "detach": True,
            "environment": {**config.env, **gpu.environment},
            "labels": {
                LABEL_MANAGED: "true",
                LABEL_ID: config.id,
                LABEL_HASH: digest,
                **gpu.labels,
            },
            "ports": {SERVICE_PORT: (self.runtime.publish_host, container.port)},
            # The agent restarts crashed containers itself (with backoff, visible in /info).
            "restart_policy": {"Name": "no"},
        }
        if config.command:
            kwargs["command"] = config.command
        if config.volumes:
            kwargs["volumes"] = list(config.volumes)
        if gpu.device_requests:
            kwargs["device_requests"] = gpu.device_requests
        if config.memory_limit:
            kwargs["mem_limit"] = config.memory_limit
        if config.cpus:
            kwargs["nano_cpus"] = int(config.cpus * 1e9)
        if self.runtime.network:
            kwargs["network"] = self.runtime.network
        await self._run(client.containers.run, **kwargs)
        log.info("container_created", container=config.id, port=container.port)
        await self._learn_address(container)

    async def _learn_address(self, container: ServiceContainer) -> None:
        client = await self._docker_client()
        found = await self._run(client.containers.get, container.config.id)
        container.set_address(self._address_of(found.attrs))

    def _address_of(self, attrs: dict[str, Any]) -> str | None:
        """The container's IP on its network: skips docker-proxy, which costs ~40 % of a
        fast service's throughput and adds latency. ``runtime.connect: published`` opts out."""
        if self.runtime.connect != "bridge":
            return None
        settings = attrs.get("NetworkSettings") or {}
        for network in (settings.get("Networks") or {}).values():
            if network.get("IPAddress"):
                return str(network["IPAddress"])
        return settings.get("IPAddress") or None

    async def _wait_ready(self, container: ServiceContainer, budget: float) -> bool:
        """Probe over HTTP until the service answers or ``budget`` seconds pass."""
        deadline = self._clock() + budget
        while True:
            if await self._client.probe(container.base_url, timeout=1.0):
                self._mark(container, ContainerState.RUNNING, None)
                return True
            if self._clock() >= deadline:
                self._mark(
                    container, ContainerState.STARTING, f"not answering HTTP after {budget:g} s"
                )
                return False
            await asyncio.sleep(0.05)

    # --- watching ----------------------------------------------------------------------------

    async def watch(self, stop: asyncio.Event) -> None:
        """Check every container each ``watch_interval`` (or at once after ``suspect``)."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.check_all()
            except Exception as exc:
                log.warning("container_watch_failed", error=repr(exc))
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait(
                waiters, timeout=self.runtime.watch_interval, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waiters:
                waiter.cancel()

    async def check_all(self) -> None:
        if self.manage:
            await asyncio.gather(*(self._check(c) for c in self.containers.values() if c.managed))

    async def _check(self, container: ServiceContainer) -> None:
        import docker.errors

        if container.state is ContainerState.DISABLED:
            return
        client = await self._docker_client()
        try:
            found = await self._run(client.containers.get, container.config.id)
            status = found.status
        except docker.errors.NotFound:
            found, status = None, "removed"
        if status == "running":
            container.set_address(self._address_of(found.attrs))
            if container.state is not ContainerState.RUNNING:
                await self._wait_ready(container, 1.0)
            elif not await self._client.probe(container.base_url, timeout=1.0):
                self._mark(container, ContainerState.STARTING, "not answering HTTP")
            return
        now = self._clock()
        if container.state is ContainerState.RESTARTING and now < container.next_restart_at:
            return
        delay = min(self.runtime.restart_backoff_max, 2.0 ** min(container.restarts, 10))
        container.restarts += 1
        container.next_restart_at = now + delay
        self._mark(container, ContainerState.RESTARTING, f"container {status}; restarting")
        try:
            if found is None:
                await self._ensure_container(container)
            else:
                await self._run(found.start)
        except Exception as exc:
            self._mark(container, ContainerState.RESTARTING, f"restart failed: {exc}")
            return
        await self._wait_ready(container, min(self.startup_wait, 5.0))

    # --- reconfiguration and shutdown --------------------------------------------------------

    async def apply(self, configs: Sequence[ContainerConfig]) -> None:
        """Move to a new container list: remove dropped ones, (re)create new or changed ones."""
        old = self.containers
        self._set_configs(configs)
        if not self.manage:
            await self.start()
            return
        removed = [c for cid, c in old.items() if cid not in self.containers and c.managed]
        changed = [c for cid, c in self.containers.items() if old.get(cid) is not c]
        await asyncio.gather(*(self._remove(c) for c in removed))
        await asyncio.gather(*(self._bring_up(c) for c in changed))

    async def _remove(self, container: ServiceContainer) -> None:
        import docker.errors

        client = await self._docker_client()
        try:
            found = await self._run(client.containers.get, container.config.id)
            await self._run(found.remove, force=True)
        except docker.errors.NotFound:
            pass
        log.info("container_removed", container=container.config.id)

    async def stop(self) -> None:
        if not self.manage or self._docker is None or not self.runtime.stop_on_shutdown:
            return
        import docker.errors

        async def stop_one(container: ServiceContainer) -> None:
            try:
                found = await self._run(self._docker.containers.get, container.config.id)
                await self._run(found.stop, timeout=int(self.runtime.stop_timeout))
                container.state = ContainerState.STOPPED
            except docker.errors.NotFound:
                pass
            except Exception as exc:
                log.warning("container_stop_failed", container=container.config.id, error=str(exc))

        await asyncio.gather(*(stop_one(c) for c in self.containers.values() if c.managed))
        await self._run(self._docker.close)


def _docker_from_env() -> Any:
    import docker

    client = docker.from_env(timeout=60)
    client.ping()
    return client
