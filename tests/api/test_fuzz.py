"""Property-based fuzzing of every route against one real agent (issue 16, "a fuzz suite in
CI"): arbitrary JSON, arbitrary bytes, odd content types and encodings, odd query strings and
methods, with and without a valid API key. Whatever is sent:

- no 5xx but 503, and every error answer is JSON ``{"error": str, ...}``;
- every accepted job (an id returned) is readable and becomes final;
- afterwards no admission slot is held and no workload is queued or active;
- RSS stays bounded.

The agent runs on its own event loop in a thread so hypothesis drives plain, synchronous
tests; the examples are derandomised (no example database), so CI replays the same requests.
The figures (requests, 5xx, non-JSON errors) are printed by the last test.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import socket
import time
import urllib.parse
import zlib
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node_agent.daemon import Daemon
from tests.support.threaded import agent_in_thread
from tests.workloads.support import FINAL, Key, make_key

pytestmark = pytest.mark.docker  # accepted workloads reach Docker (a pull that fails)
T = TypeVar("T")
FUZZ = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
IMAGE = "fuzz.invalid/none:0"  # allowed, never pullable: accepted workloads end at pull
CONTAINERS = ["first", "second", "internal", "prover", "lan-only"]
TIMEOUT = 15.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@dataclass
class Figures:
    requests: int = 0
    server_errors: int = 0  # 5xx other than 503
    non_json_errors: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@dataclass
class Agent:
    """A daemon on its own loop in a thread, and what the fuzzers learnt about it."""

    daemon: Daemon
    loop: asyncio.AbstractEventLoop
    port: int
    keys: dict[str, Key]
    figures: Figures = field(default_factory=Figures)
    # Accepted ids with the Authorization header that owns them.
    jobs: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    workloads: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    rss_start: int = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def send(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, str, bytes]:
        """One request on a fresh connection; checks and counts the answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            conn.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            payload = resp.read()
            status, content_type = resp.status, resp.getheader("Content-Type") or ""
        finally:
            conn.close()
        self.check(method, target, status, content_type, payload)
        return status, content_type, payload

    def check(
        self, method: str, target: str, status: int, content_type: str, payload: bytes
    ) -> None:
        fig = self.figures
        fig.requests += 1
        fig.status_counts[status] = fig.status_counts.get(status, 0) + 1
        where = f"{method} {target[:120]} -> {status}"
        if status >= 500 and status != 503:
            fig.server_errors += 1
            fig.failures.append(f"{where}: {payload[:300]!r}")
        if status >= 400:
            ok = content_type.startswith("application/json")
            if ok and method != "HEAD":
                try:
                    answer = json.loads(payload)
                    ok = isinstance(answer, dict) and isinstance(answer.get("error"), str)
                except ValueError:
                    ok = False
            if not ok:
                fig.non_json_errors += 1
                fig.failures.append(f"{where} not a JSON error: {content_type} {payload[:300]!r}")
        assert not fig.failures, fig.failures[-1]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    keys = {"full": make_key(), "reader": make_key("jobs:read"), "writer": make_key("jobs:write")}

    def bounded(raw: dict[str, Any]) -> None:
        raw["containers"][0].update(max_concurrency=4, queue_size=8)

    with agent_in_thread(
        tmp_path_factory.mktemp("fuzz") / "state",
        bounded,
        gpus={"enabled": False},
        api_keys={"keys": [k.entry() for k in keys.values()]},
        jobs={"max_wait_seconds": 1},
        workloads={"allowed_images": ["fuzz.invalid/*"], "stop_grace": 1, "max_running": 1},
    ) as (daemon, loop):
        assert daemon.port is not None
        running = Agent(daemon, loop, daemon.port, keys)
        running.rss_start = rss_bytes()
        yield running


# --- strategies ------------------------------------------------------------------------------

