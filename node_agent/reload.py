"""What ``systemctl reload`` changes: which settings apply at once and which wait for a
restart (:func:`diff_config`), and swapping the container set without dropping in-flight jobs.

Settings that only a restart can apply (the listening address, the chain, GPU monitoring, …)
keep their running value until then (:func:`effective_config`) and are named in the reload's
log line and in ``systemctl status``, instead of being ignored silently.

A reload may add, remove and change containers while jobs run. A changed or removed container
is only replaced once no admitted job still needs it (or ``agent.shutdown_grace`` ran out); new
jobs for added or changed containers are admitted at once but held at the container's
concurrency gate until the new container is in place, so none of them reaches a container that
is about to go or one that does not exist yet. Containers that did not change keep their gates,
so their concurrency limit holds across the reload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from node_agent.config import Config, ContainerConfig
from node_agent.containers.admission import Admission, ContainerGate
from node_agent.containers.ports import assign_ports
from node_agent.workloads.config import WorkloadsConfig

_M = TypeVar("_M", bound=BaseModel)

# Settings a reload applies at once (a path and everything under it). Anything else that
# changed waits for a restart: the safe default for a setting added later.
LIVE_SETTINGS = (
    "containers",
    "startup_wait",
    "log.level",
    "api_keys.required",
    "api_keys.keys",
    "api_keys.key_file",
    "jobs.retention_seconds",
    "jobs.retention_count",
    "jobs.max_batch_size",
    "jobs.max_wait_seconds",
    "jobs.on_restart",  # only read at start anyway
    "server.rate_limit",
    "server.rate_limit_enabled",
    "agent.shutdown_grace",
    "agent.info_cache_seconds",
    "agent.resources_timeout",
    "redis",  # accepted and ignored
    "forward_stats",  # accepted and ignored
    # Workload limits, images, registries, callbacks: read per job (switching the feature on
    # or off needs a restart: routes and recovery are set up at start).
    *(f"workloads.{name}" for name in WorkloadsConfig.model_fields if name != "enabled"),
)


@dataclass(frozen=True)
class ConfigChanges:
    """Dotted paths of the settings that differ (``containers`` stands for the whole list)."""

    live: tuple[str, ...]
    restart: tuple[str, ...]


def is_live(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in LIVE_SETTINGS)


def diff_config(running: Config, new: Config) -> ConfigChanges:
    """Which settings a reload from ``running`` to ``new`` changes, split by how they apply."""
    changed: list[str] = []
    _diff_model(running, new, "", changed)
    return ConfigChanges(
        live=tuple(p for p in changed if is_live(p)),
        restart=tuple(p for p in changed if not is_live(p)),
    )


def _diff_model(old: BaseModel, new: BaseModel, prefix: str, out: list[str]) -> None:
    for name in type(old).model_fields:
        a, b = getattr(old, name), getattr(new, name)
        if a == b:
            continue
        path = prefix + name
        if isinstance(a, BaseModel) and type(a) is type(b):
            _diff_model(a, b, path + ".", out)
        else:
            out.append(path)  # a leaf, a list, or a section switched on/off (None <-> set)


def effective_config(running: Config, new: Config, changes: ConfigChanges) -> Config:
    """``new`` with each restart-only setting kept at its running value: what the node runs
    on after the reload (and what the next reload is compared with)."""
    result = new
    for path in changes.restart:
        result = _with_value(result, path.split("."), _get(running, path.split(".")))
    return result


def _get(model: BaseModel, parts: list[str]) -> object:
    value: object = model
    for part in parts:
        value = getattr(value, part)
    return value


def _with_value(model: _M, parts: list[str], value: object) -> _M:
    head, rest = parts[0], parts[1:]
    inner = _with_value(getattr(model, head), rest, value) if rest else value
    return model.model_copy(update={head: inner})


@dataclass(frozen=True)
class ContainerChanges:
    added: frozenset[str]
    changed: frozenset[str]
    removed: frozenset[str]

    @property
    def replaced(self) -> frozenset[str]:
        """Containers whose current instance goes away: wait for their jobs first."""
        return self.changed | self.removed

    @property
    def held(self) -> frozenset[str]:
        """Containers whose new instance is not up yet: new jobs wait at the gate."""
        return self.added | self.changed


def diff_containers(
    old: Sequence[ContainerConfig], new: Sequence[ContainerConfig]
) -> ContainerChanges:
    """What a reload does to each container id (ports as the manager assigns them)."""
    old_by_id = _with_ports(old)
    new_by_id = _with_ports(new)
    return ContainerChanges(
        added=frozenset(new_by_id.keys() - old_by_id.keys()),
        changed=frozenset(
            cid for cid in new_by_id.keys() & old_by_id.keys() if new_by_id[cid] != old_by_id[cid]
        ),
        removed=frozenset(old_by_id.keys() - new_by_id.keys()),
    )


def _with_ports(
    configs: Sequence[ContainerConfig],
) -> dict[str, tuple[ContainerConfig, int]]:
    ports = assign_ports([c.port for c in configs])
    return {c.id: (c, port) for c, port in zip(configs, ports, strict=True)}


def carry_over(
    old: Admission, new: Sequence[ContainerConfig], changes: ContainerChanges
) -> Admission:
    """The new admission; unchanged containers keep their gate (and the jobs counted in it)."""
    gates: dict[str, ContainerGate] = {}
    for config in new:
        kept = old.gates.get(config.id)
        if (
            kept is not None
            and config.id not in changes.changed
            and (kept.max_concurrency, kept.queue_size)
            == (config.max_concurrency, config.queue_size)
        ):
            gates[config.id] = kept
        else:
            gates[config.id] = ContainerGate(config.id, config.max_concurrency, config.queue_size)
    return Admission(gates)


class GateHold:
    """Closes fresh gates (no slots) so their jobs queue until :meth:`release` opens them."""

    def __init__(self, admission: Admission, container_ids: frozenset[str]) -> None:
        self._gates = [admission.gates[cid] for cid in sorted(container_ids)]
        for gate in self._gates:
            # Only gates made for this reload come here: no job holds one of their slots yet.
            gate.slots = asyncio.Semaphore(0)
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        for gate in self._gates:
            for _ in range(gate.max_concurrency):
                gate.slots.release()


async def wait_until_idle(
    admission: Admission,
    container_ids: frozenset[str],
    timeout: float,
    *,
    poll: float = 0.05,
) -> bool:
    """Wait until no admitted job holds a place on these containers; False on timeout."""
    gates = [admission.gates[cid] for cid in container_ids if cid in admission.gates]
    deadline = time.monotonic() + timeout
    while any(gate.admitted > 0 for gate in gates):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll)
    return True
