"""The status page in a real browser (Chromium via Playwright) against a real node: what it
shows is what the node's sampler and /ui/state say, it is protected like /info, and nothing
secret reaches it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import unmanaged_config
from tests.gpu.fake_nvml import FakeNvml, board
from tests.support.agent import running_agent
from tests.support.service import ProtocolService
from tests.ui.conftest import Browser, playwright_expect
from tests.workloads.support import draft, make_key, wait_status

expect = playwright_expect()

H100 = "GPU-5c3a1e2f-8b7d-4c1a-9e21-0a1b2c3d4e5f"
L4 = "GPU-14000000-0000-4000-8000-000000000004"
# Fast sampling, so a test waits for its second sample in a fraction of a second.
FAST_UI = {"sample_interval": 0.2, "history_seconds": 60}
FAST_GPUS = {"poll_interval": 0.1, "watch_xid_events": False}
# Node facts without Docker's: the page does not show them, and each GPU refresh would wait
# for `docker info` (which can take seconds on a busy engine).
NO_DOCKER_FACTS: dict[str, Any] = {"docker_client_factory": lambda: None}


def gpu_node(**extra: Any) -> dict[str, Any]:
    return {
        "manage_containers": False,
        "containers": [],
        "gpus": FAST_GPUS,
        "ui": FAST_UI,
        "workloads": {"enabled": False},
        **extra,
    }


async def points(browser: Browser, selector: str) -> int:
    found = await browser.page.get_attribute(selector, "data-points")
    return int(found or 0)


async def test_gpu_panel_renders_the_fake_boards_and_its_charts_update(
    browser: Browser, tmp_path: Path
) -> None:
    fake = FakeNvml([board("h100-sxm"), board("l4")])
    async with running_agent(
        gpu_node(), tmp_path / "state", provider_options={"nvml_library": fake, **NO_DOCKER_FACTS}
    ) as (_, url):
        page = browser.page
        await page.goto(f"{url}/")  # redirected to the page
        assert page.url == f"{url}/ui"
        h100, l4 = page.locator(f'[data-gpu="{H100}"]'), page.locator(f'[data-gpu="{L4}"]')
        await expect(h100.locator("h3")).to_contain_text("#0 NVIDIA H100 80GB HBM3")
        await expect(l4.locator("h3")).to_contain_text("NVIDIA L4")
        await expect(l4.locator('[data-chart="util"] .now')).to_have_text("3 %")
        await expect(l4.locator('[data-chart="temperature"] .now')).to_have_text("44 °C")
        await expect(l4.locator('[data-chart="power"] .now')).to_have_text("17 / 72 W")
        await expect(l4.locator('[data-chart="memory"] .now')).to_have_text("0.04 / 22.5")

        # The charts come from the node's samples: a second one arrives and is drawn.
        chart = f'[data-gpu="{L4}"] [data-chart="util"]'
        await page.wait_for_function(
            f"() => Number(document.querySelector('{chart}')?.dataset.points) >= 2"
        )
        before = await points(browser, chart)
        fake.boards[1]["util"] = [77, 5]  # the board gets busy
        await expect(l4.locator('[data-chart="util"] .now')).to_have_text("77 %")
        await page.wait_for_function(
            f"() => Number(document.querySelector('{chart}').dataset.points) > {before}"
        )
        path = await page.get_attribute(f"{chart} path", "d")
        assert path and path.count("L") >= 1  # a line, not a dot
        await expect(page.locator("#gpus")).to_contain_text("Driver 570.86.15")
        browser.assert_no_errors()


async def test_a_job_submitted_through_the_api_appears_with_the_jobs_charts(
    browser: Browser,
    services: dict[str, tuple[ProtocolService, str]],
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    raw = unmanaged_config(services, ui=FAST_UI, workloads={"enabled": False})
    async with running_agent(raw, tmp_path / "state", provider_options=NO_DOCKER_FACTS) as (
        _,
        url,
    ):
        page = browser.page
        await page.goto(f"{url}/ui")
        await expect(page.locator("#recent")).to_contain_text("No jobs yet.")
        await expect(page.locator('[data-container="first"]')).to_contain_text("running")
        async with http.post(
            f"{url}/api/jobs", json={"containers": ["first"], "data": {"x": 1}}
        ) as resp:
            job_id = (await resp.json())["id"]
        row = page.locator(f'[data-job="{job_id}"]')
        await expect(row.locator(".pill")).to_have_text("success")
        await expect(row).to_contain_text("first")
        # Its latency reaches the latency chart through the sampler (the /metrics histogram).
        await page.wait_for_function(
            "() => Number(document.querySelector('[data-chart=\"latency\"]')?.dataset.points) >= 1"
        )
        await page.wait_for_function(
            "() => Number(document.querySelector('[data-chart=\"rate\"]')?.dataset.points) >= 2"
        )
        browser.assert_no_errors()


async def test_a_node_without_gpus_chain_orchestrator_or_jobs_reads_well(
    browser: Browser, tmp_path: Path
) -> None:
    raw = {
        "manage_containers": False,
        "containers": [],
        "ui": FAST_UI,
        "workloads": {"enabled": False},
    }
    async with running_agent(raw, tmp_path / "state", provider_options=NO_DOCKER_FACTS) as (
        _,
        url,
    ):  # real NVML: none here
        page = browser.page
        await page.goto(f"{url}/ui")
        gpus = page.locator("#gpus")
        await expect(gpus).to_contain_text("NVML (the NVIDIA driver's library) is not available")
        await expect(gpus).to_contain_text("Remedy: Install the NVIDIA driver")
        await expect(page.locator("#chain")).to_contain_text("No chain configured")
        await expect(page.locator("#grid")).to_contain_text("Not reporting to an orchestrator")
        await expect(page.locator("#recent")).to_contain_text("No jobs yet.")
        await expect(page.locator("#containers")).to_contain_text("No service containers")
        await expect(page.locator("#workloads")).to_contain_text("Workloads are off")
        await expect(page.locator('[data-check="gpus"]')).to_contain_text("nvml_unavailable")
        await expect(page.locator("#verdict")).not_to_have_text("loading")
        assert await page.locator("[data-gpu]").count() == 0
        browser.assert_no_errors()


async def test_a_protected_node_shows_nothing_without_a_key(
    browser: Browser, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    key = make_key("jobs:read")
    raw = {
        "manage_containers": False,
        "containers": [],
        "ui": FAST_UI,
        "workloads": {"enabled": False},
        "api_keys": {"keys": [key.entry()], "protect_info": True},
    }
    async with running_agent(raw, tmp_path / "state", provider_options=NO_DOCKER_FACTS) as (
        _,
        url,
    ):
        # The data endpoint follows /info's rule exactly.
        for path in ("/info", "/ui/state"):
            async with http.get(f"{url}{path}") as resp:
                assert resp.status == 401, path
                assert (await resp.json())["error"] == "API key required"
            async with http.get(f"{url}{path}", headers={"Authorization": "Bearer na_x"}) as resp:
                assert resp.status == 401, path
            async with http.get(f"{url}{path}", headers=key.headers) as resp:
                assert resp.status == 200, path
        # The shell is public and carries no data.
        async with http.get(f"{url}/ui") as resp:
            assert resp.status == 200
            shell = await resp.text()
            assert "Content-Security-Policy" in resp.headers
        assert "agent_version" not in shell and "0.1.0" not in shell

        page = browser.page
        await page.goto(f"{url}/ui")
        await expect(page.locator("#notice")).to_contain_text("only to callers with an API key")
        await expect(page.locator("#verdict")).to_have_text("locked")
        assert await page.locator("[data-check]").count() == 0
        await page.fill("#key", key.token)
        await page.click("#key-form button[type=submit]")
        await expect(page.locator('[data-check="jobs"]')).to_contain_text("ok")
        await expect(page.locator("#notice")).to_be_hidden()
        assert key.token not in await page.content()  # a password field, emptied once used


async def test_no_secret_reaches_the_page(
    browser: Browser, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    key = make_key()
    private_key = "0x" + "5a" * 32
    grid_key = "jg_" + "s3cretgridkey" * 3
    raw = {
        "manage_containers": False,
        "containers": [],
        "ui": FAST_UI,
        "workloads": {"enabled": False},
        "api_keys": {"keys": [key.entry()]},
        "grid": {
            "enabled": True,
            "url": "http://griduser:gridpass1@127.0.0.1:9/base/path-token-1?token=qs-token-1",
            "api_key": grid_key,
            "heartbeat_interval": 0.2,
            "startup_delay_max": 0,
            "backoff_initial": 0.1,
            "backoff_max": 0.2,
        },
        "chain": {
            "enabled": True,
            "rpc_url": "http://rpcuser:rpcpass2@127.0.0.1:9/v3/path-token-2?apikey=qs-token-2",
            "registry_address": "0x" + "11" * 20,
            "wallet": {"private_key": private_key},
        },
    }
    secrets = [
        private_key[2:],
        grid_key,
        key.token,
        "gridpass1",
        "path-token-1",
        "qs-token-1",
        "rpcpass2",
        "path-token-2",
        "qs-token-2",
    ]
    async with running_agent(raw, tmp_path / "state", provider_options=NO_DOCKER_FACTS) as (
        _,
        url,
    ):
        page = browser.page
        await page.goto(f"{url}/ui")
        await page.fill("#key", key.token)
        await page.click("#key-form button[type=submit]")
        grid = page.locator("#grid")
        await expect(grid).to_contain_text("http://127.0.0.1:9")  # the orchestrator's origin
        await expect(grid.locator(".pill")).to_have_text("backing_off")
        # Running (its RPC unreachable), or not started, saying why: either way, no secret.
        await expect(page.locator("#chain")).to_contain_text(
            re.compile("Node address|configured but not running")
        )
        async with http.get(f"{url}/ui/state", headers=key.headers) as resp:
            state = await resp.text()
        rendered = await page.content()
        for secret in secrets:
            assert secret not in rendered, secret
            assert secret not in state, secret
        browser.assert_no_errors()


@pytest.mark.docker
async def test_a_workload_is_listed_and_its_log_followed_with_the_owners_key(
    browser: Browser, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    owner, other = make_key(), make_key()
    raw = {
        "manage_containers": False,
        "containers": [],
        "gpus": {"enabled": False},
        "ui": FAST_UI,
        "api_keys": {"keys": [owner.entry(), other.entry()]},
        "workloads": {"stop_grace": 2},
    }
    job = draft(
        "echo hello from the workload; sleep 1; echo bye",
        name="<img src=x onerror=window.__xss=1>",
        env={"WORKLOAD_SECRET": "env-secret-value-3"},
        callback_url="http://127.0.0.1:9/callback?sig=callback-query-4",
        callback_auth_token="callback-token-5",
    )
    job["args"][0] += "  # args-secret-6"
    async with running_agent(raw, tmp_path / "state", provider_options=NO_DOCKER_FACTS) as (
        _,
        url,
    ):
        async with http.post(f"{url}/v1/jobs", json=job, headers=owner.headers) as resp:
            assert resp.status == 201, await resp.text()
            job_id = (await resp.json())["job_id"]
        await wait_status(http, url, owner, job_id, {"succeeded"})

        page = browser.page
        await page.goto(f"{url}/ui")
        row = page.locator(f'[data-workload="{job_id}"]')
        await expect(row.locator(".pill")).to_have_text("succeeded")
        await expect(row).to_contain_text("<img src=x onerror=window.__xss=1>")  # as text
        assert await page.evaluate("window.__xss") is None

        # Without a key, and with another principal's key, the output stays closed.
        await row.locator("button").click()
        await expect(page.locator("#log-status")).to_contain_text("needs the API key")
        await page.fill("#key", other.token)
        await page.click("#key-form button[type=submit]")
        await row.locator("button").click()
        await expect(page.locator("#log-status")).to_contain_text("Not found for this API key")
        await page.fill("#key", owner.token)
        await page.click("#key-form button[type=submit]")
        await row.locator("button").click()
        await expect(page.locator("#log-output")).to_contain_text("hello from the workload")
        await expect(page.locator("#log-output")).to_contain_text("bye")
        await expect(page.locator("#log-status")).to_contain_text("ended: succeeded, exit code 0")

        async with http.get(f"{url}/ui/state") as resp:
            state = json.loads(await resp.text())
        rendered = await page.content()
        for secret in (
            "env-secret-value-3",
            "callback-query-4",
            "callback-token-5",
            "args-secret-6",
        ):
            assert secret not in rendered, secret
            assert secret not in json.dumps(state), secret
        listed = state["workloads"]["items"][0]
        assert listed["job_id"] == job_id and "args" not in listed and "command" not in listed
        # 404s of the refused log view are the only console errors (resource loads).
        assert all("404" in e for e in browser.errors), browser.errors
