"""``node-agent job`` against a real agent: Infernet jobs on the example images in Docker,
workloads in real containers, the live log over server-sent events, paging, errors.

One agent serves the whole module (its managed containers take seconds to start); each test
uses its own API key where it counts jobs, since a key is its own job namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from node_agent.chain.devnet import DELEGATE_SIGNER_KEY, NODE_KEYS
from node_agent.client import SseEvent, SseParser
from node_agent.workloads.docker_adapter import LABEL_NODE
from node_agent.workloads.node import node_tag
from tests.chain.chain_support import (  # anvil and devnet are fixtures
    Devnet,
    agent_config,
    anvil,
    client_body,
    devnet,
    eventually,
)
from tests.cli.test_status_doctor import cli, run_cli
from tests.support.agent import running_agent
from tests.support.docker_env import docker_client, ensure_images, remove_containers, unique
from tests.support.infernet_client import load_subscription_class
from tests.support.net import free_port
from tests.support.service import running_service
from tests.workloads.support import BASE_IMAGE, Key, make_key

__all__ = ["anvil", "devnet"]  # fixtures of the delegated-subscription test
ROOT = Path(__file__).resolve().parents[2]
KEYS = ("alice", "lister", "infernet")
T = TypeVar("T")


def on_the_node(test: T) -> T:
    """A test of the shared agent: it runs in the agent's (module) loop, and needs Docker."""
    marked: T = pytest.mark.docker(pytest.mark.asyncio(loop_scope="module")(test))
    return marked


class Node:
    def __init__(self, url: str, keys: dict[str, Key], echo: str, faulty: str) -> None:
        self.url, self.keys, self.echo, self.faulty = url, keys, echo, faulty

    def argv(self, verb: str, *args: str, key: str | None = "alice") -> list[str]:
        """``job <verb> --url U [--api-key K] <args>`` (a command after ``--`` ends options)."""
        auth = ["--api-key", self.keys[key].token] if key else []
        return ["job", verb, "--url", self.url, *auth, *args]


def _remove_workloads(tag: str) -> None:
    client = docker_client()
    try:
        for container in client.containers.list(all=True, filters={"label": f"{LABEL_NODE}={tag}"}):
            container.remove(force=True)
    finally:
        client.close()


@contextlib.contextmanager
def agent_logs_to(path: Path) -> Iterator[None]:
    """The agent's log lines go to a file: the CLI's stdout is captured while the agent serves
    from the same process, and a log line there would be read as the command's output."""
    saved = structlog.get_config()
    with path.open("w") as log:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(log))
        try:
            yield
        finally:
            structlog.configure(**saved)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    await asyncio.to_thread(ensure_images)
    keys = {name: make_key() for name in KEYS}
    echo, faulty = unique("na-test-jobcli-echo"), unique("na-test-jobcli-faulty")
    state = tmp_path_factory.mktemp("jobcli") / "state"
    raw = {
        "manage_containers": True,
        "startup_wait": 20,
        "runtime": {"pull": False, "watch_interval": 0.5, "stop_timeout": 1},
        "containers": [
            {"id": echo, "image": "node-agent/echo:latest", "port": free_port()},
            {"id": faulty, "image": "node-agent/faulty:latest", "port": free_port(), "timeout": 5},
        ],
        "gpus": {"enabled": False},
        "api_keys": {"keys": [k.entry() for k in keys.values()]},
        "workloads": {"stop_grace": 1},
    }
    try:
        with agent_logs_to(state.parent / "agent.log"):
            async with running_agent(raw, state) as (_, url):
                yield Node(url, keys, echo, faulty)
    finally:
        await asyncio.to_thread(remove_containers, [echo, faulty])
        await asyncio.to_thread(_remove_workloads, node_tag(state))


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The developer's own node settings must not leak into the tests."""
    monkeypatch.delenv("NODE_AGENT_URL", raising=False)
    monkeypatch.delenv("NODE_AGENT_API_KEY", raising=False)
    yield