# Text with lone surrogates, NULs and astral characters; json.dumps escapes what needs it.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**64, -(2**63) - 1, 10**300, 0])
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def deep(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


ODD_JSON_TEXT = st.sampled_from(
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'"x"',
        b"1e999999",
        b"NaN",
        b'{"containers":["first"],"data":1}{}',
        b'{"containers":["first"],"data":"\\udfff"}',
        b'{"containers":["first"],"data":"\xed\xa0\x80"}',
        b'{"a":1,"a":2}',
        b"\xef\xbb\xbf{}",
        b'{"containers":["first"],"data":{"n":1' + b"0" * 5000 + b"}}",
        deep(300),
        deep(5000),
    ]
)
KEY_HEADERS = st.sampled_from(["none", "full", "reader", "writer", "bad", "malformed"])
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-16",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/json; charset=nope",
        "*/*",
        ";;;",
    ]
)
ENCODINGS = st.sampled_from(
    [None, None, None, "gzip", "gzip-raw", "deflate", "deflate-raw", "br", "identity", "x"]
)
ODD_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO", "get"]


def auth(agent: Agent, which: str) -> dict[str, str]:
    if which in agent.keys:
        return agent.keys[which].headers
    if which == "bad":
        return {"Authorization": "Bearer na_000000000000_" + "x" * 43}
    if which == "malformed":
        return {"Authorization": "Basic Zm9vOmJhcg=="}
    return {}


def encode(body: bytes, encoding: str | None, headers: dict[str, str]) -> bytes:
    """Compress ``body`` for ``encoding`` (``-raw``: the header without the compression)."""
    if encoding is None:
        return body
    name = encoding.removesuffix("-raw")
    headers["Content-Encoding"] = name
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    return body


