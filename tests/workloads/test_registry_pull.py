"""Image pulls from a real registry protocol (tests/support/registry.py) by the real Docker
engine: progress while the bytes arrive (the job's ``pull_progress``, ``/info``'s ``pulls``,
``STATUS=`` and the log), private-registry credentials, and pulls of service containers at
start-up."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from tests.support.agent import running_agent
from tests.support.registry import RUN_COMMAND, RUN_OUTPUT, Registry, ServedImage, build_image
from tests.support.registry import serving as serving_registry
from tests.workloads.support import FINAL, eventually, make_key, node_config, wait_status

pytestmark = pytest.mark.docker
USER, PASSWORD = "puller", "s3cret-registry-pw"


@pytest.fixture(scope="module")
def served_image() -> ServedImage:
    return build_image()


@pytest.fixture
def repository() -> Iterator[str]:
    """A repository name of this test only; its pulled image is removed afterwards."""
    name = f"acme/tiny-{uuid.uuid4().hex[:8]}"
    yield name
    # the service container of the start-up test
    subprocess.run(["docker", "rm", "-f", "tiny"], capture_output=True, check=False)
    found = subprocess.run(
        ["docker", "images", "-q", "--filter", f"reference=*/{name}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if found:
        subprocess.run(["docker", "rmi", "-f", *found], capture_output=True, check=False)


@pytest.fixture
async def registry(served_image: ServedImage) -> AsyncIterator[Registry]:
    # ~4 MB/s: the 6 MB payload takes a second or two, long enough to be seen mid-pull.
    served = Registry(served_image, USER, PASSWORD, bytes_per_second=4 * 1024 * 1024)
    async with serving_registry(served) as running:
        yield running


def workload(image: str) -> dict[str, Any]:
    return {"name": "pull", "workload_type": "batch", "image": image, "command": RUN_COMMAND}


async def test_a_workload_pull_shows_progress_and_uses_the_registry_credentials(
    registry: Registry, repository: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    key = make_key()
    host = f"127.0.0.1:{registry.port}"
    raw = node_config(
        [key], registries={host: {"username": USER, "password": PASSWORD}}, pull_policy="always"
    )
    image = registry.reference(repository)
    with capture_logs() as logs:
        async with running_agent(raw, tmp_path / "state") as (daemon, url):
            async with http.post(f"{url}/v1/jobs", json=workload(image), headers=key.headers) as r:
                assert r.status == 201, await r.text()
                job_id = (await r.json())["job_id"]

            async def mid_pull() -> dict[str, Any] | None:
                async with http.get(f"{url}/info") as r:
                    pulls = (await r.json())["pulls"]
                for entry in pulls["active"]:
                    if entry["image"] == image and 0 < entry["bytes"] < entry["total_bytes"]:
                        return dict(entry)
                return None

            seen = await eventually(mid_pull, timeout=60, what="a pull under way in /info")
            assert seen["for"] == f"workload {job_id}"
            assert daemon.status_line().count(f"pulling {image}") == 1

            done = await wait_status(http, url, key, job_id, FINAL, timeout=120)
            assert done["status"] == "succeeded", done
            progress = done["pull_progress"]
            assert progress["done"] is True
            assert progress["total_bytes"] == progress["bytes"] == registry.image.layer_bytes
            assert progress["layers"] == progress["layers_done"] == 2
            async with http.get(f"{url}/v1/jobs/{job_id}/runtime", headers=key.headers) as r:
                assert RUN_OUTPUT in (await r.json())["log_tail"]
            async with http.get(f"{url}/info") as r:
                pulls = (await r.json())["pulls"]
            assert pulls["active"] == []
            (recent,) = [p for p in pulls["recent"] if p["image"] == image]
            assert recent["bytes"] == registry.image.layer_bytes and "error" not in recent
            assert "pulling" not in daemon.status_line()
    # Every blob came with the credentials; the log names bytes per layer and never the password.
    assert all(authed for method, path, authed in registry.requests if "/blobs/" in path)
    progress_lines = [e for e in logs if e["event"] == "image_pull_progress"]
    assert progress_lines and all(len(e["layer_bytes"]) >= 1 for e in progress_lines)
    (pulled,) = [e for e in logs if e["event"] == "image_pulled" and e["image"] == image]
    assert pulled["bytes"] == registry.image.layer_bytes
    assert PASSWORD not in repr(logs)


async def test_wrong_registry_credentials_fail_the_job_with_docker_s_reason(
    registry: Registry, repository: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    key = make_key()
    host = f"127.0.0.1:{registry.port}"
    raw = node_config([key], registries={host: {"username": USER, "password": "not-it"}})
    async with running_agent(raw, tmp_path / "state") as (_, url):
        image = registry.reference(repository)
        async with http.post(f"{url}/v1/jobs", json=workload(image), headers=key.headers) as r:
            job_id = (await r.json())["job_id"]
        done = await wait_status(http, url, key, job_id, FINAL, timeout=60)
        assert done["status"] == "failed"
        assert "could not be pulled" in done["error"] and "not-it" not in done["error"]
        async with http.get(f"{url}/info") as r:
            (recent,) = [p for p in (await r.json())["pulls"]["recent"] if p["image"] == image]
        assert "could not be pulled" in recent["error"]
    assert not any(authed for method, path, authed in registry.requests if "/blobs/" in path)


async def test_a_service_container_image_is_pulled_at_start_with_progress(
    registry: Registry, repository: str, tmp_path: Path
) -> None:
    """The node pulls its configured containers' images before starting them, with the
    ``docker`` credentials, and shows the pull in /info."""
    image = registry.reference(repository)
    raw = {
        "manage_containers": True,
        "containers": [{"id": "tiny", "image": image}],
        "docker": {"username": USER, "password": PASSWORD},
        "gpus": {"enabled": False},
        "startup_wait": 1,
    }
    with capture_logs() as logs:
        async with running_agent(raw, tmp_path / "state") as (daemon, _):
            snapshot = daemon.pulls.snapshot()
            (recent,) = snapshot["recent"]
            assert recent["image"] == image and recent["for"] == "container tiny"
            assert recent["bytes"] == recent["total_bytes"] == registry.image.layer_bytes
            assert "error" not in recent
    assert [e for e in logs if e["event"] == "image_pull_progress" and e["image"] == image]
    assert PASSWORD not in repr(logs)
