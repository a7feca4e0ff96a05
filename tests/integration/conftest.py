from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.docker_env import ensure_images


@pytest.fixture(scope="session", autouse=True)
def example_images() -> Iterator[None]:
    ensure_images()
    yield
