"""Log capture (size cap, newest kept), tail and live follow across a rotation, on real files;
and the pull progress summary."""

from __future__ import annotations

import asyncio
from pathlib import Path

from node_agent.pulls import PullProgress, split_tag
from node_agent.workloads import logs
from node_agent.workloads.docker_adapter import registry_host


def test_capture_keeps_the_newest_within_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    capture = logs.LogFile(path, cap=1000, on_write=lambda: None)
    for i in range(100):
        capture.write(f"line {i:03d} ........\n".encode())  # 18 bytes each
    capture.close()
    kept = logs.tail(path, 10_000)
    assert len(kept) <= 1000
    assert kept.endswith(b"line 099 ........\n")  # the newest is always there
    assert b"line 000" not in kept  # the oldest went
    assert kept.startswith(b"line ")  # whole writes are kept, none cut in the middle
    assert logs.tail(path, 18) == b"line 099 ........\n"
    logs.remove(path)
    assert not path.exists() and not logs.rotated(path).exists()


async def test_follow_reads_through_a_rotation_until_the_end(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    loop = asyncio.get_running_loop()
    signal = logs.LogSignal(loop)
    capture = logs.LogFile(path, cap=200, on_write=signal.notify_threadsafe)
    ended = False
    received: list[bytes] = []

    async def reader() -> None:
        async for chunk in logs.follow(path, signal, lambda: ended):
            received.append(chunk)

    task = asyncio.create_task(reader())
    for i in range(30):  # 30 × 10 bytes through a 200-byte cap: two rotations at least
        await asyncio.to_thread(capture.write, f"chunk {i:02d}\n".encode())
        await asyncio.sleep(0)
    capture.close()
    ended = True
    signal.fire()
    await asyncio.wait_for(task, 10)
    text = b"".join(received).decode()
    assert text.endswith("chunk 29\n")
    numbers = [int(line.split()[1]) for line in text.splitlines()]
    assert numbers == sorted(numbers)  # in order, never repeated


def test_pull_progress_and_image_references() -> None:
    progress = PullProgress("x:1", "test")
    for event in (
        {"id": "a", "status": "Pulling fs layer"},
        {"id": "b", "status": "Pulling fs layer"},
        {"id": "c", "status": "Already exists"},
        {"id": "a", "status": "Downloading", "progressDetail": {"current": 50, "total": 100}},
        {"id": "b", "status": "Downloading", "progressDetail": {"current": 10, "total": 200}},
        {"id": "b", "status": "Download complete"},
        {"status": "Digest: sha256:abc"},
    ):
        progress.feed(event)
    assert progress.counts() == {"layers": 3, "layers_done": 2, "bytes": 250, "total_bytes": 300}
    assert progress.percent() == 83
    assert progress.layer_bytes() == {"a": [50, 100], "b": [200, 200], "c": [0, 0]}
    assert registry_host("python:3.11") == "docker.io"
    assert registry_host("ghcr.io/acme/infer:latest") == "ghcr.io"
    assert registry_host("localhost:5000/x") == "localhost:5000"
    assert split_tag("ghcr.io/acme/infer:7b") == ("ghcr.io/acme/infer", "7b")
    assert split_tag("registry:5000/model") == ("registry:5000/model", "latest")
    assert split_tag("repo@sha256:abc") == ("repo@sha256:abc", None)
