"""``node-agent job``: submit, inspect, wait for, cancel and list jobs on a running node.

The command line and the rendering live here; the HTTP calls are :mod:`node_agent.client`.
One verb set covers both kinds of job: what ``submit`` sends is chosen by its options
(``--container``: an Infernet job, ``--batch``: several, ``--delegated``: a signed delegated
subscription, ``--image``: a workload), and ``get``/``wait`` find an id in either kind.
Exit status: 0 ok, 1 the job failed or was cancelled (``wait``, ``submit --wait``), 2 bad
usage or input file, 3 the node refused (HTTP error), 4 the node cannot be reached, 5 ``wait``
timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the client (aiohttp) is imported only when a job command runs
    from node_agent.client import Job, Kind, NodeClient

URL_ENV = "NODE_AGENT_URL"
KEY_ENV = "NODE_AGENT_API_KEY"
DEFAULT_LIMIT = 50

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_TIMEOUT = range(6)


class UsageError(Exception):
    """Bad options or an unreadable input file (exit 2)."""


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def default_url() -> str:
    from node_agent.config import ServerConfig

    port = ServerConfig.model_fields["port"].default
    return os.environ.get(URL_ENV) or f"http://127.0.0.1:{port}"


# --- the parser -------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", help=f"the node (default: ${URL_ENV}, else http://127.0.0.1:<server.port>)"
    )
    common.add_argument("--api-key", help=f"API key (default: ${KEY_ENV})")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument(
        "--request-timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="limit of each HTTP call (default: 10 s)",
    )
    return common


IMAGE_HELP = "workload: its Docker image (the command follows --)"


def _workload_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("workload (image + command, /v1/jobs)")
    group.add_argument("--name", help="job name")
    group.add_argument("--type", dest="workload_type", choices=("batch", "inference"))
    group.add_argument("--entrypoint", help="replaces the image's entrypoint")
    group.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="environment (repeat)"
    )
    group.add_argument("--gpus", type=int, help="GPU count (default: from --model-size-gb)")
    group.add_argument("--model-size-gb", type=float)
    group.add_argument("--max-runtime", type=_seconds, metavar="S", help="seconds, then it fails")
    group.add_argument("--port", action="append", type=int, default=[], help="inference port")
    group.add_argument(
        "--infernet-service", action="store_true", help="serve it as an Infernet container"
    )
    group.add_argument("--callback-url")
    group.add_argument("--draft", metavar="FILE", help="a draft job (JSON); options override it")
    parser.add_argument(
        "cmd", nargs="*", metavar="-- CMD ARGS", help="the command (replaces the image's CMD)"
    )


def add_job_parser(sub: Any) -> None:
    """``node-agent job ...`` on the top-level subparsers of :mod:`node_agent.cli`."""
    common = _common()
    job = sub.add_parser("job", help="submit, get, wait for, cancel, list jobs on a node")
    verbs = job.add_subparsers(dest="verb", required=True)

    submit = verbs.add_parser(
        "submit",
        parents=[common],
        help="submit a job",
        description="Infernet: --container ID [--data JSON]; several: --batch FILE; "
        "delegated subscription: --delegated FILE; workload: --image IMG -- CMD ARGS.",
    )
    what = submit.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "-c",
        "--container",
        action="append",
        dest="containers",
        metavar="ID",
        help="Infernet service container (repeat for a chain, in order)",
    )
    what.add_argument(
        "--batch", metavar="FILE", help="JSON array of Infernet job bodies ('-': stdin)"
    )
    what.add_argument(
        "--delegated", metavar="FILE", help="signed DelegatedSubscriptionRequest (JSON, or -)"
    )
    what.add_argument("--image", help=IMAGE_HELP)
    infernet = submit.add_argument_group("Infernet job (/api/jobs)")
    infernet.add_argument(
        "--data", default="{}", help="the job's data: JSON, @FILE or - (stdin); default {}"
    )
    infernet.add_argument("--requires-proof", action="store_true", default=None)
    infernet.add_argument(
        "--stream", action="store_true", help="stream the output (/api/jobs/stream)"
    )
    _workload_options(submit)
    submit.add_argument("--wait", action="store_true", help="then wait until it is final")
    submit.add_argument(
        "--timeout", type=_seconds, metavar="S", help="with --wait: give up after S"
    )

    estimate = verbs.add_parser(
        "estimate", parents=[common], help="what a workload would get here (/v1/jobs/estimate)"
    )
    estimate.add_argument("--image", required=True, help=IMAGE_HELP)
    _workload_options(estimate)

    kinds = ("infernet", "workload")
    get = verbs.add_parser("get", parents=[common], help="a job's status and result")
    wait = verbs.add_parser(
        "wait", parents=[common], help="until the job is final (exit 1 if it failed)"
    )
    for parser in (get, wait):
        parser.add_argument("job_id")
        parser.add_argument(
            "--kind", choices=kinds, help="default: a workload if the key has one, else Infernet"
        )
        parser.add_argument(
            "--intermediate", action="store_true", help="Infernet: results of every container"
        )
    wait.add_argument("--timeout", type=_seconds, metavar="S", help="give up after S (exit 5)")

    cancel = verbs.add_parser("cancel", parents=[common], help="cancel a workload")
    cancel.add_argument("job_id")
    cancel.add_argument("--wait", action="store_true", help="until it has stopped")
    cancel.add_argument(
        "--timeout", type=_seconds, metavar="S", help="with --wait: give up after S"
    )

    logs = verbs.add_parser("logs", parents=[common], help="a workload's output")
    logs.add_argument("job_id")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="live, until the job ends (server-sent events)"
    )

    listing = verbs.add_parser("list", parents=[common], help="your jobs, a page at a time")
    listing.add_argument(
        "--kind", choices=kinds, help="default: workloads with an API key, else Infernet jobs"
    )
    listing.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="page size")
    listing.add_argument("--cursor", help="the page after this cursor (from the last page)")
    listing.add_argument("--all", action="store_true", help="every page")


# --- input ------------------------------------------------------------------------------------


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what}: not JSON: {exc}") from None


def _json_file(source: str, what: str) -> Any:
    """JSON from a file, or from stdin for ``-``."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {exc.filename}: {exc.strerror}") from None
    return _parse_json(text, what)


