"""The OpenAPI 3.1 description of every route, served at ``GET /openapi.json``.

Built once from the code it describes where it can be: the bodies pydantic already validates
(workload drafts, delegated subscriptions) give their own JSON schema, and each route's
security comes from ``auth.keys.route_scope``, so the document cannot drift from what the
dispatcher enforces. The small rest is written by hand and kept true by tests that validate
real answers against it (tests/api/test_openapi.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from node_agent import INFERNET_COMPAT_VERSION, __version__, jsonpolicy
from node_agent.api.handlers import ID_PAGE_MAX
from node_agent.api.wire import DelegatedSubscriptionRequest
from node_agent.auth.keys import INFO_PATHS, route_scope
from node_agent.jobs.model import JobStatus
from node_agent.workloads.model import Draft, WorkloadStatus

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"
JOB_ID_EXAMPLE = "00000000-0000-4000-8000-000000000000"  # to ask route_scope about /v1/jobs/{id}
WORKLOAD_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

ERROR_TEXT = {
    400: "Invalid request (body, JSON policy, query parameter or field)",
    401: "API key missing, malformed, unknown, revoked or expired",
    403: "API key lacks the route's scope, or the caller's address is not allowed",
    404: "Not found (no such route, or no such job for this key)",
    405: "Method not allowed",
    413: "Body or batch too large",
    415: "Unsupported content type or encoding",
    422: "Valid, but cannot run here (no fitting GPUs, image unavailable)",
    429: "Rate limited (see Retry-After)",
    500: "Internal error",
    502: "A container failed or answered badly",
    503: "Queue full, store unavailable or node shutting down (see Retry-After)",
}
COMMON_ERRORS = (400, 401, 403, 429, 500)


def _ref(name: str) -> Schema:
    return {"$ref": REF.format(model=name)}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _model_schemas(model: type[BaseModel], components: dict[str, Schema]) -> Schema:
    """The model's schema with its nested models moved into ``components`` (shared refs)."""
    schema = model.model_json_schema(ref_template=REF)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return _ref(model.__name__)


def _primitives() -> tuple[Schema, Schema, Schema, Schema]:
    """Fresh string, integer, number and boolean schemas."""
    return {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}


