"""The sd_notify protocol, written out so the agent needs neither libsystemd nor systemd.

systemd hands a service the address of a datagram socket in ``$NOTIFY_SOCKET`` (a path, or an
abstract name written with a leading ``@``); the service reports its state by sending
newline-separated ``KEY=VALUE`` lines there (sd_notify(3)). Without ``$NOTIFY_SOCKET`` (a
developer's shell, a container, CI) every call is a no-op, so the daemon calls the notifier
unconditionally. Notification is best effort: a failure is logged and never raised, because a
lost ``STATUS=`` line must not take down the service it describes.

The watchdog (sd_watchdog_enabled(3)) is pinged from a task on the daemon's own event loop: if
the loop wedges, the pings stop and systemd restarts the unit, which is the whole point.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)


def encode_message(fields: Mapping[str, str | int]) -> bytes:
    """``{"READY": 1, "STATUS": "x"}`` → ``b"READY=1\\nSTATUS=x"``; values are made single-line."""
    lines = []
    for key, value in fields.items():
        text = " ".join(str(value).splitlines())
        lines.append(f"{key}={text}")
    return "\n".join(lines).encode()


def socket_address(notify_socket: str) -> str | bytes:
    """``$NOTIFY_SOCKET`` as an ``AF_UNIX`` address; ``@name`` is the abstract namespace."""
    if notify_socket.startswith("@"):
        return b"\0" + notify_socket[1:].encode()
    return notify_socket


class Notifier:
    """Sends sd_notify datagrams to ``$NOTIFY_SOCKET``; does nothing when it is not set."""

    def __init__(self, notify_socket: str | None) -> None:
        self._address: str | bytes | None = None
        if notify_socket and notify_socket.startswith(("/", "@")):
            self._address = socket_address(notify_socket)
        elif notify_socket:
            # e.g. systemd 254's "vsock:" addresses, which a host service never gets.
            log.warning("sdnotify.unsupported_socket", notify_socket=notify_socket)
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram; ``True`` when it was handed to the kernel."""
        if self._address is None or not fields:
            return False
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(encode_message(fields), self._address)
        except OSError as exc:
            log.warning("sdnotify.send_failed", keys=sorted(fields), error=str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup finished (``Type=notify``) or a reload finished."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """Free-form state shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def reloading(self, status: str | None = None) -> bool:
        """A reload started; ``Type=notify-reload`` (systemd 253+) needs ``MONOTONIC_USEC``."""
        fields: dict[str, str | int] = {
            "RELOADING": 1,
            "MONOTONIC_USEC": time.monotonic_ns() // 1000,
        }
        if status is not None:
            fields["STATUS"] = status
        return self.notify(**fields)

    def stopping(self, status: str | None = None) -> bool:
        if status is None:
            return self.notify(STOPPING=1)
        return self.notify(STOPPING=1, STATUS=status)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more start/stop time than ``TimeoutStartSec``/``TimeoutStopSec`` allow."""
        return self.notify(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """The ``WatchdogSec`` systemd asked for, in seconds; ``None`` if not meant for this process."""
    env = os.environ if environ is None else environ
    raw_usec = env.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    raw_pid = env.get("WATCHDOG_PID")
    try:
        usec = int(raw_usec)
        if raw_pid and int(raw_pid) != os.getpid():
            return None
    except ValueError:
        log.warning("sdnotify.bad_watchdog_env", watchdog_usec=raw_usec, watchdog_pid=raw_pid)
        return None
    return usec / 1_000_000 if usec > 0 else None


class Watchdog:
    """Pings ``WATCHDOG=1`` at half the interval, from the event loop it is started on.

    ``healthy`` (optional) is asked before each ping: returning ``False`` withholds the ping so
    that systemd restarts an agent whose core has stopped making progress even though its loop
    still turns.
    """

    def __init__(
        self,
        notifier: Notifier,
        interval: float | None,
        *,
        healthy: Callable[[], bool] | None = None,
    ) -> None:
        self._notifier = notifier
        self._interval = interval
        self._healthy = healthy
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_env(
        cls,
        notifier: Notifier,
        environ: Mapping[str, str] | None = None,
        *,
        healthy: Callable[[], bool] | None = None,
    ) -> Watchdog:
        return cls(notifier, watchdog_interval(environ), healthy=healthy)

    @property
    def period(self) -> float | None:
        """Seconds between pings, or ``None`` when no watchdog is configured."""
        if self._interval is None or not self._notifier.enabled:
            return None
        return self._interval / 2

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        period = self.period
        if period is None or self.running:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._run(period), name="sdnotify-watchdog"
        )
        self._task.add_done_callback(_log_crash)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self, period: float) -> None:
        log.info("sdnotify.watchdog_started", period_s=period)
        while True:
            if self._healthy is None or self._healthy():
                self._notifier.watchdog()
            else:
                log.warning("sdnotify.watchdog_withheld")
            await asyncio.sleep(period)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sdnotify.watchdog_crashed", exc_info=task.exception())