async def ok(argv: list[str]) -> str:
    code, out, err = await cli(argv)
    assert code == 0, (argv[:3], out, err)
    return out


async def ok_json(argv: list[str]) -> Any:
    return json.loads(await ok([*argv, "--json"]))


# --- Infernet jobs ----------------------------------------------------------------------------


@on_the_node
async def test_infernet_job_submit_then_wait_for_its_result(node: Node) -> None:
    out = await ok(node.argv("submit", "-c", node.echo, "--data", '{"text": "hi"}'))
    job_id = out.strip()
    assert len(job_id) == 36 and "\n" not in job_id  # just the id: scripts capture it

    code, out, err = await cli(node.argv("wait", job_id, "--timeout", "60"))
    assert code == 0, (out, err)
    assert f"{job_id}  (infernet)" in out and "success" in out
    assert '{"output":{"text":"hi"}}' in out

    doc = await ok_json(node.argv("get", job_id, "--kind", "infernet"))
    assert doc["kind"] == "infernet" and doc["status"] == "success"
    assert doc["result"] == {"container": node.echo, "output": {"output": {"text": "hi"}}}


@on_the_node
async def test_infernet_job_that_fails_makes_wait_exit_1(node: Node, tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text('{"mode": "json500"}')
    argv = node.argv("submit", "-c", node.faulty, "--data", f"@{data}", "--wait", "--json")
    code, out, err = await cli(argv)
    assert code == 1, (out, err)
    doc = json.loads(out)
    assert doc["status"] == "failed" and "500" in doc["result"]["error"]
    code, out, _ = await cli(node.argv("wait", doc["id"]))
    assert code == 1 and "failed" in out and "error" in out


@on_the_node
async def test_infernet_stream_prints_the_output_as_it_arrives(node: Node) -> None:
    argv = node.argv("submit", "-c", node.echo, "--stream", "--data", '{"prompt": "one two"}')
    code, out, err = await cli(argv)
    assert code == 0, err
    assert out.split() == ["one", "two"]
    assert err.startswith("job ")
    code, out, _ = await cli([*argv, "--json"])
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "id" in lines[0]
    assert "".join(line["data"] for line in lines[1:]).split() == ["one", "two"]


@on_the_node
async def test_batch_shows_each_answer_and_exits_3_when_one_is_refused(
    node: Node, tmp_path: Path
) -> None:
    batch = tmp_path / "batch.json"
    batch.write_text(
        json.dumps(
            [
                {"containers": [node.echo], "data": {"n": 1}},
                {"containers": ["no-such-container"], "data": {}},
            ]
        )
    )
    code, out, err = await cli(node.argv("submit", "--batch", str(batch)))
    assert code == 3, (out, err)
    rows = out.splitlines()
    assert rows[0].split() == ["#", "JOB", "ID"]
    assert rows[1].startswith("0 ") and len(rows[1].split()[1]) == 36
    assert rows[2].startswith("1 ") and "refused: Container not supported" in rows[2]
    code, out, _ = await cli(node.argv("submit", "--batch", str(batch), "--json"))
    answers = json.loads(out)
    assert code == 3 and "id" in answers[0] and answers[1]["error"] == "Container not supported"


@on_the_node
async def test_delegated_file_is_checked_then_the_node_answers(node: Node, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"subscription": {"owner": "0x12"}, "signature": {}}))
    code, out, err = await cli(node.argv("submit", "--delegated", str(broken)))
    assert code == 2 and out == ""
    assert err.startswith("node-agent job: --delegated: ") and len(err.splitlines()) == 1

    zero = "0x" + "00" * 20
    signed = {
        "subscription": {
            "owner": "0x" + "11" * 20,
            "active_at": 0,
            "period": 0,
            "frequency": 1,
            "redundancy": 1,
            "containers": "0x" + "ab" * 32,
            "lazy": False,
            "verifier": zero,
            "payment_amount": 0,
            "payment_token": zero,
            "wallet": zero,
        },
        "signature": {"nonce": 1, "expiry": 2**31, "v": 27, "r": 1, "s": 2},
        "data": {"prompt": "hi"},
    }
    path = tmp_path / "signed.json"
    path.write_text(json.dumps(signed))
    # This node has no chain: its refusal is the one line shown, with exit status 3.
    code, out, err = await cli(node.argv("submit", "--delegated", str(path)))
    assert code == 3 and out == ""
    assert err == "node-agent job: HTTP 400: Chain not enabled\n"