def _data(arg: str) -> Any:
    """``--data``: JSON text, ``@FILE`` or ``-``."""
    if arg == "-" or arg.startswith("@"):
        return _json_file(arg.removeprefix("@"), "--data")
    return _parse_json(arg, "--data")


def _check_submit(args: argparse.Namespace) -> None:
    """Options of one kind of job given to another are a mistake, not something to ignore."""
    infernet = {"--data": args.data != "{}", "--requires-proof": args.requires_proof}
    infernet["--stream"] = args.stream
    workload = {
        "--name": args.name, "--type": args.workload_type, "--entrypoint": args.entrypoint,
        "--env": args.env, "--gpus": args.gpus is not None, "--model-size-gb": args.model_size_gb,
        "--max-runtime": args.max_runtime, "--port": args.port, "--draft": args.draft,
        "--infernet-service": args.infernet_service, "--callback-url": args.callback_url,
        "a command after --": args.cmd,
    }  # fmt: skip
    misplaced = [k for k, v in infernet.items() if v and not args.containers]
    misplaced += [k for k, v in workload.items() if v and not args.image]
    if misplaced:
        mode = "--container" if misplaced[0] in infernet else "--image"
        raise UsageError(f"{', '.join(misplaced)}: only with {mode}")
    if args.stream and args.wait:
        raise UsageError("--stream already waits for the end of the output")


def _draft(args: argparse.Namespace) -> dict[str, Any]:
    """The workload draft: ``--draft`` first, then each option given on the command line."""
    draft: dict[str, Any] = {}
    if args.draft:
        loaded = _json_file(args.draft, "--draft")
        if not isinstance(loaded, dict):
            raise UsageError("--draft: expected a JSON object")
        draft.update(loaded)
    env = dict(draft.get("env") or {})
    for pair in args.env:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--env {pair!r}: expected NAME=VALUE")
        env[name] = value
    options = {
        "image": args.image,
        "name": args.name,
        "workload_type": args.workload_type,
        "command": [args.entrypoint] if args.entrypoint else None,
        "args": list(args.cmd) or None,
        "env": env or None,
        "gpus": args.gpus,
        "model_size_gb": args.model_size_gb,
        "max_runtime": args.max_runtime,
        "ports": list(args.port) or None,
        "infernet_service": args.infernet_service or None,
        "callback_url": args.callback_url,
    }
    draft.update({k: v for k, v in options.items() if v is not None})
    if draft.get("ports") and "workload_type" not in draft:
        draft["workload_type"] = "inference"  # only inference workloads publish ports
    return draft


