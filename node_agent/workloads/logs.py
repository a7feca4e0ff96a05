"""A workload's output, captured to the state directory with a size cap, and followed live.

The capture thread appends to ``<id>.log``; when it passes half the cap it becomes
``<id>.log.1`` (the older half is dropped), so at most ``cap`` bytes are kept and they are the
newest. Live readers follow the file itself, not a copy in memory: a slow reader costs no
memory, only lag, and any number of readers share one capture.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

READ_CHUNK = 256 * 1024


class LogFile:
    """Capture side: called from the capture thread only (one writer per job)."""

    def __init__(self, path: Path, cap: int, on_write: Callable[[], None]) -> None:
        self.path = path
        self.half = max(cap // 2, 1)
        self._on_write = on_write
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._size = self._file.tell()

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._size + len(chunk) > self.half and self._size > 0:
            self._rotate()
        self._file.write(chunk)
        self._size += len(chunk)
        self._on_write()

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, rotated(self.path))
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        self._size = 0

    def reset(self) -> None:
        """Start over (a re-attach replays the whole output from Docker)."""
        self._file.close()
        rotated(self.path).unlink(missing_ok=True)
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self._file.close()


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def tail(path: Path, limit: int) -> bytes:
    """The newest ``limit`` bytes across the current file and the rotated one (blocking)."""
    parts: list[bytes] = []
    remaining = limit
    for candidate in (path, rotated(path)):
        if remaining <= 0:
            break
        try:
            with open(candidate, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - remaining))
                data = f.read(remaining)
        except FileNotFoundError:
            continue
        parts.append(data)
        remaining -= len(data)
    return b"".join(reversed(parts))


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    rotated(path).unlink(missing_ok=True)


class LogSignal:
    """Wakes live readers when the capture thread wrote; cheap when nobody follows."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self.readers = 0
        self._pending = False

    def notify_threadsafe(self) -> None:
        if self.readers and not self._pending:
            self._pending = True
            self._loop.call_soon_threadsafe(self._fire)

    def fire(self) -> None:
        """From the loop (the job ended)."""
        self._event.set()

    def _fire(self) -> None:
        self._pending = False
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()


async def follow(
    path: Path,
    signal: LogSignal | None,
    ended: Callable[[], bool],
    *,
    from_start: bool = True,
) -> AsyncIterator[bytes]:
    """Yield the file's content, then whatever is appended, until ``ended()`` and the file is
    drained. Rotation is handled by keeping the renamed file open until it is read out."""
    loop = asyncio.get_running_loop()

    def open_current() -> BinaryIO | None:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            return None

    if signal is not None:
        signal.readers += 1
    handle: BinaryIO | None = None
    try:
        if from_start:
            older = rotated(path)
            if older.exists():
                # Output from before the last rotation comes first.
                data = await loop.run_in_executor(None, older.read_bytes)
                if data:
                    yield data
        while True:
            if handle is None:
                handle = await loop.run_in_executor(None, open_current)
            progressed = False
            if handle is not None:
                chunk = await loop.run_in_executor(None, handle.read, READ_CHUNK)
                if chunk:
                    progressed = True
                    yield chunk
                    continue
                # At the end of this file: has it been rotated away under us?
                try:
                    current = os.stat(path).st_ino
                except FileNotFoundError:
                    current = None
                if current != os.fstat(handle.fileno()).st_ino:
                    handle.close()
                    handle = None
                    continue
            if not progressed:
                if ended():
                    # One last read: the capture may have written after our last look.
                    if handle is not None:
                        rest = await loop.run_in_executor(None, handle.read)
                        if rest:
                            yield rest
                    return
                if signal is not None:
                    await signal.wait(0.5)
                else:
                    await asyncio.sleep(0.2)
    finally:
        if signal is not None:
            signal.readers -= 1
        if handle is not None:
            handle.close()