@pytest.mark.chain
async def test_a_signed_delegated_subscription_from_a_file_is_accepted(
    devnet: Devnet, tmp_path: Path
) -> None:
    """On a chain-enabled node (anvil, the project's contracts): the file infernet-client's
    body was written to goes through intact (the node checks its signer before answering)."""
    net = devnet
    with agent_logs_to(tmp_path / "agent.log"):
        await _delegated_through_the_cli(net, tmp_path)


async def _delegated_through_the_cli(net: Devnet, tmp_path: Path) -> None:
    async with (
        running_service("echo") as (_, service_url),
        running_agent(agent_config(net, service_url, tmp_path / "state"), tmp_path) as (_, url),
    ):

        async def chain_ready() -> bool:
            _, out, _ = await cli(["status", "--url", url, "--json"])
            return bool(json.loads(out)["health"]["checks"]["chain"]["status"] == "ok")

        await eventually(chain_ready, what="the chain check ok")
        now = int((await net.w3.eth.get_block("latest"))["timestamp"])
        zero = "0x" + "00" * 20
        sub = load_subscription_class()(
            net.examples.delegator, now - 1, 0, 1, 1, ["echo"], False, zero, 0, zero, zero
        )
        for signer, nonce in ((NODE_KEYS[1], 1), (DELEGATE_SIGNER_KEY, 1)):
            body = client_body(net, sub, nonce=nonce, expiry=now + 600, key=signer, data={"a": 1})
            (tmp_path / "signed.json").write_text(json.dumps(body))
            code, out, err = await cli(
                ["job", "submit", "--url", url, "--delegated", str(tmp_path / "signed.json")]
            )
            if signer == DELEGATE_SIGNER_KEY:
                assert (code, out, err) == (0, "delegated subscription accepted\n", "")
            else:
                assert code == 3 and out == "" and len(err.splitlines()) == 1
                assert err.startswith("node-agent job: HTTP 400: Signer mismatch (signer: 0x")
        delegator = net.contract("ExampleDelegatorConsumer", net.examples.delegator)

        async def delivered() -> bool:
            return bool(await delegator.functions.deliveryCount().call() == 1)

        await eventually(delivered, what="the delegated subscription delivered")


# --- workloads --------------------------------------------------------------------------------


@on_the_node
async def test_workload_logs_follow_and_wait_reflect_the_exit_code(node: Node) -> None:
    script = "echo hello; sleep 0.5; echo 'to stderr' >&2; echo bye; exit 3"
    out = await ok(
        node.argv("submit", "--image", BASE_IMAGE, "--name", "t", "--", "sh", "-c", script)
    )
    job_id = out.strip()

    code, out, err = await cli(node.argv("logs", job_id, "--follow"))
    assert code == 0, err
    lines = ["bye", "hello", "to stderr"]  # stdout and stderr are captured apart: any order
    assert sorted(out.splitlines()) == lines
    assert err == f"job {job_id}: failed (exit code 3)\n"

    code, out, _ = await cli(node.argv("wait", job_id, "--timeout", "60"))
    assert code == 1
    assert "failed  (exit code 3)" in out and "command exited with code 3" in out
    assert f"command   {shlex.join(['sh', '-c', script])}\n" in out

    code, out, _ = await cli(node.argv("logs", job_id))
    assert code == 0 and sorted(out.splitlines()) == lines
    code, out, _ = await cli(node.argv("logs", job_id, "--follow", "--json"))
    events = [json.loads(line) for line in out.splitlines()]
    text = "".join(e["data"] for e in events if e["event"] == "log")
    assert sorted(text.splitlines()) == lines
    assert events[-1] == {
        "event": "end",
        "job_id": job_id,
        "status": "failed",
        "exit_code": 3,
        "error": "command exited with code 3",
    }


