"""The JSON policy at the boundary (node_agent.jsonpolicy), end to end against a real agent:
big integers stay exact through parse, store, read-back and the container call; lone
surrogates and over-deep documents are a JSON 400 at parse; nothing that is refused, or fails
after admission, costs capacity or spoils a later listing."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node_agent.daemon import Daemon
from node_agent.jsonpolicy import MAX_DEPTH
from tests.conftest import unmanaged_config
from tests.support.agent import running_agent
from tests.support.docker_env import ensure_images, remove_containers, unique
from tests.support.net import free_port
from tests.support.service import ProtocolService

JSON = {"Content-Type": "application/json"}
LOOPBACK = ipaddress.ip_address("127.0.0.1")
BIG = {"u64_max": 2**64 - 1, "u64_end": 2**64, "below_i64": -(2**63) - 1, "u256": 2**256 - 1}


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as resp:
        assert resp.content_type == "application/json", await resp.text()
        # The stdlib parser: it keeps big integers exact, as a Python client does.
        return resp.status, json.loads(await resp.read())


async def post_raw(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    return await call(http, "POST", url, data=body, headers=JSON)


async def run_job(http: aiohttp.ClientSession, url: str, body: bytes) -> dict[str, Any]:
    status, answer = await post_raw(http, url + "/api/jobs", body)
    assert status == 200, answer
    status, jobs = await call(http, "GET", f"{url}/api/jobs?id={answer['id']}&wait=10")
    assert status == 200 and jobs[0]["status"] != "running", jobs
    return dict(jobs[0])


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` arrays/objects around ``leaf``, alternating so both kinds count."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def nested_text(depth: int, leaf: Any = 1) -> bytes:
    """``nested(depth, leaf)`` as JSON text (deeper than the stdlib encoder goes)."""
    opens = [b'{"k":' if level % 2 == 0 else b"[" for level in range(depth)]
    closes = [b"}" if level % 2 == 0 else b"]" for level in range(depth)]
    return b"".join(reversed(opens)) + json.dumps(leaf).encode() + b"".join(closes)


def job_body(data: Any, containers: str = '["first"]') -> bytes:
    text = data if isinstance(data, bytes) else json.dumps(data).encode()
    return b'{"containers":%s,"data":%s}' % (containers.encode(), text)


async def assert_refused(
    http: aiohttp.ClientSession, url: str, body: bytes, *, path: str = "/api/jobs"
) -> dict[str, Any]:
    status, answer = await call(http, "POST", url + path, data=body, headers=JSON)
    assert status == 400 and answer["error"] == "Invalid JSON body", answer
    assert isinstance(answer["params"]["problem"], str), answer
    return dict(answer["params"])


async def assert_listings_work(http: aiohttp.ClientSession, url: str) -> None:
    """Every job of the client can still be listed, read back and polled in one batch."""
    status, ids = await call(http, "GET", url + "/api/jobs")
    assert status == 200
    if ids:
        query = "&".join(f"id={i}" for i in ids)
        status, jobs = await call(http, "GET", f"{url}/api/jobs?{query}&intermediate=true")
        assert status == 200 and len(jobs) == len(ids)


# --- integers --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["plain", "signature_in_data", "signature_deep"])
async def test_big_integers_stay_exact_through_store_read_back_and_container(
    services: dict[str, tuple[ProtocolService, str]],
    tmp_path: Path,
    http: aiohttp.ClientSession,
    where: str,
) -> None:
    """With or without a ``signature`` key (which once switched parsers and leaked the
    admission slot), integers beyond 64 bits reach the container and come back exact —
    from memory, and from SQLite after a restart."""
    data: dict[str, Any] = dict(BIG)
    if where == "signature_in_data":
        data["signature"] = {"r": 2**255 + 1, "s": 7}
    elif where == "signature_deep":
        data["x"] = [{"signature": 10**30}]
    raw = unmanaged_config(services)
    state = tmp_path / "s"
    async with running_agent(raw, state) as (_, url):
        job = await run_job(http, url, job_body(data))
        assert job["status"] == "success", job
        assert job["result"]["output"]["input"] == data
        # The container got the exact integers (its stdlib parser kept them).
        assert services["first"][0].requests[-1]["data"] == data
        await assert_listings_work(http, url)
    async with running_agent(raw, state) as (_, url):
        status, jobs = await call(http, "GET", f"{url}/api/jobs?id={job['id']}")
        assert status == 200 and jobs[0]["result"]["output"]["input"] == data


async def test_big_integers_in_a_chain_and_a_batch(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession
) -> None:
    """Container output with big integers is the next container's exact input."""
    _, url = agent
    body = b"[%s,%s]" % (job_body(BIG, '["first","second"]'), job_body({"n": 10**40}))
    status, answers = await post_raw(http, url + "/api/jobs/batch", body)
    assert status == 200 and all("id" in a for a in answers), answers
    query = "&".join(f"id={a['id']}" for a in answers)
    status, jobs = await call(http, "GET", f"{url}/api/jobs?{query}&wait=10&intermediate=true")
    assert [j["status"] for j in jobs] == ["success", "success"], jobs
    first_output = jobs[0]["intermediate_results"][0]["output"]
    assert first_output["input"] == BIG
    assert jobs[0]["result"]["output"]["input"] == first_output
    assert jobs[1]["result"]["output"]["input"] == {"n": 10**40}


