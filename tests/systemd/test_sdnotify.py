"""sd_notify against a real AF_UNIX datagram socket the test owns."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from node_agent.sdnotify import Notifier, Watchdog, encode_message, watchdog_interval
from tests.systemd.notifysocket import NotifySocket


def test_encode_joins_lines_and_flattens_values() -> None:
    assert encode_message({"READY": 1, "STATUS": "two\nlines"}) == b"READY=1\nSTATUS=two lines"


def test_unset_socket_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog() is False


def test_path_socket_receives_each_message(notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_socket.env_value})
    assert notifier.enabled
    assert notifier.ready("serving 2 containers")
    assert notifier.status("draining")
    assert notifier.watchdog()
    assert notifier.stopping()
    assert notifier.extend_timeout(2.5)
    notifier.close()
    got = [fields for _, fields in notify_socket.drain()]
    assert got == [
        {"READY": "1", "STATUS": "serving 2 containers"},
        {"STATUS": "draining"},
        {"WATCHDOG": "1"},
        {"STOPPING": "1"},
        {"EXTEND_TIMEOUT_USEC": "2500000"},
    ]


def test_reloading_carries_monotonic_timestamp(notify_socket: NotifySocket) -> None:
    notifier = Notifier(notify_socket.env_value)
    before = time.monotonic_ns() // 1000
    assert notifier.reloading("reloading config")
    after = time.monotonic_ns() // 1000
    [(_, fields)] = notify_socket.drain()
    assert fields["RELOADING"] == "1"
    assert fields["STATUS"] == "reloading config"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_abstract_socket(abstract_notify_socket: NotifySocket) -> None:
    notifier = Notifier(abstract_notify_socket.env_value)
    assert notifier.ready()
    assert [f for _, f in abstract_notify_socket.drain()] == [{"READY": "1"}]


def test_missing_socket_is_logged_not_raised(tmp_path: os.PathLike[str]) -> None:
    notifier = Notifier(os.path.join(tmp_path, "nobody-listens"))
    assert notifier.enabled
    assert notifier.ready() is False  # ENOENT swallowed


def test_unsupported_address_disables() -> None:
    assert not Notifier("vsock:2:1234").enabled


def test_full_receiver_does_not_block(tmp_path: os.PathLike[str]) -> None:
    """A receiver that never reads must not stall the sender (the socket is non-blocking)."""
    path = os.path.join(tmp_path, "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    try:
        notifier = Notifier(path)
        started = time.monotonic()
        results = [notifier.status("x" * 4000) for _ in range(2000)]
        assert time.monotonic() - started < 5
        assert results[0] is True
        assert results[-1] is False  # queue full: EAGAIN, dropped and logged
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


async def test_watchdog_pings_at_half_the_interval(notify_socket: NotifySocket) -> None:
    notifier = Notifier(notify_socket.env_value)
    watchdog = Watchdog.from_env(notifier, {"WATCHDOG_USEC": "200000"})
    assert watchdog.period == pytest.approx(0.1)
    watchdog.start()
    await asyncio.sleep(0.55)
    await watchdog.stop()
    assert not watchdog.running
    pings = notify_socket.messages("WATCHDOG")
    assert 4 <= len(pings) <= 7
    await asyncio.sleep(0.25)
    assert len(notify_socket.messages("WATCHDOG")) == len(pings)  # stopped means stopped


async def test_wedged_loop_stops_the_pings(notify_socket: NotifySocket) -> None:
    notifier = Notifier(notify_socket.env_value)
    watchdog = Watchdog(notifier, 0.1)
    watchdog.start()
    await asyncio.sleep(0.12)
    before = len(notify_socket.messages("WATCHDOG"))
    time.sleep(0.4)  # noqa: ASYNC251 - deliberately wedge the loop: the pings must stop
    during = len(notify_socket.messages("WATCHDOG"))
    await asyncio.sleep(0.12)
    await watchdog.stop()
    assert before >= 2
    assert during == before
    assert len(notify_socket.messages("WATCHDOG")) > during


async def test_unhealthy_withholds_pings(notify_socket: NotifySocket) -> None:
    healthy = True
    watchdog = Watchdog(Notifier(notify_socket.env_value), 0.1, healthy=lambda: healthy)
    watchdog.start()
    await asyncio.sleep(0.12)
    healthy = False
    count = len(notify_socket.messages("WATCHDOG"))
    await asyncio.sleep(0.3)
    await watchdog.stop()
    assert count >= 2
    assert len(notify_socket.messages("WATCHDOG")) == count


async def test_watchdog_without_socket_or_interval_does_nothing() -> None:
    for watchdog in (Watchdog(Notifier(None), 1.0), Watchdog(Notifier("/x"), None)):
        watchdog.start()
        assert not watchdog.running
        await watchdog.stop()