@on_the_node
async def test_workload_submit_wait_succeeds_with_env_and_json(node: Node) -> None:
    argv = node.argv(
        "submit", "--image", BASE_IMAGE, "--env", "GREETING=hej", "--wait", "--timeout", "60",
        "--json", "--", "sh", "-c", 'test "$GREETING" = hej',
    )  # fmt: skip
    code, out, err = await cli(argv)
    assert code == 0, (out, err)
    doc = json.loads(out)
    assert doc["kind"] == "workload" and doc["status"] == "succeeded" and doc["exit_code"] == 0
    assert doc["args"] == ["sh", "-c", 'test "$GREETING" = hej'] and doc["command"] is None
    # get finds it without --kind: a key's workloads come first.
    code, out, _ = await cli(node.argv("get", doc["job_id"]))
    assert code == 0 and "succeeded  (exit code 0)" in out and "(workload)" in out


@on_the_node
async def test_cancel_a_long_workload(node: Node) -> None:
    job_id = (await ok(node.argv("submit", "--image", BASE_IMAGE, "--", "sleep", "300"))).strip()

    async def running() -> bool:
        doc = await ok_json(node.argv("get", job_id))
        return bool(doc["status"] == "running")

    deadline = asyncio.get_running_loop().time() + 60
    while not await running():
        assert asyncio.get_running_loop().time() < deadline, "never ran"
        await asyncio.sleep(0.1)
    code, out, err = await cli(node.argv("cancel", job_id, "--wait", "--timeout", "60"))
    assert code == 0, err
    assert out == f"{job_id}  cancelled\n"
    code, out, _ = await cli(node.argv("wait", job_id, "--json"))
    assert code == 1 and json.loads(out)["status"] == "cancelled"
    # Cancelling again is harmless; an Infernet id is not a workload.
    assert (await ok(node.argv("cancel", job_id))) == f"{job_id}  cancelled\n"


@on_the_node
async def test_estimate_and_a_refused_draft(node: Node) -> None:
    out = await ok(node.argv("estimate", "--image", BASE_IMAGE, "--", "true"))
    assert out.startswith("fits") and "yes" in out.splitlines()[0]
    doc = await ok_json(node.argv("estimate", "--image", BASE_IMAGE, "--max-runtime", "60"))
    assert doc["fits"] is True and doc["gpu_count"] == 0
    code, out, err = await cli(node.argv("submit", "--image", "Bad Image!", "--", "true"))
    assert code == 3 and out == ""
    assert err.startswith("node-agent job: HTTP 400: Invalid job (field: image, problem: ")


@on_the_node
async def test_wait_timeout_exits_5(node: Node) -> None:
    job_id = (await ok(node.argv("submit", "--image", BASE_IMAGE, "--", "sleep", "300"))).strip()
    code, out, err = await cli(node.argv("wait", job_id, "--timeout", "0.5"))
    assert code == 5 and out == ""
    assert err.startswith(f"node-agent job: job {job_id} is still ") and "after 0.5 s" in err
    await ok(node.argv("cancel", job_id, "--wait", "--timeout", "60"))


# --- listing ----------------------------------------------------------------------------------