def _hand_written() -> dict[str, Schema]:
    string, integer, number, boolean = _primitives()
    when = _nullable({"type": "string", "format": "date-time"})
    loop_lag = {
        "type": "object",
        "required": ["worst_last_minute_ms", "worst_ever_ms", "samples"],
        "properties": {"worst_last_minute_ms": number, "worst_ever_ms": number, "samples": integer},
    }
    container_result = {
        "type": "object",
        "required": ["container"],
        "properties": {"container": string, "output": {}, "error": string},
    }
    return {
        "Error": {
            "type": "object",
            "description": "Every error answer, including unknown routes and wrong methods.",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {"error": string, "params": {"type": "object"}},
        },
        "Health": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"enum": ["healthy", "unhealthy", "stopping"]},
                "checks": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["status"],
                        "properties": {"status": string, "reason": string},
                    },
                },
            },
        },
        "Info": {
            "type": "object",
            "description": "Infernet's fields first; further sections (gpus, workloads, ...) "
            "appear when their feature is on.",
            "required": ["version", "containers", "pending", "chain"],
            "properties": {
                "version": string,
                "agent_version": string,
                "containers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "external", "image"],
                        "properties": {
                            "id": string,
                            "description": string,
                            "external": boolean,
                            "image": string,
                        },
                    },
                },
                "pending": {
                    "type": "object",
                    "required": ["offchain", "onchain"],
                    "properties": {"offchain": integer, "onchain": integer},
                },
                "chain": {
                    "type": "object",
                    "description": "The chain service's status when it runs; only enabled and "
                    "address otherwise.",
                    "required": ["enabled", "address"],
                    "properties": {
                        "enabled": boolean,
                        "address": string,
                        "payments": _ref("ChainPayments"),
                        "event_loop": {
                            **loop_lag,
                            "description": "The chain side's own event loop (its process), "
                            "sampled the same way.",
                        },
                        "process_restarts": {
                            **integer,
                            "description": "Times the chain process died (the OOM killer, a "
                            "crash) and a new one was started; it resumes from the journal.",
                        },
                    },
                },
                "services": {"type": "array", "items": {"type": "object"}},
                "queues": {"type": "object"},
                "health": {"type": "object"},
                "event_loop": {
                    **loop_lag,
                    "description": "How late the event loop ran a timer sampled every 20 ms, "
                    "in ms: a step holding the loop delays every request at once.",
                },
                "pulls": {
                    "type": "object",
                    "description": "Image pulls in flight and the last few finished.",
                    "required": ["active", "recent"],
                    "properties": {
                        "active": {"type": "array", "items": _ref("Pull")},
                        "recent": {"type": "array", "items": _ref("Pull")},
                    },
                },
            },
        },
        **_payment_schemas(),
        "Pull": {
            "type": "object",
            "required": ["image", "for", "started", "layers", "layers_done", "bytes"],
            "properties": {
                "image": string,
                "for": {**string, "description": "'container <id>' or 'workload <job id>'"},
                "started": number,
                "finished": number,
                "layers": integer,
                "layers_done": integer,
                "bytes": integer,
                "total_bytes": integer,
                "done": boolean,
                "error": string,
            },
        },
        "OffchainJob": {
            "type": "object",
            "description": "'id' and 'ip' are refused (set by the node).",
            "required": ["containers", "data"],
            "properties": {
                "containers": {"type": "array", "items": string},
                "data": {"type": "object"},
                "requires_proof": _nullable(boolean),
            },
        },
        "JobCreated": {
            "type": "object",
            "required": ["id"],
            "additionalProperties": False,
            "properties": {"id": string},
        },
        "DelegatedAccepted": {
            "type": "object",
            "description": "A delegated subscription was accepted.",
            "maxProperties": 0,
        },
        "JobResult": {
            "type": "object",
            "required": ["id", "result", "status"],
            "properties": {
                "id": string,
                "result": _nullable(container_result),
                "status": {"enum": [s.value for s in JobStatus]},
                "intermediate_results": {"type": "array", "items": container_result},
            },
        },
        "IdPage": {
            "type": "object",
            "required": ["ids", "next_cursor"],
            "properties": {
                "ids": {"type": "array", "items": string},
                "next_cursor": _nullable(string),
            },
        },
        "StatusUpdate": {
            "type": "object",
            "required": ["id", "status", "containers"],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "status": {"enum": [s.value for s in JobStatus]},
                "containers": {"type": "array", "items": string},
            },
        },
        "Workload": {
            "type": "object",
            "required": ["job_id", "status", "image", "created_at", "updated_at", "origin"],
            "properties": {
                "job_id": {"type": "string", "pattern": WORKLOAD_ID},
                "name": string,
                "status": {"enum": [s.value for s in WorkloadStatus]},
                "workload_type": string,
                "image": string,
                "command": _nullable({"type": "array", "items": string}),
                "args": {"type": "array", "items": string},
                "model_size_gb": _nullable(number),
                "created_at": when,
                "updated_at": when,
                "started_at": when,
                "finished_at": when,
                "gpus": {"type": "array", "items": {"type": "object"}},
                "exit_code": _nullable(integer),
                "error": _nullable(string),
                "runtime_seconds": _nullable(number),
                "cost_usd": number,
                "hourly_rate_usd": number,
                "origin": {"enum": ["push", "pull"]},
                "grid_job_id": string,
                "pull_progress": {"type": "object"},
                "ports": {"type": "object", "additionalProperties": integer},
                "callback_url": string,
                "cancel_requested": boolean,
                "queue_position": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "While queued: 1 is next.",
                },
                "ignored_fields": {
                    "type": "array",
                    "items": string,
                    "description": "Unknown draft fields, not stored (on submission only).",
                },
            },
        },
        "WorkloadPage": {
            "type": "object",
            "required": ["jobs", "next_cursor"],
            "properties": {
                "jobs": {"type": "array", "items": _ref("Workload")},
                "next_cursor": _nullable(string),
            },
        },
        "Estimate": {
            "type": "object",
            "required": ["fits", "constraints_relaxed"],
            "properties": {
                "fits": boolean,
                "constraints_relaxed": {"type": "array", "items": string},
                "reason": string,
                "gpus": {"type": "array", "items": {"type": "object"}},
                "gpu_count": integer,
                "queue_ahead": integer,
                "estimated_hourly_rate_usd": number,
                "estimated_hourly_rate_min_usd": number,
                "estimated_hourly_rate_max_usd": number,
                "estimated_queue_wait_min_sec": integer,
                "estimated_queue_wait_max_sec": integer,
                "estimated_start_time_min": when,
                "estimated_start_time_max": when,
                "estimated_cost_max_usd": number,
            },
        },
        **_ui_schemas(),
        "Runtime": {
            "type": "object",
            "required": ["job_id", "status", "log_tail", "log_tail_bytes"],
            "properties": {
                "job_id": string,
                "status": {"enum": [s.value for s in WorkloadStatus]},
                "exit_code": _nullable(integer),
                "error": _nullable(string),
                "started_at": when,
                "finished_at": when,
                "runtime_seconds": _nullable(number),
                "log_tail": {"type": "string", "description": "The newest output, UTF-8."},
                "log_tail_bytes": integer,
            },
        },
    }


