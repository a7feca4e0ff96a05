"""A real browser for the status page tests: Playwright driving Debian's ``chromium``.

Browsers cannot be downloaded here, so Playwright gets the system's Chromium as its executable
(scripts/setup-test-deps.sh installs it). Without it the tests skip on a developer's machine and
fail under CI (``CI=true``), where a missing browser means a broken setup, not a choice.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROMIUM = Path(os.environ.get("NODE_AGENT_CHROMIUM", "/usr/bin/chromium"))


def _missing(what: str) -> NoReturn:
    message = f"{what}: run scripts/setup-test-deps.sh and scripts/bootstrap.sh"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message, allow_module_level=True)


def playwright_expect() -> Any:
    """Playwright's ``expect`` (for a test module to import at its top), patient enough for a
    loaded CI machine: it waits for a condition, so a long limit costs nothing when all is well."""
    try:
        from playwright.async_api import expect
    except ImportError:
        _missing("playwright is not installed")
    expect.set_options(timeout=20_000)
    return expect


def _chromium() -> str:
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM}")
    return str(CHROMIUM)


@dataclass
class Browser:
    """One page of a fresh browser context, and what its console said."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def assert_no_errors(self) -> None:
        assert not self.errors, self.errors


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=_chromium())
        try:
            context = await chromium.new_context()
            page = await context.new_page()
            page.set_default_timeout(20_000)
            seen = Browser(page)
            page.on(
                "console",
                lambda msg: seen.errors.append(msg.text) if msg.type == "error" else None,
            )
            page.on("pageerror", lambda exc: seen.errors.append(f"uncaught: {exc}"))
            yield seen
        finally:
            await chromium.close()