@on_the_node
async def test_list_pages_through_workloads_and_infernet_jobs(node: Node) -> None:
    workloads = [
        (await ok(node.argv("submit", "--image", BASE_IMAGE, "--", "true", key="lister"))).strip()
        for _ in range(3)
    ]
    for job_id in workloads:
        await ok(node.argv("wait", job_id, key="lister"))

    code, out, err = await cli(node.argv("list", "--limit", "2", key="lister"))
    assert code == 0, err
    rows = out.splitlines()
    assert rows[0].split()[:4] == ["JOB", "ID", "STATUS", "EXIT"]
    assert [r.split()[0] for r in rows[1:]] == workloads[::-1][:2]  # newest first
    assert all(r.split()[1:3] == ["succeeded", "0"] for r in rows[1:])
    assert err.startswith("more: --cursor ")
    cursor = err.split()[-1]
    out = await ok(node.argv("list", "--limit", "2", "--cursor", cursor, key="lister"))
    assert [r.split()[0] for r in out.splitlines()[1:]] == [workloads[0]]

    doc = await ok_json(node.argv("list", "--limit", "2", "--all", key="lister"))
    assert doc["kind"] == "workload" and doc["next_cursor"] is None
    assert [j["job_id"] for j in doc["jobs"]] == workloads[::-1]

    infernet = [
        (await ok(node.argv("submit", "-c", node.echo, "--wait", key="infernet"))).split()[1]
        for _ in range(3)
    ]
    doc = await ok_json(
        node.argv("list", "--kind", "infernet", "--limit", "2", "--all", key="infernet")
    )
    assert doc["kind"] == "infernet" and doc["next_cursor"] is None
    assert sorted(j["id"] for j in doc["jobs"]) == sorted(infernet)
    assert {j["status"] for j in doc["jobs"]} == {"success"}
    out = await ok(node.argv("list", "--kind", "infernet", "--all", key="infernet"))
    assert out.splitlines()[0].split() == ["JOB", "ID", "STATUS", "CONTAINER"]
    assert len(out.splitlines()) == 4 and all(node.echo in r for r in out.splitlines()[1:])


# --- failures and the command line itself ----------------------------------------------------


