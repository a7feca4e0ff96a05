"""A real ``AF_UNIX`` datagram socket standing in for systemd's notify socket."""

from __future__ import annotations

import socket
import threading
import time


class NotifySocket:
    """The receiving end a test owns: a thread stamps each ``KEY=VALUE`` datagram on arrival."""

    def __init__(self, address: str | bytes, env_value: str) -> None:
        self.env_value = env_value
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.received: list[tuple[float, dict[str, str]]] = []
        self._arrived = threading.Condition()
        self._closed = threading.Event()
        self._cursor = 0
        self._reader = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._arrived:
                self.received.append((time.monotonic(), parse(data)))
                self._arrived.notify_all()

    def drain(self) -> list[tuple[float, dict[str, str]]]:
        """Everything received so far (after a moment for datagrams already in flight)."""
        time.sleep(0.05)
        with self._arrived:
            return list(self.received)

    def wait_for(self, key: str, value: str | None = None, timeout: float = 10.0) -> dict[str, str]:
        """The next datagram with ``key`` (=``value``) after the one the last call returned."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for index in range(self._cursor, len(self.received)):
                    fields = self.received[index][1]
                    if key in fields and (value is None or fields[key] == value):
                        self._cursor = index + 1
                        return fields
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {key} notification within {timeout}s")
                self._arrived.wait(remaining)

    def messages(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(t, f) for t, f in self.drain() if key in f]

    def close(self) -> None:
        self._closed.set()
        self._reader.join(timeout=5)
        self.sock.close()


def parse(data: bytes) -> dict[str, str]:
    fields = {}
    for line in data.decode().split("\n"):
        key, _, value = line.partition("=")
        fields[key] = value
    return fields