def _payment_schemas() -> dict[str, Schema]:
    """/info's ``chain.payments`` (node_agent.chain.service: the payment gate's status with the
    proof tracker's). Token amounts are uint256 decimal strings: JSON numbers lose them."""
    string, integer, number, boolean = _primitives()
    address = {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}
    maybe_address = _nullable(address)
    amount = {"type": "string", "pattern": "^[0-9]+$"}
    proof_states = ["pending", "open", "released", "slashed", "abandoned"]
    proof = {
        "type": "object",
        "required": [
            *("subscription", "id", "interval", "state", "token", "stake", "verifier"),
            *("expiry", "finalized_by"),
        ],
        "properties": {
            "subscription": {
                **string,
                "description": "'s:<id>', or 'd:<owner>:<nonce>' for a delegated subscription",
            },
            "id": {**_nullable(integer), "description": "null until a delegated one is created"},
            "interval": integer,
            "state": {"enum": proof_states},
            "token": {**address, "description": "Lower case; the zero address is ETH."},
            "stake": {**amount, "description": "paymentAmount locked in the node's Wallet."},
            "verifier": address,
            "expiry": {
                **_nullable(integer),
                "description": "Block time from which anyone may finalize in the node's favour.",
            },
            "finalized_by": maybe_address,
        },
    }
    held = {
        "type": "object",
        "required": ["unlocked_wei", "locked_wei"],
        "properties": {"unlocked_wei": _nullable(amount), "locked_wei": _nullable(amount)},
        "description": "Base units of the token; null where the read failed.",
    }
    balances = {
        "type": "object",
        "description": "Read at connect and every 30 s; a failed read keeps the last one.",
        "required": ["read_at", "gas_wei", "wallet"],
        "properties": {
            "read_at": {**number, "description": "Unix time of the read."},
            "gas_wei": {**amount, "description": "The node key's ETH (pays gas)."},
            "wallet": {
                "type": "object",
                "description": "The payment Wallet's funds by token (ETH as the zero address, "
                "then every accepted token); empty without a valid payment_address.",
                "propertyNames": address,
                "additionalProperties": held,
            },
        },
    }
    return {
        "ChainPayments": {
            "type": "object",
            "description": "Paid subscriptions: the node's payment Wallet, refusals and proof "
            "requests.",
            "required": [
                *("payment_address", "payment_address_valid", "wallet_factory", "fee_contract"),
                *("refused", "waiting", "recent_refusals", "balances", "proofs"),
            ],
            "properties": {
                "payment_address": {
                    **maybe_address,
                    "description": "chain.wallet.payment_address (checksummed); null: no "
                    "payments taken.",
                },
                "payment_address_valid": {
                    **_nullable(boolean),
                    "description": "Made by the WalletFactory; null until checked.",
                },
                "wallet_factory": maybe_address,
                "fee_contract": maybe_address,
                "refused": {
                    **integer,
                    "description": "Refusals since start, once per delivery and reason however "
                    "often it is checked again.",
                },
                "waiting": {
                    **integer,
                    "description": "Deliveries refused for now (a transient reason), checked "
                    "again while their interval is open.",
                },
                "recent_refusals": {
                    "type": "array",
                    "description": "Newest first, at most 50.",
                    "items": _ref("PaymentRefusal"),
                },
                "balances": _nullable(balances),
                "proofs": {
                    "type": "object",
                    "description": "Counts by state (the journal keeps the last 1000 final "
                    "ones), the open requests and the last settled (20 each).",
                    "required": [*proof_states, "open_requests", "recent"],
                    "properties": {
                        **{state: integer for state in proof_states},
                        "open_requests": {"type": "array", "items": _ref("ProofRequest")},
                        "recent": {"type": "array", "items": _ref("ProofRequest")},
                    },
                },
            },
        },
        "PaymentRefusal": {
            "type": "object",
            "description": "A paid delivery refused before computing; no transaction was sent.",
            "required": [
                *("subscription", "interval", "code", "reason", "retrying", "checks", "at"),
                "checked_at",
            ],
            "properties": {
                "subscription": string,
                "interval": integer,
                "code": {
                    **string,
                    "description": "Stable: consumer_wallet_invalid, consumer_underfunded, "
                    "consumer_allowance, node_wallet_invalid, verifier_token, verifier_fee, "
                    "node_stake, node_allowance.",
                },
                "reason": {**string, "description": "As of the last check."},
                "retrying": {
                    **boolean,
                    "description": "A transient reason: checked again with the next block, "
                    "then with backoff, while the interval is open.",
                },
                "checks": integer,
                "at": {**number, "description": "Unix time of the first refusal."},
                "checked_at": {**number, "description": "Unix time of the last check."},
                "cleared_at": {
                    **number,
                    "description": "Unix time a later check passed (the delivery went ahead).",
                },
            },
        },
        "ProofRequest": proof,
    }