@on_the_node
async def test_a_wrong_key_is_one_line_and_never_echoed(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "nak_wrong_" + "z" * 40
    for argv in (
        ["job", "list", "--url", node.url, "--api-key", secret],
        [
            "job",
            "get",
            "0190a000-0000-7000-8000-000000000000",
            "--url",
            node.url,
            "--api-key",
            secret,
        ],
    ):
        code, out, err = await cli(argv)
        assert code == 3 and out == ""
        assert err == "node-agent job: HTTP 401: Invalid API key\n"
        assert secret not in err
    monkeypatch.setenv("NODE_AGENT_API_KEY", secret)
    monkeypatch.setenv("NODE_AGENT_URL", node.url)
    code, out, err = await cli(["job", "list", "--json"])
    assert code == 3 and err == "node-agent job: HTTP 401: Invalid API key\n"


@on_the_node
async def test_unknown_job_and_workloads_without_a_key(node: Node) -> None:
    missing = "0190a000-0000-7000-8000-000000000000"
    code, _, err = await cli(node.argv("get", missing))
    assert code == 3 and err == f"node-agent job: no job {missing} on this node for this caller\n"
    code, _, err = await cli(node.argv("get", missing, key=None))
    assert code == 3 and "workloads need an API key" in err
    code, _, err = await cli(node.argv("logs", missing, key=None))
    assert code == 3 and err == (
        "node-agent job: HTTP 401: API key required (scope: jobs:read/jobs:write) "
        "(pass --api-key or set $NODE_AGENT_API_KEY)\n"
    )


def test_a_dead_url_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = run_cli(["job", "list", "--url", url, "--api-key", "nak_secret_123"])
    assert code == 4 and out == ""
    assert err == f"node-agent job: cannot reach the node at {url}: Connection refused\n"


def test_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # never reached: input is checked first
    code, _, err = run_cli(["job", "submit", "-c", "echo", "--data", "{oops", "--url", url])
    assert code == 2 and err.startswith("node-agent job: --data: not JSON: ")
    code, _, err = run_cli(["job", "submit", "--delegated", str(tmp_path / "none"), "--url", url])
    assert code == 2 and "cannot read" in err
    code, _, err = run_cli(["job", "submit", "-c", "echo", "--url", url, "--", "ls"])
    assert code == 2 and err == "node-agent job: a command after --: only with --image\n"
    code, _, err = run_cli(["job", "submit", "--image", "x", "--stream", "--url", url])
    assert code == 2 and err == "node-agent job: --stream: only with --container\n"
    with pytest.raises(SystemExit) as exited:  # argparse's own usage error
        run_cli(["job", "wait", "x", "--timeout", "-1", "--url", url])
    assert exited.value.code == 2


async def test_a_server_that_is_not_a_node_or_does_not_answer() -> None:
    """Real HTTP servers that are not node-agent: a proxy's HTML error, a JSON answer of
    another shape, one that never answers (the per-call limit ends the wait)."""
    never = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/v1/jobs":
            return web.json_response({"hello": "world"})
        if request.path.startswith("/v1/jobs/"):
            await never.wait()
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        code, out, err = await cli(["job", "list", "--url", url, "--api-key", "k"])
        assert (code, out) == (
            3,
            "",
        ) and err == "node-agent job: GET /v1/jobs: not a node-agent answer\n"
        code, _, err = await cli(["job", "get", "x", "--url", url, "--kind", "infernet"])
        assert (
            code == 3 and err == "node-agent job: HTTP 502: Bad Gateway (not a node-agent answer)\n"
        )
        argv = ["job", "cancel", "x", "--url", url, "--api-key", "k", "--request-timeout", "0.3"]
        code, _, err = await cli(argv)
        assert (
            code == 4
            and err == f"node-agent job: cannot reach the node at {url}: no answer within 0.3 s\n"
        )
    finally:
        never.set()
        await server.close()


async def test_a_quiet_live_log_asks_the_node_and_ends_when_it_stops_answering() -> None:
    """A followed log that stays silent makes the client ask for the job after twice the
    per-call limit; a node that then answers with an error ends the follow with that error."""
    probes: list[int] = []
    never = asyncio.Event()

    async def live(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b': following x\n\nevent: log\ndata: "hi\\n"\n\n')
        await never.wait()  # then silence, the connection open
        return response

    async def detail(request: web.Request) -> web.Response:
        probes.append(len(probes))
        if len(probes) == 1:
            return web.json_response({"job_id": "x", "status": "running"})
        return web.json_response({"error": "Node draining"}, status=503)

    app = web.Application()
    app.router.add_get("/v1/jobs/x/logs/live", live)
    app.router.add_get("/v1/jobs/x", detail)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    argv = ["job", "logs", "x", "-f", "--url", url, "--api-key", "k", "--request-timeout", "0.2"]
    try:
        code, out, err = await cli(argv)
    finally:
        never.set()
        await server.close()
    assert (code, out) == (3, "hi\n") and err == "node-agent job: HTTP 503: Node draining\n"
    assert len(probes) == 2  # the first probe found the job alive: the follow went on


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_generate(shell: str) -> None:
    code, out, _ = run_cli(["completion", shell])
    assert code == 0
    assert "node-agent" in out and "submit" in out and "--follow" in out
    if shell == "zsh":
        assert out.startswith("#compdef node-agent")


@on_the_node
async def test_as_a_real_process_with_the_environment(node: Node) -> None:
    env = {
        **os.environ,
        "NODE_AGENT_URL": node.url,
        "NODE_AGENT_API_KEY": node.keys["alice"].token,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node_agent.cli", "job", "submit", "--image", BASE_IMAGE,
        "--wait", "--json", "--", "sh", "-c", "exit 7",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 1, err
    assert json.loads(out)["exit_code"] == 7


# --- the event-stream parser ------------------------------------------------------------------


def test_sse_parser_joins_data_lines_and_skips_comments() -> None:
    parser = SseParser()
    lines = [": following x", "", "event: log", 'data: "a"', "", "data: 1", "data: 2", "", "id: 9"]
    events = [e for e in (parser.feed(line + "\n") for line in lines) if e is not None]
    assert events == [SseEvent("log", '"a"'), SseEvent("message", "1\n2")]
