"""The pure part of a reload: which containers change, which gates carry over, held gates."""

from __future__ import annotations

import asyncio

from node_agent.config import ContainerConfig
from node_agent.containers.admission import Admission, gates_for
from node_agent.reload import GateHold, carry_over, diff_containers, wait_until_idle


def c(cid: str, **kw: object) -> ContainerConfig:
    return ContainerConfig.model_validate({"id": cid, "image": "img", "port": 3000, **kw})


def admission_for(*configs: ContainerConfig) -> Admission:
    return Admission(gates_for((x.id, x.max_concurrency, x.queue_size) for x in configs))


def test_diff_names_added_changed_removed() -> None:
    old = [c("keep", port=3001), c("change", port=3002), c("gone", port=3003)]
    new = [c("keep", port=3001), c("change", port=3002, env={"V": "2"}), c("new", port=3004)]
    changes = diff_containers(old, new)
    assert changes.added == {"new"}
    assert changes.changed == {"change"}
    assert changes.removed == {"gone"}
    assert changes.replaced == {"change", "gone"}
    assert changes.held == {"new", "change"}


def test_a_shifted_port_counts_as_a_change() -> None:
    """Two containers asking for 3000: dropping the first moves the second onto 3000."""
    old = [c("a"), c("b")]
    new = [c("b")]
    assert diff_containers(old, new).changed == {"b"}


def test_unchanged_containers_keep_their_gate() -> None:
    keep, change = c("keep"), c("change", port=3001)
    old = admission_for(keep, change)
    old.reserve(["keep"])
    new_change = c("change", port=3001, env={"V": "2"})
    resized = c("keep", max_concurrency=2)
    same = carry_over(old, [keep, new_change], diff_containers([keep, change], [keep, new_change]))
    assert same.gates["keep"] is old.gates["keep"]
    assert same.gates["keep"].admitted == 1
    assert same.gates["change"] is not old.gates["change"]
    other = carry_over(old, [resized], diff_containers([keep], [resized]))
    assert other.gates["keep"] is not old.gates["keep"]


async def test_held_gate_queues_jobs_until_released() -> None:
    admission = admission_for(c("x", max_concurrency=2))
    hold = GateHold(admission, frozenset({"x"}))
    gate = admission.gates["x"]
    entered: list[int] = []

    async def job(n: int) -> None:
        async with gate.slots:
            entered.append(n)
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(job(n)) for n in range(3)]
    await asyncio.sleep(0.1)
    assert entered == []
    hold.release()
    hold.release()  # idempotent: the limit stays 2
    await asyncio.sleep(0.01)
    assert len(entered) == 2
    await asyncio.gather(*tasks)
    assert sorted(entered) == [0, 1, 2]


async def test_wait_until_idle() -> None:
    admission = admission_for(c("x"), c("y", port=3001))
    ticket = admission.reserve(["x"])
    assert await wait_until_idle(admission, frozenset({"y"}), 0.1)
    assert not await wait_until_idle(admission, frozenset({"x"}), 0.1, poll=0.01)
    asyncio.get_running_loop().call_later(0.05, ticket.release_all)
    assert await wait_until_idle(admission, frozenset({"x", "gone"}), 2, poll=0.01)