async def test_integer_longer_than_the_limit_is_refused_with_the_limit(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession
) -> None:
    _, url = agent
    params = await assert_refused(
        http, url, b'{"containers":["first"],"data":{"n":1%s}}' % (b"0" * 4300)
    )
    assert params["max_int_digits"] == 4300
    assert (await run_job(http, url, job_body({"n": 10**4299})))["status"] == "success"


# --- lone surrogates -------------------------------------------------------------------------

ESCAPED = b"\\udfff"
RAW = b"\xed\xa0\x80"  # U+D800 encoded as if it were a character: not UTF-8


@pytest.mark.parametrize("surrogate", [ESCAPED, RAW], ids=["escaped", "raw_bytes"])
@pytest.mark.parametrize(
    "template",
    [
        b'{"containers":["first"],"data":{"text":"a%sb"}}',
        b'{"containers":["first"],"data":{"a%sb":1}}',
        b'{"containers":["fir%sst"],"data":{}}',
        # With a long number the body takes the exact (stdlib) parser, which by itself lets
        # lone surrogates through.
        b'{"containers":["first"],"data":{"n":123456789012345678901234,"t":"%s"}}',
        b'{"containers":["x%s"],"data":{"n":123456789012345678901234}}',
        b'{"containers":["first"],"data":{"signature":1,"%s":2}}',
    ],
    ids=["data", "key", "container_id", "exact_data", "exact_container_id", "signature"],
)
async def test_lone_surrogates_are_a_json_400_at_parse(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession, template: bytes, surrogate: bytes
) -> None:
    daemon, url = agent
    body = template % surrogate
    params = await assert_refused(http, url, body)
    assert "surrogate" in params["problem"] or "UTF-8" in params["problem"], params
    await assert_refused(http, url, b"[%s]" % body, path="/api/jobs/batch")
    await assert_refused(http, url, body, path="/api/jobs/stream")
    status, answer = await call(
        http,
        "PUT",
        url + "/api/status",
        data=b'{"id":"a%sb","status":"success","containers":[]}' % surrogate,
    )
    assert (status, answer["error"]) == (400, "Invalid JSON body")
    assert daemon.jobs.admission.gates["first"].admitted == 0
    await assert_listings_work(http, url)


async def test_surrogate_pairs_are_text_and_kept(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession
) -> None:
    _, url = agent
    body = b'{"containers":["first"],"data":{"e":"\\ud83d\\ude00","n":%d}}' % 2**70
    job = await run_job(http, url, body)
    assert job["result"]["output"]["input"] == {"e": "\U0001f600", "n": 2**70}


