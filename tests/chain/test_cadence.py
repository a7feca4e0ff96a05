"""Pure: when the head is polled (fast only around the block that opens an interval) and when
the next tracked interval opens."""

from __future__ import annotations

import pytest
from test_chain_pure import make_sub

from node_agent.chain.cadence import HeadCadence
from node_agent.chain.scheduler import next_opening


def test_next_opening_is_the_earliest_first_or_next_interval() -> None:
    waiting = make_sub(active_at=1000, period=10, frequency=3)
    running = make_sub(active_at=900, period=30, frequency=5)  # interval 3 opens at 960
    assert next_opening([waiting], 950) == 1000
    assert next_opening([waiting, running], 950) == 960
    assert next_opening([waiting], 1000) == 1010  # interval 2
    assert next_opening([waiting], 1025) is None  # on its last interval: nothing opens
    callback = make_sub(active_at=500, period=0, frequency=1)
    assert next_opening([callback], 400) == 500
    assert next_opening([callback], 600) is None
    cancelled = make_sub(active_at=2**32 - 1)
    assert next_opening([cancelled], 0) is None
    assert next_opening([], 0) is None


def cadence_at(seen_at: float) -> HeadCadence:
    """Blocks every 2 s (chain time); head 12 at t=100 seen at local ``seen_at``."""
    cadence = HeadCadence(0.5, fast=0.05)
    for number in range(1, 13):
        cadence.observe(number, 76 + 2 * number, seen_at - 2 * (12 - number))
    return cadence


def test_lazy_polling_unless_the_next_block_opens_an_interval() -> None:
    cadence = cadence_at(seen_at=50.0)
    assert cadence.block_time == 2.0
    assert cadence.delay(50.0, None) == 0.5
    assert cadence.delay(50.0, 200) == 0.5  # far away
    # the next block (t >= 102) opens one: wait until just before it is due, then fast
    assert cadence.delay(50.0, 102) == 0.5  # due at 52.0, fast from 51.5
    assert cadence.delay(51.2, 102) == pytest.approx(0.3)  # not past the start of the fast window
    assert cadence.delay(51.6, 102) == 0.05
    assert cadence.delay(52.3, 102) == 0.05
    assert cadence.delay(56.5, 102) == 0.5  # late beyond two blocks: no spinning


def test_a_new_head_resets_the_schedule_and_old_heads_are_ignored() -> None:
    cadence = cadence_at(seen_at=50.0)
    cadence.observe(11, 98, 50.2)  # a lagging endpoint answers an older head
    assert (cadence.number, cadence.seen_at) == (12, 50.0)
    cadence.observe(13, 102, 52.1)
    assert cadence.delay(53.4, 104) == pytest.approx(0.2)  # the following block, due at 54.1
    assert cadence.delay(53.7, 104) == 0.05
    assert cadence.delay(53.7, 106) == 0.5  # opens a block later: lazy until then


def test_before_two_heads_nothing_is_known_and_polling_stays_lazy() -> None:
    cadence = HeadCadence(0.5)
    assert cadence.delay(0.0, 1) == 0.5
    cadence.observe(7, 100, 0.0)
    assert cadence.block_time is None and cadence.delay(0.1, 101) == 0.5


def test_slow_chains_are_never_polled_fast() -> None:
    """With 12 s blocks a head seen half a second late still leaves the next block time."""
    cadence = HeadCadence(0.5, fast=0.05)
    for number in range(1, 5):
        cadence.observe(number, 12 * number, 12.0 * number)
    assert cadence.block_time == 12.0
    assert cadence.delay(59.8, 60) == 0.5
