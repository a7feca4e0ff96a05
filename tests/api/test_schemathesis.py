"""The OpenAPI document drives a fuzzer (schemathesis) against a real agent: for every
documented operation, generated requests (valid and invalid) must get answers the document
promises — status codes, media types, bodies and headers — and never a server error.

test_openapi.py checks hand-picked real answers against the document; this checks the document
against whatever a client could send, so neither can drift from the other unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi import checks as openapi_checks

from node_agent.api import openapi
from tests.support.threaded import agent_in_thread
from tests.workloads.support import make_key

pytestmark = pytest.mark.docker  # accepted workloads reach Docker (a pull that fails)

KEY = make_key()
REJECTED = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
CONFIG = SchemathesisConfig.from_dict(
    {
        # The fuzzer knows the key as the document's bearer scheme, so it can also leave it
        # out or spoil it on purpose (ignored_auth, missing_required_header).
        "auth": {"openapi": {"bearerAuth": {"bearer": KEY.token}}},
        # 413: a generated body over server.max_body_bytes is refused before it is parsed.
        "checks": {"negative_data_rejection": {"expected-statuses": REJECTED}},
    }
)
schema = schemathesis.openapi.from_dict(openapi.build(), config=CONFIG)

# Checks that judge the server by rules the API deliberately does not follow, each with why:
EXCLUDED = [
    # A valid body can still be refused on purpose: an unknown container id (404/400), a
    # workload that does not fit this node (422), a delegated subscription with a bad
    # signature. The document lists those answers; "valid → 2xx" is not this API's contract.
    openapi_checks.positive_data_acceptance,
]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with agent_in_thread(
        tmp_path_factory.mktemp("schemathesis") / "state",
        gpus={"enabled": False},
        api_keys={"keys": [KEY.entry()]},
        jobs={"max_wait_seconds": 1},
        workloads={"allowed_images": ["fuzz.invalid/*"], "stop_grace": 1, "max_running": 1},
    ) as (daemon, _):
        yield f"http://127.0.0.1:{daemon.port}"


@schema.parametrize()
@settings(
    max_examples=50,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case: Any, base_url: str) -> None:
    # A connection per request, like the hypothesis fuzz suite: keep-alive has its own tests
    # (test_connections.py, among them the parser-slot leak this fuzzer first ran into).
    case.call_and_validate(
        base_url=base_url,
        timeout=15,
        excluded_checks=EXCLUDED,
    )