def _ui_schemas() -> dict[str, Schema]:
    """The status page's document (``GET /ui/state``, node_agent.ui)."""
    string, integer, number, boolean = _primitives()
    maybe_number, maybe_string = _nullable(number), _nullable(string)
    strings = {"type": "array", "items": string}

    def obj(required: list[str], **properties: Schema) -> Schema:
        return {"type": "object", "required": required, "properties": properties}

    gpu_ref = obj([], index=_nullable(integer), uuid=maybe_string, family=maybe_string)
    gpu_ref["properties"]["name"] = maybe_string
    device = obj(
        ["key", "health", "reasons"],
        key=string,
        health=maybe_string,
        reasons=strings,
        memory_total=_nullable(integer),
        power_limit_w=maybe_number,
        util_pct=maybe_number,
        memory_used=_nullable(integer),
        temperature_c=maybe_number,
        power_w=maybe_number,
        **gpu_ref["properties"],
    )
    listed: Schema = {
        "type": "object",
        "required": ["items", "error"],
        "properties": {"error": maybe_string},
    }
    return {
        "UiState": obj(
            [
                "generated_at",
                "poll_seconds",
                "node",
                "health",
                "gpus",
                "jobs",
                "containers",
                "chain",
                "grid",
                "recent_jobs",
                "workloads",
                "history",
            ],
            generated_at=number,
            poll_seconds=number,
            node=obj(
                ["agent_version", "infernet_version", "status", "verdict"],
                agent_version=string,
                infernet_version=string,
                status={"enum": ["healthy", "unhealthy", "stopping"]},
                verdict={"enum": ["healthy", "degraded", "unhealthy", "unreachable"]},
            ),
            health=_ref("Health"),
            gpus=obj(
                ["monitoring", "devices"],
                monitoring=boolean,
                nvml_available=_nullable(boolean),
                health=maybe_string,
                reasons=strings,
                remedy=maybe_string,
                driver_version=maybe_string,
                cuda_driver_version=maybe_string,
                devices={"type": "array", "items": device},
            ),
            jobs=obj(
                ["running_offchain", "pending_onchain", "queues"],
                running_offchain=integer,
                pending_onchain=integer,
                queues={"type": "object", "additionalProperties": integer},
            ),
            containers={"type": "array", "items": {"type": "object"}},
            chain={
                **obj(["enabled"], enabled=boolean, configured=boolean, reason=maybe_string),
                "description": "As in /info; configured and reason when it did not start.",
            },
            grid={
                **obj(["enabled"], enabled=boolean, url=maybe_string),
                "description": "The reporter's status; url is the orchestrator's origin only.",
            },
            recent_jobs={
                **listed,
                "properties": {
                    **listed["properties"],
                    "items": {"type": "array", "items": _ref("UiJob")},
                },
            },
            workloads={
                **listed,
                "required": ["enabled", "items", "error"],
                "properties": {
                    **listed["properties"],
                    "enabled": boolean,
                    "items": {"type": "array", "items": _ref("UiWorkload")},
                },
            },
            history=obj(
                ["interval", "window_seconds", "samples"],
                interval=number,
                window_seconds=number,
                samples={"type": "array", "items": _ref("UiSample")},
            ),
        ),
        "UiJob": obj(
            ["id", "status", "containers", "created_at", "updated_at"],
            id=string,
            status={"enum": [s.value for s in JobStatus]},
            containers=strings,
            created_at=number,
            updated_at=number,
        ),
        "UiWorkload": {
            **obj(
                ["job_id", "status", "gpus"],
                job_id={"type": "string", "pattern": WORKLOAD_ID},
                name=string,
                status={"enum": [s.value for s in WorkloadStatus]},
                workload_type=maybe_string,
                image=string,
                origin={"enum": ["push", "pull"]},
                created_at=_nullable({"type": "string", "format": "date-time"}),
                started_at=_nullable({"type": "string", "format": "date-time"}),
                finished_at=_nullable({"type": "string", "format": "date-time"}),
                runtime_seconds=maybe_number,
                exit_code=_nullable(integer),
                error=maybe_string,
                queue_position=integer,
                cancel_requested=boolean,
                gpus={"type": "array", "items": gpu_ref},
            ),
            "description": "Never the command, arguments, environment or callback.",
        },
        "UiSample": {
            **obj(
                ["at", "jobs_per_second", "running", "queued", "latency", "gpus"],
                at=number,
                jobs_per_second=maybe_number,
                running=integer,
                queued=integer,
                latency=obj(
                    ["p50", "p90", "p99"], p50=maybe_number, p90=maybe_number, p99=maybe_number
                ),
                gpus={
                    "type": "object",
                    "additionalProperties": {
                        "type": "array",
                        "items": maybe_number,
                        "minItems": 4,
                        "maxItems": 4,
                    },
                    "description": "By GPU key: utilisation %, memory used (bytes), "
                    "temperature (°C), power (W).",
                },
            ),
            "description": "One sample of the sampler (every ui.sample_interval seconds).",
        },
    }