# --- depth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("big", [False, True], ids=["fast_parser", "exact_parser"])
async def test_depth_boundary(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession, big: bool
) -> None:
    """The whole body may nest MAX_DEPTH arrays/objects: a job's data one less. Such a job is
    stored, listed and read back; one level more, and every depth the serialiser could not
    write back (251–253 were once accepted and then broke listings, 254–999 a 500), is a 400
    that names the limit."""
    daemon, url = agent
    leaf = 10**25 if big else 1
    job = await run_job(http, url, job_body(nested(MAX_DEPTH - 1, leaf)))
    assert job["status"] == "success"
    assert job["result"]["output"]["input"] == nested(MAX_DEPTH - 1, leaf)
    for depth in (MAX_DEPTH, 250, 251, 252, 253, 254, 255, 999, 1000, 1025, 5000):
        params = await assert_refused(http, url, job_body(nested_text(depth, leaf)))
        assert params["max_depth"] == MAX_DEPTH, (depth, params)
    # In a batch the list is one more level.
    await assert_refused(
        http, url, b"[%s]" % job_body(nested(MAX_DEPTH - 1, leaf)), path="/api/jobs/batch"
    )
    assert daemon.jobs.admission.gates["first"].admitted == 0
    await assert_listings_work(http, url)


async def test_a_row_stored_before_the_policy_does_not_break_listings(
    services: dict[str, tuple[ProtocolService, str]],
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    """A result 252 deep, as the node once stored and then could not send back: read from
    SQLite it becomes an error result, and the listings that include it answer."""
    raw = unmanaged_config(services)
    state = tmp_path / "s"
    async with running_agent(raw, state) as (daemon, url):
        job = await run_job(http, url, job_body({"a": 1}))
        path = daemon.store.path
    deep = b'[{"container":"first","output":%s}]' % nested_text(250)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE jobs SET results = ? WHERE id = ?", (deep, job["id"]))
    async with running_agent(raw, state) as (_, url):
        status, jobs = await call(http, "GET", f"{url}/api/jobs?id={job['id']}")
        assert status == 200 and jobs[0]["status"] == "success"
        assert jobs[0]["result"]["error"].startswith("stored result unreadable: nested deeper")
        await assert_listings_work(http, url)


async def test_container_output_too_deep_fails_the_job_not_the_node(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession
) -> None:
    """The same policy applies to container answers: the echo service wraps its input one
    level deeper, so in a chain the second answer is over the limit. The job fails with an
    error that says why; it and every listing stay readable."""
    _, url = agent
    job = await run_job(http, url, job_body(nested(MAX_DEPTH - 1), '["first","second"]'))
    assert job["status"] == "failed"
    error = job["result"]["error"]
    assert "container second" in error and f"nested deeper than {MAX_DEPTH}" in error, error
    await assert_listings_work(http, url)


# --- nothing costs capacity ------------------------------------------------------------------


def poisoned_bodies() -> list[bytes]:
    """Bodies that once took a slot for good, answered 500, or broke listings."""
    return [
        job_body({"signature": {"r": 2**255}, "n": 2**64}),
        b'{"containers":["first"],"data":{"t":"\\udfff"}}',
        b'{"containers":["first"],"data":{"t":"\xed\xa0\x80"}}',
        b'{"containers":["\\udfff"],"data":{}}',
        job_body(nested_text(251)),
        job_body(nested_text(253)),
        job_body(nested_text(600)),
    ]


async def test_failure_after_admission_releases_the_slot(
    services: dict[str, tuple[ProtocolService, str]],
    tmp_path: Path,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever fails once a job holds its slots (here the store refusing the row, as an
    unserialisable body once did) gives them back: 10× the capacity of such requests, and
    the container still takes work."""
    raw = unmanaged_config(services)
    raw["containers"][0].update(max_concurrency=1, queue_size=2)
    async with running_agent(raw, tmp_path / "s") as (daemon, url):
        store = daemon.store
        real = store.begin_create

        def refuse(job: Any, *, live: bool = True) -> asyncio.Future[None]:
            if isinstance(job.data, dict) and job.data.get("poison"):
                raise TypeError("cannot serialise this job")
            return real(job, live=live)

        monkeypatch.setattr(store, "begin_create", refuse)
        gate = daemon.jobs.admission.gates["first"]
        for _ in range(10 * gate.capacity):
            status, answer = await post_raw(http, url + "/api/jobs", job_body({"poison": 1}))
            assert (status, answer["error"]) == (500, "Internal server error")
        status, answers = await post_raw(
            http, url + "/api/jobs/batch", b"[%s]" % b",".join([job_body({"poison": 1})] * 30)
        )
        assert status == 500 or all("error" in a for a in answers), answers
        assert gate.admitted == 0 and store.running_count() == 0
        assert (await run_job(http, url, job_body({"ok": 1})))["status"] == "success"
        await assert_listings_work(http, url)


async def test_a_stream_never_started_releases_its_slots(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession
) -> None:
    """A stream whose response never began (client gone, prepare failed) still ends: its
    slots are freed and the job is final."""
    daemon, url = agent
    jobs = daemon.jobs
    gate = jobs.admission.gates["first"]
    job, stream = await jobs.open_stream("127.0.0.1", LOOPBACK, ["first"], {}, False)
    assert gate.admitted == 1
    await stream.aclose()
    assert gate.admitted == 0 and job.status.value == "failed"
    _, listed = await call(http, "GET", f"{url}/api/jobs?id={job.id}")
    assert listed[0]["result"]["error"] == "stream interrupted"


# --- decoding and HTTP/1.0 -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/jobs", "/api/jobs/batch", "/api/jobs/stream"])
async def test_gzip_body_decoded_and_bad_gzip_is_a_json_400(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession, path: str
) -> None:
    _, url = agent
    body = job_body({"z": 1})
    if path.endswith("batch"):
        body = b"[%s]" % body
    headers = {**JSON, "Content-Encoding": "gzip"}
    async with http.post(url + path, data=gzip.compress(body), headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        await resp.read()
    status, answer = await call(http, "POST", url + path, data=b"not gzip", headers=headers)
    assert status == 400 and answer["error"] == "Invalid request body encoding", answer
    assert answer["params"]["content_encoding"] == "gzip"
    # Cut short, gzip yields what there is (aiohttp does not check the trailer): the JSON is
    # then incomplete or empty.
    for bad in (gzip.compress(body)[:-12], b"\x1f\x8b\x08\x00garbage"):
        status, answer = await call(http, "POST", url + path, data=bad, headers=headers)
        assert status == 400 and answer["error"] == "Invalid JSON body", answer
    status, answer = await call(
        http,
        "PUT",
        url + "/api/status",
        data=b"garbage",
        headers={"Content-Encoding": "deflate"},
    )
    assert status == 400 and answer["error"] == "Invalid request body encoding", answer
    await assert_listings_work(http, url)


async def http10(url: str, request: bytes) -> bytes:
    """Send one raw request and read the answer until the server closes the connection."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def json_answer(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/jobs"),
        ("POST", "/api/jobs/batch"),
        ("POST", "/api/jobs/stream"),
        ("PUT", "/api/status"),
    ],
)
async def test_undecodable_content_encoding_is_a_json_415(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession, method: str, path: str
) -> None:
    """``br`` (no Brotli installed) is refused by aiohttp before any handler runs: still the
    node's JSON, and the node goes on serving."""
    _, url = agent
    body = b"\x0b\x02\x80{}\x03"
    status, answer = json_answer(
        await http10(
            url,
            b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: br\r\nContent-Length: %d\r\n\r\n%s"
            % (method.encode(), path.encode(), len(body), body),
        )
    )
    assert status == 415 and answer["error"] == "Unsupported content encoding", answer
    assert "br" in answer["params"]["problem"]
    await assert_listings_work(http, url)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n",
        b"BR@KEN /health HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["content_length", "header", "method"],
)
async def test_malformed_requests_get_a_json_400(
    agent: tuple[Daemon, str], request_bytes: bytes
) -> None:
    _, url = agent
    status, answer = json_answer(await http10(url, request_bytes))
    assert status == 400 and answer["error"] == "Bad Request", answer
    assert answer["params"]["problem"], answer