def _delegated_body(args: argparse.Namespace) -> dict[str, Any]:
    """The signed request, checked here first so a broken file fails before any call."""
    from node_agent.api.wire import parse_delegated
    from node_agent.errors import NodeAgentError

    body = _json_file(args.delegated, "--delegated")
    if not isinstance(body, dict) or "subscription" not in body or "signature" not in body:
        raise UsageError(
            "--delegated: expected a DelegatedSubscriptionRequest: "
            "{'subscription': {...}, 'signature': {...}, 'data': {...}}"
        )
    try:
        parse_delegated(body)
    except NodeAgentError as exc:
        raise UsageError(f"--delegated: {exc.error}{_describe(exc.params)}") from None
    return body


# --- rendering (pure) -------------------------------------------------------------------------


def _describe(params: Any) -> str:
    from node_agent.client import params_text

    return params_text(params)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _fields(rows: Sequence[tuple[str, Any]]) -> str:
    """``label  value`` lines, aligned; rows whose value is None are left out."""
    shown = [(k, str(v)) for k, v in rows if v is not None]
    width = max((len(k) for k, _ in shown), default=0)
    return "".join(f"{k:<{width}}  {v}\n" for k, v in shown)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str("-" if c is None else c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )


def _result_text(result: Any) -> tuple[str | None, str | None, str | None]:
    """(container, output, error) of an Infernet ContainerResult."""
    if not isinstance(result, dict):
        return None, None, None
    output = _compact(result["output"]) if "output" in result else None
    return result.get("container"), output, result.get("error")


def _gpus(gpus: Any) -> str:
    if not gpus:
        return "none"
    return ", ".join(f"{g.get('uuid', '?')} ({g.get('family') or '?'})" for g in gpus)


def render_job(job: Job) -> str:
    body = job.body
    if job.kind == "infernet":
        container, output, error = _result_text(body.get("result"))
        text = _fields(
            [
                ("job", f"{job.id}  (infernet)"),
                ("status", job.status),
                ("container", container),
                ("output", output),
                ("error", error),
            ]
        )
        for step, item in enumerate(body.get("intermediate_results") or [], 1):
            name, out, err = _result_text(item)
            text += f"  step {step}  {name}  {out if err is None else 'error: ' + err}\n"
        return text
    cmd = (body.get("command") or []) + (body.get("args") or [])
    runtime = body.get("runtime_seconds")
    ports = body.get("ports") or {}
    status = job.status
    if body.get("exit_code") is not None:
        status += f"  (exit code {body['exit_code']})"
    if body.get("cancel_requested"):
        status += "  (cancel requested)"
    return _fields(
        [
            ("job", f"{job.id}  (workload)"),
            ("status", status),
            ("name", body.get("name") or None),
            ("image", body.get("image")),
            ("command", shlex.join(cmd) if cmd else "(the image's)"),
            ("queue", f"position {body['queue_position']}" if "queue_position" in body else None),
            ("created", body.get("created_at")),
            ("started", body.get("started_at")),
            ("finished", body.get("finished_at")),
            ("runtime", f"{runtime:.1f} s" if isinstance(runtime, int | float) else None),
            ("gpus", _gpus(body.get("gpus"))),
            ("ports", ", ".join(f"{p} -> 127.0.0.1:{h}" for p, h in ports.items()) or None),
            ("cost", f"${body['cost_usd']:g}" if body.get("cost_usd") else None),
            ("error", body.get("error")),
        ]
    )


def render_page(jobs: Sequence[Job], kind: str) -> str:
    if kind == "infernet":
        return table(
            ("JOB ID", "STATUS", "CONTAINER"),
            [(j.id, j.status, _result_text(j.body.get("result"))[0]) for j in jobs],
        )
    return table(
        ("JOB ID", "STATUS", "EXIT", "CREATED", "NAME", "IMAGE"),
        [
            (
                j.id,
                j.status,
                j.body.get("exit_code"),
                j.body.get("created_at"),
                j.body.get("name") or None,
                j.body.get("image"),
            )
            for j in jobs
        ],
    )


def render_batch(answers: list[dict[str, Any]]) -> str:
    rows = []
    for index, answer in enumerate(answers):
        if "error" in answer:
            rows.append((index, f"refused: {answer['error']}{_describe(answer.get('params'))}"))
        else:
            rows.append((index, answer.get("id") or "accepted (delegated subscription)"))
    return table(("#", "JOB ID"), rows)


