"""A real ``AF_UNIX`` datagram socket standing in for systemd's notify socket."""

from __future__ import annotations

import socket
import time


class NotifySocket:
    """The receiving end a test owns: collects the ``KEY=VALUE`` datagrams the agent sends."""

    def __init__(self, address: str | bytes, env_value: str) -> None:
        self.env_value = env_value
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.received: list[tuple[float, dict[str, str]]] = []

    def drain(self) -> list[tuple[float, dict[str, str]]]:
        """Read every queued datagram without waiting."""
        self.sock.setblocking(False)
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.received
            self.received.append((time.monotonic(), parse(data)))

    def wait_for(self, key: str, value: str | None = None, timeout: float = 10.0) -> dict[str, str]:
        """Block (in the test's thread) until a datagram with ``key`` (=``value``) arrives."""
        deadline = time.monotonic() + timeout
        seen = len(self.received)
        while True:
            for _, fields in self.received[seen:]:
                if key in fields and (value is None or fields[key] == value):
                    return fields
            seen = len(self.received)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key} notification within {timeout}s: {self.received}")
            self.sock.settimeout(min(remaining, 0.2))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), parse(data)))

    def messages(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(t, f) for t, f in self.drain() if key in f]

    def close(self) -> None:
        self.sock.close()


def parse(data: bytes) -> dict[str, str]:
    fields = {}
    for line in data.decode().split("\n"):
        key, _, value = line.partition("=")
        fields[key] = value
    return fields