async def test_stream_over_http10_is_close_delimited(
    agent: tuple[Daemon, str], http: aiohttp.ClientSession
) -> None:
    """HTTP/1.0 has no chunked encoding: the id line and the bytes come unframed and the
    connection closes at the end (once a 500, and a job left holding its slot)."""
    daemon, url = agent
    body = job_body({"prompt": "hi"})
    answer = await http10(
        url,
        b"POST /api/jobs/stream HTTP/1.0\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), answer
    assert b"transfer-encoding" not in head.lower()
    job_id, _, text = payload.partition(b"\n")
    assert text == b"alpha beta gamma"
    _, jobs = await call(http, "GET", f"{url}/api/jobs?id={job_id.decode()}&wait=5")
    assert jobs[0]["status"] == "success" and jobs[0]["result"]["output"]["output"] == (
        "alpha beta gamma"
    )
    assert daemon.jobs.admission.gates["first"].admitted == 0


# --- the real echo container -----------------------------------------------------------------


@pytest.fixture
async def echo_agent(tmp_path: Path) -> AsyncIterator[tuple[Daemon, str, str]]:
    """A node running the example echo image in Docker, with room for 1 + 2 jobs."""
    await asyncio.to_thread(ensure_images)
    cid = unique("na-test-echo")
    raw = {
        "manage_containers": True,
        "startup_wait": 20,
        "runtime": {"pull": False, "stop_timeout": 1},
        "containers": [
            {
                "id": cid,
                "image": "node-agent/echo:latest",
                "port": free_port(),
                "max_concurrency": 1,
                "queue_size": 2,
            }
        ],
    }
    try:
        async with running_agent(raw, tmp_path / "s") as (daemon, url):
            yield daemon, url, cid
    finally:
        await asyncio.to_thread(remove_containers, [cid])


@pytest.mark.docker
async def test_poisoned_bodies_cost_no_capacity_on_a_real_container(
    echo_agent: tuple[Daemon, str, str], http: aiohttp.ClientSession
) -> None:
    """10× the container's capacity of each body that once leaked a slot, answered 500 or
    broke listings: each is refused with a JSON 400 or runs to the end (big integers, exact),
    and afterwards the container has all its room and runs a normal job."""
    daemon, url, cid = echo_agent
    gate = daemon.jobs.admission.gates[cid]
    containers = json.dumps([cid])
    accepted = []
    for template in poisoned_bodies():
        body = template.replace(b'["first"]', containers.encode())
        for _ in range(10 * gate.capacity):
            status, answer = await post_raw(http, url + "/api/jobs", body)
            if status == 200:
                accepted.append(answer["id"])
                # Each accepted one holds a slot until it ends: wait, as a client would.
                status, jobs = await call(http, "GET", f"{url}/api/jobs?id={answer['id']}&wait=10")
                assert jobs[0]["status"] == "success", jobs
            else:
                assert (status, answer["error"]) == (400, "Invalid JSON body"), answer
    assert len(accepted) == 10 * gate.capacity  # the big-integer body, the rest refused
    status, jobs = await call(http, "GET", f"{url}/api/jobs?id={accepted[0]}")
    assert jobs[0]["result"]["output"] == {"output": {"signature": {"r": 2**255}, "n": 2**64}}
    assert gate.admitted == 0
    job = await run_job(http, url, job_body({"hello": "world"}, containers))
    assert job["result"]["output"] == {"output": {"hello": "world"}}
    await assert_listings_work(http, url)