def render_estimate(answer: dict[str, Any]) -> str:
    fits = "yes" if answer.get("fits") else "no"
    low, high = (
        answer.get("estimated_hourly_rate_min_usd"),
        answer.get("estimated_hourly_rate_max_usd"),
    )
    wait_min, wait_max = (
        answer.get("estimated_queue_wait_min_sec"),
        answer.get("estimated_queue_wait_max_sec"),
    )
    return _fields(
        [
            ("fits", fits + (f": {answer['reason']}" if answer.get("reason") else "")),
            ("gpus", _gpus(answer.get("gpus")) if "gpus" in answer else answer.get("gpu_count")),
            ("rate", f"${low:g}-{high:g}/h" if low is not None and high is not None else None),
            ("queue", f"{answer['queue_ahead']} ahead" if "queue_ahead" in answer else None),
            ("wait", f"{wait_min}-{wait_max} s" if wait_min is not None else None),
            ("max cost", answer.get("estimated_cost_max_usd")),
            ("relaxed", ", ".join(answer.get("constraints_relaxed") or []) or None),
        ]
    )


def outcome(job: Job) -> int:
    return EXIT_OK if job.succeeded else EXIT_JOB_FAILED


# --- the verbs --------------------------------------------------------------------------------


class Output:
    """stdout and stderr of one command, with the key scrubbed from every error line."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO, key: str | None) -> None:
        self.json = bool(args.json)
        self.out, self.err, self._key = out, err, key

    def show(self, doc: Any, text: str) -> None:
        """``doc`` as JSON with --json, else ``text``."""
        if self.json:
            self.doc(doc)
        else:
            self.text(text)

    def note(self, text: str) -> None:
        """A line for the person watching (stderr): stdout stays the data."""
        self.err.write(text + "\n")
        self.err.flush()

    def doc(self, value: Any) -> None:
        self.out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")

    def line(self, value: Any) -> None:
        self.out.write(_compact(value) + "\n")
        self.out.flush()

    def text(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def job(self, job: Job) -> None:
        if self.json:
            self.doc({"kind": job.kind, **job.body})
        else:
            self.text(render_job(job))

    def error(self, message: str) -> None:
        if self._key:
            message = message.replace(self._key, "***")
        self.err.write(f"node-agent job: {' '.join(message.split())}\n")


async def _submit(node: NodeClient, args: argparse.Namespace, out: Output) -> int:
    _check_submit(args)
    if args.batch:
        bodies = _json_file(args.batch, "--batch")
        if not isinstance(bodies, list):
            raise UsageError("--batch: expected a JSON array of job bodies")
        answers = await node.submit_batch(bodies)
        out.show(answers, render_batch(answers))
        return EXIT_REFUSED if any("error" in a for a in answers) else EXIT_OK
    if args.delegated:
        answer = await node.submit_delegated(_delegated_body(args))
        out.show(answer, "delegated subscription accepted\n")
        return EXIT_OK
    kind: Kind
    if args.image:
        answer = await node.submit_workload(_draft(args))
        for name in answer.get("ignored_fields") or []:
            out.note(f"warning: the node ignored the field {name!r}")
        job_id, doc, kind = str(answer["job_id"]), answer, "workload"
    else:
        data = _data(args.data)
        if args.stream:
            return await _stream(node, args, data, out)
        job_id = await node.submit_job(args.containers, data, requires_proof=args.requires_proof)
        doc, kind = {"id": job_id}, "infernet"
    if not args.wait:
        out.show(doc, f"{job_id}\n")
        return EXIT_OK
    final = await node.wait(await node.find(job_id, kind), timeout=args.timeout)
    out.job(final)
    return outcome(final)


async def _stream(node: NodeClient, args: argparse.Namespace, data: Any, out: Output) -> int:
    """The output as it arrives: raw text, or JSON lines (``{"id"}``, then ``{"data"}``)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    job_id = ""
    async for job_id, chunk in node.stream_job(
        args.containers, data, requires_proof=args.requires_proof
    ):
        text = decoder.decode(chunk)
        if not chunk and out.json:
            out.line({"id": job_id})
        elif not chunk:
            out.note(f"job {job_id}")
        elif out.json and text:
            out.line({"data": text})
        else:
            out.text(text)
    rest = decoder.decode(b"", final=True)
    if rest and out.json:
        out.line({"data": rest})
    elif rest:
        out.text(rest)
    # The stream carries no status (it just ends): the job's record says how it went.
    job = await node.wait(await node.find(job_id, "infernet"), timeout=args.timeout)
    return outcome(job)