def _json(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Schema]:
    return {
        str(code): _json(_ref("Error"), ERROR_TEXT[code])
        for code in sorted({*COMMON_ERRORS, *codes})
    }


def _security(method: str, path: str) -> list[dict[str, list[str]]]:
    """From the dispatcher's own rule. ``{}`` (no key) is allowed where keys are optional:
    Infernet routes unless ``api_keys.required``; workload routes always need one."""
    scope = route_scope(method, path.replace("{job_id}", JOB_ID_EXAMPLE))
    wanted: list[str] = [] if scope is None else [scope] if isinstance(scope, str) else [*scope]
    keyed: list[dict[str, list[str]]] = [{"bearerAuth": [s]} for s in wanted]
    keyed = keyed or [{"bearerAuth": []}]
    return keyed if path.startswith("/v1/") else [{}, *keyed]


def _static(media: str) -> Schema:
    return {"description": "OK", "content": {media: {"schema": {"type": "string"}}}}


def _query(name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {"name": name, "in": "query", "schema": schema, "description": description, **extra}


def _body(schema: Schema, media: str = "application/json") -> Schema:
    return {"required": True, "content": {media: {"schema": schema}}}


def build() -> dict[str, Any]:
    """The whole document (a fresh dict; the served bytes are cached by :func:`document`)."""
    components = _hand_written()
    draft = _model_schemas(Draft, components)
    # Accepted besides the list its schema shows (a before-validator wraps it).
    components["Draft"]["properties"]["command"]["anyOf"].insert(0, {"type": "string"})
    delegated = _model_schemas(DelegatedSubscriptionRequest, components)
    job_id_param = {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": WORKLOAD_ID},
    }
    one_job = {"anyOf": [_ref("OffchainJob"), delegated]}
    text = {"type": "string"}

    def op(method: str, path: str, summary: str, responses: dict[str, Any], **more: Any) -> Schema:
        return {
            "summary": summary,
            "operationId": f"{method}{path}".replace("/", "_").replace("{", "").replace("}", ""),
            "security": _security(method.upper(), path),
            "responses": responses,
            **more,
        }

    info_note = " Needs a key when api_keys.protect_info is set."
    paths: dict[str, dict[str, Any]] = {
        "/health": {
            "get": op(
                "get",
                "/health",
                "Node health; 503 while draining or when the job store cannot write.",
                {
                    "200": _json(_ref("Health")),
                    "503": _json(_ref("Health"), "Unhealthy or stopping"),
                },
            )
        },
        "/info": {
            "get": op(
                "get",
                "/info",
                "Infernet's /info plus services, queues and health." + info_note,
                {"200": _json(_ref("Info")), **_errors()},
            )
        },
        "/resources": {
            "get": op(
                "get",
                "/resources",
                "Each container's /service-resources (failures left out), cached." + info_note,
                {
                    "200": _json({"type": "object", "additionalProperties": {}}),
                    **_errors(),
                },
                parameters=[_query("model_id", text, "Passed on to every container.")],
            )
        },
        "/metrics": {
            "get": op(
                "get",
                "/metrics",
                "Prometheus text exposition (when metrics are enabled); OpenMetrics when the "
                "Accept header asks for application/openmetrics-text." + info_note,
                {
                    "200": {
                        "description": "OK",
                        "content": {
                            "text/plain": {"schema": text},
                            "application/openmetrics-text": {"schema": text},
                        },
                    },
                    **_errors(),
                },
            )
        },
        "/openapi.json": {
            "get": op(
                "get",
                "/openapi.json",
                "This document." + info_note,
                {"200": _json({"type": "object"}), **_errors()},
            )
        },
        "/": {
            "get": op(
                "get",
                "/",
                "Redirects to the status page.",
                {"302": {"description": "To ui", "headers": {"Location": {"schema": text}}}},
            )
        },
        "/ui": {
            "get": op(
                "get",
                "/ui",
                "The status page (static: its data comes from /ui/state).",
                {"200": _static("text/html"), "304": {"description": "Not modified (ETag)"}},
            )
        },
        "/ui/app.js": {
            "get": op(
                "get",
                "/ui/app.js",
                "The status page's script.",
                {"200": _static("text/javascript"), "304": {"description": "Not modified"}},
            )
        },
        "/ui/app.css": {
            "get": op(
                "get",
                "/ui/app.css",
                "The status page's style sheet.",
                {"200": _static("text/css"), "304": {"description": "Not modified"}},
            )
        },
        "/ui/state": {
            "get": op(
                "get",
                "/ui/state",
                "The status page's data: the node's state and the sampler's history (GPU "
                "telemetry, job rate, queue, latency)." + info_note,
                {"200": _json(_ref("UiState")), **_errors()},
                parameters=[
                    _query(
                        "since",
                        {"type": "number"},
                        "Only the samples taken after this time (the newest 'at' the page has).",
                    )
                ],
            )
        },
        "/api/jobs": {
            "post": op(
                "post",
                "/api/jobs",
                "Submit an off-chain job ({id}) or a delegated subscription ({}).",
                {
                    "200": _json({"anyOf": [_ref("JobCreated"), _ref("DelegatedAccepted")]}),
                    **_errors(413, 415, 502, 503),
                },
                requestBody=_body(one_job),
            ),
            "get": op(
                "get",
                "/api/jobs",
                "With id: the jobs' results. Without: the caller's job ids, or a page of "
                "them with limit/cursor.",
                {
                    "200": _json(
                        {
                            "anyOf": [
                                {"type": "array", "items": _ref("JobResult")},
                                {"type": "array", "items": text},
                                _ref("IdPage"),
                            ]
                        },
                        "JobResult list (id given), id list, or IdPage (limit/cursor given)",
                    ),
                    **_errors(),
                },
                parameters=[
                    _query(
                        "id",
                        {"type": "array", "items": text},
                        "Job ids (repeat the parameter).",
                        style="form",
                        explode=True,
                    ),
                    _query(
                        "intermediate",
                        {"type": "string", "examples": ["true", "false"]},
                        "'true' adds the chain's earlier results; other values do not, as in "
                        "Infernet.",
                    ),
                    _query(
                        "wait",
                        {"type": "number", "minimum": 0},
                        "Long-poll up to S seconds (capped by jobs.max_wait_seconds).",
                    ),
                    _query(
                        "until",
                        {"enum": ["all", "any"], "default": "all"},
                        "With wait: answer when all / any listed job is final.",
                    ),
                    _query(
                        "pending",
                        {"type": "string", "examples": ["true", "false"]},
                        "Only running (true) or final (false) jobs; any other value filters "
                        "nothing, as in Infernet.",
                    ),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": ID_PAGE_MAX},
                        "Page size of the id listing.",
                    ),
                    _query("cursor", text, "next_cursor of the previous page."),
                ],
            ),
        },
        "/api/jobs/batch": {
            "post": op(
                "post",
                "/api/jobs/batch",
                "Submit many jobs; the answer is aligned with the input.",
                {
                    "200": _json(
                        {
                            "type": "array",
                            "items": {
                                "anyOf": [
                                    _ref("JobCreated"),
                                    _ref("DelegatedAccepted"),
                                    _ref("Error"),
                                ]
                            },
                        }
                    ),
                    **_errors(413, 503),
                },
                requestBody=_body(
                    {
                        "type": "array",
                        "description": "Each entry is one job body (see /api/jobs); an entry "
                        "that is not valid gets its own {error, params} at its position while "
                        "the others run, so the array may hold anything.",
                        "items": {},
                    }
                ),
            )
        },
        "/api/jobs/stream": {
            "post": op(
                "post",
                "/api/jobs/stream",
                "Submit a job and stream its output: first chunk '<job id>\\n', then the "
                "container's bytes.",
                {
                    "200": {
                        "description": "The job id line, then the output",
                        "content": {"application/octet-stream": {"schema": text}},
                    },
                    **_errors(413, 415, 502, 503),
                },
                requestBody=_body(_ref("OffchainJob")),
            )
        },
        "/api/status": {
            "put": op(
                "put",
                "/api/status",
                "Record a job's status (local callers only: loopback, Docker bridges).",
                {"200": _json({"type": "null"}), **_errors(413, 503)},
                requestBody=_body(_ref("StatusUpdate")),
            )
        },
        "/v1/jobs": {
            "post": op(
                "post",
                "/v1/jobs",
                "Submit a workload (image + command).",
                {
                    "201": {
                        **_json(_ref("Workload"), "Accepted and queued"),
                        "headers": {"Location": {"schema": text}},
                    },
                    **_errors(413, 415, 422, 503),
                },
                requestBody=_body(draft),
            ),
            "get": op(
                "get",
                "/v1/jobs",
                "The key's workloads, newest first.",
                {"200": _json(_ref("WorkloadPage")), **_errors()},
                parameters=[
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                        "Page size.",
                    ),
                    _query("cursor", text, "next_cursor of the previous page."),
                ],
            ),
        },
        "/v1/jobs/estimate": {
            "post": op(
                "post",
                "/v1/jobs/estimate",
                "Would this draft fit, when would it start and at what price.",
                {"200": _json(_ref("Estimate")), **_errors(413, 415, 422)},
                requestBody=_body(draft),
            )
        },
        "/v1/jobs/{job_id}": {
            "parameters": [job_id_param],
            "get": op(
                "get",
                "/v1/jobs/{job_id}",
                "One workload.",
                {"200": _json(_ref("Workload")), **_errors(404, 405)},
            ),
        },
        "/v1/jobs/{job_id}/runtime": {
            "parameters": [job_id_param],
            "get": op(
                "get",
                "/v1/jobs/{job_id}/runtime",
                "Status, timing and the tail of the output.",
                {"200": _json(_ref("Runtime")), **_errors(404, 405)},
            ),
        },
        "/v1/jobs/{job_id}/logs/live": {
            "parameters": [job_id_param],
            "get": op(
                "get",
                "/v1/jobs/{job_id}/logs/live",
                "Server-sent events: 'log' events (data: the output as a JSON string), then "
                "one 'end' event (data: job_id, status, exit_code, error).",
                {
                    "200": {
                        "description": "An event stream",
                        "content": {"text/event-stream": {"schema": text}},
                    },
                    **_errors(404, 405),
                },
            ),
        },
        "/v1/jobs/{job_id}/cancel": {
            "parameters": [job_id_param],
            "post": op(
                "post",
                "/v1/jobs/{job_id}/cancel",
                "Cancel a workload: 202 while it stops, 200 when already final.",
                {
                    "200": _json(_ref("Workload"), "Final"),
                    "202": _json(_ref("Workload"), "Stopping"),
                    **_errors(404, 405),
                },
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "node-agent",
            "version": __version__,
            "description": f"Infernet Node REST API (v{INFERNET_COMPAT_VERSION}) and "
            "orchestrator workloads. Every GET route also answers HEAD. Paths closed by "
            f"api_keys.protect_info: {', '.join(sorted(INFO_PATHS))}.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key, na_<id>_<secret>; scopes jobs:read, jobs:write.",
                }
            },
        },
    }


@cache
def document() -> bytes:
    """The served bytes, encoded once (``jsonpolicy``: the uint256 bounds stay exact)."""
    return jsonpolicy.dumps(build())


async def serve(request: web.BaseRequest) -> web.Response:
    return web.Response(body=document(), content_type="application/json")
