"""The OpenAPI description (node_agent/api/openapi.py): valid OpenAPI 3.1, describes every route
the server has and no other, its security follows ``route_scope``, and real answers of a running
agent (Infernet routes and workloads) validate against its response schemas."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

from node_agent.api import openapi
from node_agent.api.app import api_routes
from node_agent.api.handlers import Handlers
from node_agent.auth.keys import INFO_PATHS
from node_agent.daemon import Daemon
from node_agent.ui.config import UiConfig
from node_agent.ui.page import StatusPage
from node_agent.workloads.api import _SUBROUTES, PREFIX, WorkloadHandlers
from tests.support.agent import running_agent
from tests.workloads.support import FINAL, draft, make_key, node_config, wait_status

DOC = openapi.build()
# Answers carry no field the document leaves out (where a schema is open for clients, e.g.
# Workload, so that the node may add fields, the test still holds the node to the list).
CLOSED = (
    *("Health", "JobResult", "IdPage", "Workload", "WorkloadPage", "Estimate", "Runtime"),
    *("UiState", "UiJob", "UiWorkload", "UiSample"),
)
COMPONENTS = copy.deepcopy(DOC["components"])
for _name in CLOSED:
    COMPONENTS["schemas"][_name].setdefault("additionalProperties", False)
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def check(method: str, path: str, status: int, content_type: str, body: Any) -> None:
    """``body`` is what the document promises for this route, status and media type."""
    item = DOC["paths"][path]
    # A wrong method (405) has no operation of its own: any of the path's documents it.
    operation = item.get(method.lower()) or next(v for k, v in item.items() if k in METHODS)
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path}: status {status} not documented"
    media = response["content"].get(content_type)
    assert media is not None, f"{method} {path} {status}: {content_type} not documented"
    # Refs are "#/components/schemas/...": resolve them against a root that carries components.
    root = {"allOf": [media["schema"]], "components": COMPONENTS}
    errors = list(Draft202012Validator(root).iter_errors(body))
    assert not errors, f"{method} {path} {status}: {[e.message for e in errors][:3]} in {body!r}"


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    path: str,
    template: str | None = None,
    expect: int = 200,
    **kwargs: Any,
) -> Any:
    async with http.request(method, url + path, **kwargs) as resp:
        assert resp.status == expect, (method, path, resp.status, await resp.text())
        raw = await resp.read()
        body = json.loads(raw) if resp.content_type == "application/json" else raw.decode()
        check(method, template or path.split("?")[0], resp.status, resp.content_type, body)
        return body


def test_the_document_is_valid_openapi_3_1_and_served_as_built() -> None:
    validate_spec(DOC)
    assert DOC["openapi"].startswith("3.1")
    assert json.loads(openapi.document()) == json.loads(json.dumps(DOC))


def test_every_route_of_the_server_is_described_and_no_other() -> None:
    routes = api_routes(Handlers(None), metrics=True)  # type: ignore[arg-type]  # never called
    openapi_route = {("GET", "/openapi.json")}
    WorkloadHandlers(None).register(routes)  # type: ignore[arg-type]
    StatusPage(UiConfig(), None, job_counts=dict, gpus=list).register(routes)  # type: ignore[arg-type]
    served = {
        (method, path)
        for path, methods in routes._by_path.items()
        for method in methods
        if method != "HEAD"  # every GET answers HEAD too (said once, in info)
    }
    served |= {
        (method, f"{PREFIX}{{job_id}}{suffix}")
        for suffix, methods in _SUBROUTES.items()
        for method in methods
    }
    described = {
        (method.upper(), path)
        for path, item in DOC["paths"].items()
        for method in item
        if method in METHODS
    }
    assert served == described
    assert openapi_route <= described and "/openapi.json" in INFO_PATHS


def test_security_follows_the_dispatchers_scopes() -> None:
    paths = DOC["paths"]
    assert paths["/health"]["get"]["security"] == [{}, {"bearerAuth": []}]
    assert paths["/api/jobs"]["post"]["security"] == [{}, {"bearerAuth": ["jobs:write"]}]
    assert paths["/api/jobs"]["get"]["security"] == [{}, {"bearerAuth": ["jobs:read"]}]
    # Workloads always need a key; any one of the scopes where both are listed.
    assert paths["/v1/jobs"]["get"]["security"] == [{"bearerAuth": ["jobs:read"]}]
    assert paths["/v1/jobs/{job_id}/cancel"]["post"]["security"] == [{"bearerAuth": ["jobs:write"]}]
    assert paths["/v1/jobs/{job_id}"]["get"]["security"] == [
        {"bearerAuth": ["jobs:read"]},
        {"bearerAuth": ["jobs:write"]},
    ]


async def test_infernet_answers_match_the_document(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession
) -> None:
    _, url = agent
    await call(http, "GET", url, "/health")
    info = await call(http, "GET", url, "/info")
    assert info["containers"]
    await call(http, "GET", url, "/resources?model_id=m")
    await call(http, "GET", url, "/metrics")
    served = await call(http, "GET", url, "/openapi.json")
    assert served["paths"].keys() == DOC["paths"].keys()
    await status_page_answers(http, url)

    job = {"containers": ["first"], "data": {"x": 1}}
    created = await call(http, "POST", url, "/api/jobs", json=job)
    batch = await call(
        http, "POST", url, "/api/jobs/batch", json=[job, {"containers": "first", "data": {}}]
    )
    assert "id" in batch[0] and batch[1]["error"] == "Invalid request body"
    ids = [created["id"], batch[0]["id"]]
    query = "&".join(f"id={i}" for i in ids)
    results = await call(http, "GET", url, f"/api/jobs?{query}&wait=10&intermediate=true")
    assert {r["status"] for r in results} == {"success"}
    listed = await call(http, "GET", url, "/api/jobs?pending=false")
    assert set(ids) <= set(listed)
    page = await call(http, "GET", url, "/api/jobs?limit=1")
    assert len(page["ids"]) == 1 and page["next_cursor"]
    await call(
        http,
        "PUT",
        url,
        "/api/status",
        json={"id": ids[0], "status": "success", "containers": ["first"]},
    )

    async with http.post(f"{url}/api/jobs/stream", json=job) as resp:
        assert resp.status == 200
        check("POST", "/api/jobs/stream", 200, resp.content_type, (await resp.read()).decode())
    delegated = {"subscription": {}, "signature": {}, "data": {}}
    refused = await call(http, "POST", url, "/api/jobs", expect=400, json=delegated)
    assert refused["params"]["field"].startswith("subscription")

    # Error bodies: bad JSON, a bad field, a bad parameter, a wrong content type, no route.
    await call(http, "POST", url, "/api/jobs", expect=400, data=b"{", headers=JSON)
    await call(http, "POST", url, "/api/jobs", expect=400, json={"containers": [], "id": "x"})
    await call(http, "GET", url, "/api/jobs?id=a&until=some", expect=400)
    await call(http, "GET", url, "/api/jobs?limit=0", expect=400)
    await call(
        http,
        "POST",
        url,
        "/api/jobs",
        expect=415,
        data=b"{}",
        headers={"Content-Type": "text/plain"},
    )
    async with http.get(f"{url}/nowhere") as resp:
        assert resp.status == 404
        body = await resp.json()
    root = {"$ref": "#/components/schemas/Error", "components": DOC["components"]}
    Draft202012Validator(root).validate(body)  # unknown routes answer the one error shape


JSON = {"Content-Type": "application/json"}


async def status_page_answers(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> Any:
    """The status page's routes: the redirect, the static files, the state document."""
    async with http.get(f"{url}/", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "ui"
        assert "Location" in DOC["paths"]["/"]["get"]["responses"]["302"]["headers"]
    for path in ("/ui", "/ui/app.js", "/ui/app.css"):
        await call(http, "GET", url, path)
    state = await call(http, "GET", url, "/ui/state", **kwargs)
    newest = state["history"]["samples"][-1]["at"] if state["history"]["samples"] else 0
    await call(http, "GET", url, f"/ui/state?since={newest}", **kwargs)
    await call(http, "GET", url, "/ui/state?since=soon", expect=400, **kwargs)
    return state


async def test_protect_info_closes_the_document_to_callers_without_a_key(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    key = make_key()
    raw = {
        "manage_containers": False,
        "containers": [],
        "api_keys": {"keys": [key.entry()], "protect_info": True},
    }
    async with running_agent(raw, tmp_path / "state") as (_, url):
        await call(http, "GET", url, "/openapi.json", expect=401)
        await call(http, "GET", url, "/openapi.json", headers=key.headers)
        await call(http, "GET", url, "/ui/state", expect=401)
        await status_page_answers(http, url, headers=key.headers)


@pytest.mark.docker
async def test_workload_answers_match_the_document(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    key = make_key()
    h = key.headers
    async with running_agent(node_config([key]), tmp_path / "state") as (_, url):
        job = draft("echo hello; sleep 30", unknown_field=1)
        await call(http, "POST", url, "/v1/jobs/estimate", json=job, headers=h)
        no_gpu = draft("true", gpus=1)  # the node has none
        never = await call(http, "POST", url, "/v1/jobs/estimate", json=no_gpu, headers=h)
        assert never["fits"] is False and never["reason"]
        await call(http, "POST", url, "/v1/jobs", expect=422, json=no_gpu, headers=h)
        created = await call(http, "POST", url, "/v1/jobs", expect=201, json=job, headers=h)
        assert created["ignored_fields"] == ["unknown_field"]
        job_id = created["job_id"]
        one = "/v1/jobs/{job_id}"
        await wait_status(http, url, key, job_id, {"running"})
        await call(http, "GET", url, f"/v1/jobs/{job_id}", one, headers=h)
        runtime = await call(
            http, "GET", url, f"/v1/jobs/{job_id}/runtime", one + "/runtime", headers=h
        )
        assert runtime["status"] == "running"
        page = await call(http, "GET", url, "/v1/jobs?limit=10", headers=h)
        assert [j["job_id"] for j in page["jobs"]] == [job_id]
        await call(
            http, "POST", url, f"/v1/jobs/{job_id}/cancel", one + "/cancel", expect=202, headers=h
        )
        await wait_status(http, url, key, job_id, FINAL)
        done = await call(
            http, "POST", url, f"/v1/jobs/{job_id}/cancel", one + "/cancel", headers=h
        )
        assert done["status"] == "cancelled"
        async with http.get(f"{url}/v1/jobs/{job_id}/logs/live", headers=h) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            assert "event: end" in await resp.text()
        state = await status_page_answers(http, url)
        assert [w["job_id"] for w in state["workloads"]["items"]] == [job_id]

        # Errors: no key, an unknown job, a bad draft, a wrong method, a bad page size.
        await call(http, "GET", url, "/v1/jobs", expect=401)
        missing = "00000000-0000-4000-8000-000000000000"
        await call(http, "GET", url, f"/v1/jobs/{missing}", one, expect=404, headers=h)
        await call(http, "POST", url, "/v1/jobs", expect=400, json={"image": ""}, headers=h)
        await call(http, "GET", url, f"/v1/jobs/{job_id}/cancel", one + "/cancel", expect=405,
                   headers=h)  # fmt: skip
        await call(http, "GET", url, "/v1/jobs?limit=0", expect=400, headers=h)