async def _logs(node: NodeClient, args: argparse.Namespace, out: Output) -> int:
    if not args.follow:
        runtime = await node.workload_runtime(args.job_id)
        out.show(runtime, runtime.get("log_tail") or "")
        return EXIT_OK
    async for event in node.follow_logs(args.job_id):
        try:
            data = json.loads(event.data)
        except ValueError:
            continue  # not one of the node's events (a proxy's, perhaps)
        if event.event == "log" and isinstance(data, str):
            if out.json:
                out.line({"event": "log", "data": data})
            else:
                out.text(data)
        elif event.event == "end" and isinstance(data, dict):
            if out.json:
                out.line({"event": "end", **data})
            else:
                code = data.get("exit_code")
                ended = f" (exit code {code})" if code is not None else ""
                out.note(f"job {data.get('job_id')}: {data.get('status')}{ended}")
    return EXIT_OK


async def _list(node: NodeClient, args: argparse.Namespace, out: Output) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    kind = args.kind or ("workload" if node.has_key else "infernet")
    fetch = node.workload_page if kind == "workload" else node.job_page
    cursor, jobs = args.cursor, []
    while True:  # --all: as many pages as the node keeps (its retention bounds them)
        page = await fetch(limit=args.limit, cursor=cursor)
        jobs += page.jobs
        cursor = page.next_cursor
        if not (args.all and cursor):
            break
    doc = {"kind": kind, "jobs": [j.body for j in jobs], "next_cursor": cursor}
    out.show(doc, render_page(jobs, kind))
    if cursor and not out.json:
        out.note(f"more: --cursor {cursor}")
    return EXIT_OK


async def _verb(node: NodeClient, args: argparse.Namespace, out: Output) -> int:
    verb = args.verb
    if verb == "submit":
        return await _submit(node, args, out)
    if verb == "estimate":
        answer = await node.estimate_workload(_draft(args))
        out.show(answer, render_estimate(answer))
        return EXIT_OK
    if verb in ("get", "wait"):
        job = await node.find(args.job_id, args.kind, intermediate=args.intermediate)
        if verb == "wait":
            job = await node.wait(job, timeout=args.timeout, intermediate=args.intermediate)
        out.job(job)
        return outcome(job) if verb == "wait" else EXIT_OK
    if verb == "cancel":
        job = await node.cancel_workload(args.job_id)
        if args.wait:
            job = await node.wait(job, timeout=args.timeout)
        if out.json:
            out.doc(job.body)
        else:
            state = job.status if job.final else "stopping"
            out.text(f"{job.id}  {state}\n")
        return EXIT_OK
    if verb == "logs":
        return await _logs(node, args, out)
    return await _list(node, args, out)


def job_command(
    args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one ``node-agent job`` verb; every failure is one line on stderr and an exit code."""
    from node_agent.client import (
        JobNotFound,
        NodeClient,
        NodeRefused,
        NodeUnreachable,
        UnexpectedAnswer,
        WaitTimeout,
    )

    key = args.api_key or os.environ.get(KEY_ENV) or None
    output = Output(args, out or sys.stdout, err or sys.stderr, key)
    url = args.url or default_url()

    async def run() -> int:
        async with NodeClient(url, key, timeout=args.request_timeout) as node:
            return await _verb(node, args, output)

    failures: list[tuple[type[Exception], int]] = [
        (UsageError, EXIT_USAGE),
        (NodeUnreachable, EXIT_UNREACHABLE),
        (NodeRefused, EXIT_REFUSED),
        (JobNotFound, EXIT_REFUSED),
        (UnexpectedAnswer, EXIT_REFUSED),
        (WaitTimeout, EXIT_TIMEOUT),
    ]
    try:
        return asyncio.run(run())
    except tuple(kind for kind, _ in failures) as exc:
        hint = ""
        if isinstance(exc, NodeRefused) and exc.status == 401 and key is None:
            hint = f" (pass --api-key or set ${KEY_ENV})"
        output.error(str(exc) + hint)
        return next(code for kind, code in failures if isinstance(exc, kind))
    except KeyboardInterrupt:
        output.error("interrupted")
        return 130