QUERY_VALUES = st.one_of(
    TEXT,
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "true", "false", "1e400", "nan", "-1", "0", "99999999999999999999"]),
)
QUERY_NAMES = st.sampled_from(
    ["id", "wait", "intermediate", "model_id", "container_id", "limit", "cursor", "offset", "x"]
)
QUERIES = st.lists(st.tuples(QUERY_NAMES | TEXT, QUERY_VALUES), max_size=6).map(
    lambda pairs: urllib.parse.urlencode(
        [(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass")) for k, v in pairs]
    )
)


def target(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


# --- read routes -----------------------------------------------------------------------------

READ_PATHS = ["/health", "/info", "/resources", "/metrics", "/api/jobs", "/api/status", "/nope"]


@FUZZ
@given(
    method=st.sampled_from(ODD_METHODS),
    path=st.sampled_from(READ_PATHS),
    query=QUERIES,
    key=KEY_HEADERS,
    body=st.none() | st.binary(max_size=64),
)
def test_read_routes(
    agent: Agent, method: str, path: str, query: str, key: str, body: bytes | None
) -> None:
    agent.send(method, target(path, query), auth(agent, key), body)


# --- job routes (Infernet) -------------------------------------------------------------------

JOB_BODIES = st.fixed_dictionaries(
    {
        "containers": st.lists(st.sampled_from(CONTAINERS) | TEXT, min_size=0, max_size=3)
        | JSON_VALUES,
        "data": JSON_VALUES,
    },
    optional={"requires_proof": JSON_VALUES, "extra": JSON_VALUES},
).map(dumps)
VALID_JOB = st.fixed_dictionaries(
    {"containers": st.sampled_from([["first"], ["first", "second"]]), "data": JSON_VALUES}
).map(dumps)
BODIES = st.one_of(
    VALID_JOB, JOB_BODIES, JSON_VALUES.map(dumps), st.binary(max_size=200), ODD_JSON_TEXT
)


def job_payload(route: str, bodies: list[bytes]) -> bytes:
    return b"[" + b",".join(bodies) + b"]" if route == "/api/jobs/batch" else bodies[0]


@FUZZ
@given(
    route=st.sampled_from(["/api/jobs", "/api/jobs/batch", "/api/jobs/stream", "/api/status"]),
    bodies=st.lists(BODIES, min_size=1, max_size=4),
    content_type=CONTENT_TYPES,
    encoding=ENCODINGS,
    key=KEY_HEADERS,
    query=QUERIES,
    clean=st.booleans(),
    valid=st.lists(VALID_JOB, min_size=1, max_size=4),
)
def test_job_routes(
    agent: Agent,
    route: str,
    bodies: list[bytes],
    content_type: str | None,
    encoding: str | None,
    key: str,
    query: str,
    clean: bool,
    valid: list[bytes],
) -> None:
    if clean:  # half the examples are well-formed, so that many jobs are accepted and run
        bodies, content_type, encoding, key = valid, "application/json", None, "full"
    headers = auth(agent, key)
    if content_type is not None:
        headers["Content-Type"] = content_type
    payload = encode(job_payload(route, bodies), encoding, headers)
    method = "PUT" if route == "/api/status" else "POST"
    status, _, answer = agent.send(method, target(route, query), headers, payload)
    owner = auth(agent, key)
    if status != 200:
        return
    if route == "/api/jobs":
        agent.jobs.append((json.loads(answer)["id"], owner))
    elif route == "/api/jobs/batch":
        for item in json.loads(answer):
            if "id" in item:
                agent.jobs.append((item["id"], owner))
    elif route == "/api/jobs/stream":
        agent.jobs.append((answer.split(b"\n", 1)[0].decode(), owner))


# --- workload routes -------------------------------------------------------------------------

DRAFTS = st.fixed_dictionaries(
    {"image": st.sampled_from([IMAGE, "fuzz.invalid/other", "ubuntu", ""]) | TEXT},
    optional={
        "name": TEXT,
        "workload_type": st.sampled_from(["batch", "inference", "x"]) | TEXT,
        "command": st.lists(TEXT, max_size=3) | JSON_VALUES,
        "args": st.lists(TEXT, max_size=3),
        "env": st.dictionaries(TEXT, TEXT, max_size=3) | JSON_VALUES,
        "gpus": st.sampled_from([None, 0, 1, 64, -1, 2**64]),
        "model_size_gb": st.sampled_from([None, 0, 1.5, 1e9, -1]),
        "max_runtime": st.sampled_from([None, 0.5, 1e12, -1, 0]),
        "ports": st.lists(st.integers(-1, 70000), max_size=3),
        "constraints": st.dictionaries(TEXT, JSON_VALUES, max_size=2) | JSON_VALUES,
        "infernet_service": st.booleans() | JSON_VALUES,
        "callback_metadata": JSON_VALUES,
        "extra": JSON_VALUES,
    },
).map(dumps)
VALID_DRAFT = st.fixed_dictionaries(
    {"image": st.just(IMAGE), "command": st.lists(TEXT, max_size=2)},
    optional={"name": TEXT, "args": st.lists(TEXT, max_size=3), "env": st.dictionaries(TEXT, TEXT)},
).map(dumps)
WORKLOAD_BODIES = st.one_of(
    DRAFTS, DRAFTS, JSON_VALUES.map(dumps), st.binary(max_size=200), ODD_JSON_TEXT
)
JOB_SUFFIXES = st.sampled_from(["", "/runtime", "/logs/live", "/cancel", "/nope", "/"])


@FUZZ
@given(
    method=st.sampled_from(["POST", "POST", "GET", "HEAD", "DELETE", "PUT"]),
    route=st.sampled_from(["/v1/jobs", "/v1/jobs/estimate", "job"]),
    body=WORKLOAD_BODIES,
    content_type=CONTENT_TYPES,
    encoding=ENCODINGS,
    key=KEY_HEADERS,
    query=QUERIES,
    job_ref=st.sampled_from(["known", "known", "text"]),
    job_text=TEXT,
    suffix=JOB_SUFFIXES,
    clean=st.booleans(),
    draft=VALID_DRAFT,
)
def test_workload_routes(
    agent: Agent,
    method: str,
    route: str,
    body: bytes,
    content_type: str | None,
    encoding: str | None,
    key: str,
    query: str,
    job_ref: str,
    job_text: str,
    suffix: str,
    clean: bool,
    draft: bytes,
) -> None:
    if clean:
        content_type, encoding, key = "application/json", None, "full"
        if route == "/v1/jobs":
            method, body = "POST", draft
    headers = auth(agent, key)
    if content_type is not None:
        headers["Content-Type"] = content_type
    if route == "job":
        if job_ref == "known" and agent.workloads:
            job_id = agent.workloads[len(job_text) % len(agent.workloads)][0]
        else:
            job_id = urllib.parse.quote(job_text.encode("utf-8", "surrogatepass"), safe="")
        path = f"/v1/jobs/{job_id}{suffix}"
        if suffix == "/logs/live":
            method = "GET"  # a live log of a known job ends with the job (they end at pull)
    else:
        path = route
    payload = encode(body, encoding, headers) if method in ("POST", "PUT") else None
    status, _, answer = agent.send(method, target(path, query), headers, payload)
    if route == "/v1/jobs" and method == "POST" and status in (200, 201):
        agent.workloads.append((json.loads(answer)["job_id"], auth(agent, key)))


# --- raw bytes on the socket -----------------------------------------------------------------

RAW_PREFIXES = st.sampled_from(
    [
        b"",
        b"GET /health HTTP/1.1\r\n",
        b"POST /api/jobs HTTP/1.1\r\nHost: x\r\n",
        b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
        b"POST /v1/jobs HTTP/1.0\r\n",
        b"GET /v1/jobs/x/logs/live HTTP/1.1\r\nHost: x\r\n",
    ]
)


@settings(FUZZ, max_examples=150)
@given(prefix=RAW_PREFIXES, junk=st.binary(max_size=300))
def test_raw_requests(agent: Agent, prefix: bytes, junk: bytes) -> None:
    """Bytes as they come: the node may close without answering, but what it answers is
    JSON when it is an error, and never a 5xx but 503."""
    with socket.create_connection(("127.0.0.1", agent.port), timeout=TIMEOUT) as sock:
        sock.sendall(prefix + junk)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    answer = b"".join(chunks)
    if not answer:
        return
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    assert len(parts) >= 2 and parts[1].isdigit(), answer[:300]
    content_type = ""
    for line in header_lines:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            content_type = value.strip().decode("latin-1")
    if b"content-length" in head.lower():
        body = body[: int(_header(header_lines, b"content-length"))]
    agent.check("RAW", repr(prefix[:40]), int(parts[1]), content_type, body)


def _header(lines: list[bytes], name: bytes) -> bytes:
    for line in lines:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return b""


# --- afterwards ------------------------------------------------------------------------------


def wait_until(probe: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_every_accepted_job_final_capacity_released_memory_bounded(
    agent: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = agent.daemon

    fuzzed = agent.figures.requests  # before the read-back polls below
    pending_jobs = dict(agent.jobs)
    pending_workloads = dict(agent.workloads)

    def infernet_final() -> bool:
        for job_id, headers in list(pending_jobs.items()):
            query = urllib.parse.urlencode({"id": job_id, "wait": 1})
            status, _, body = agent.send("GET", f"/api/jobs?{query}", headers)
            assert status == 200, body
            listed = json.loads(body)
            assert len(listed) == 1 and listed[0]["id"] == job_id, (job_id, listed)
            if listed[0]["status"] != "running":
                del pending_jobs[job_id]
        return not pending_jobs

    def workloads_final() -> bool:
        for job_id, headers in list(pending_workloads.items()):
            status, _, body = agent.send("GET", f"/v1/jobs/{job_id}", headers)
            assert status == 200, body
            if json.loads(body)["status"] in FINAL:
                del pending_workloads[job_id]
        return not pending_workloads

    began = time.monotonic()
    wait_until(infernet_final, "accepted Infernet jobs to be final")
    jobs_final_s = time.monotonic() - began
    wait_until(workloads_final, "accepted workloads to be final")
    workloads_final_s = time.monotonic() - began - jobs_final_s
    gates = daemon.jobs.admission.gates
    wait_until(lambda: all(g.admitted == 0 for g in gates.values()), "admission released")
    service = daemon.workloads.service
    wait_until(lambda: service.counts()["active"] == 0, "workloads released")
    assert service.counts()["queued"] == 0
    assert daemon.store.running_count() == 0

    grown = rss_bytes() - agent.rss_start
    fig = agent.figures
    with capsys.disabled():  # the figures CI records
        print(
            "\nfuzz figures: "
            + json.dumps(
                {
                    "fuzz_requests": fuzzed,
                    "requests": fig.requests,
                    "server_errors_5xx": fig.server_errors,
                    "non_json_errors": fig.non_json_errors,
                    "accepted_jobs": len(agent.jobs),
                    "accepted_workloads": len(agent.workloads),
                    "statuses": dict(sorted(fig.status_counts.items())),
                    "rss_growth_mb": round(grown / 2**20, 1),
                    "seconds_to_final": [round(jobs_final_s, 2), round(workloads_final_s, 2)],
                }
            )
        )
    assert fig.server_errors == 0 and fig.non_json_errors == 0, fig.failures[:5]
    assert fig.requests > 0
    # Generous: the test process also holds hypothesis, the client and both test services.
    assert grown < 200 * 2**20, f"RSS grew by {grown / 2**20:.0f} MB"
