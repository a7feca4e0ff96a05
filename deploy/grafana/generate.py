# ruff: noqa: E501, E741  (long PromQL strings; I is the instance selector)
"""Writes node-agent.json beside this file: the dashboard is generated, edit this and run
``.venv/bin/python deploy/grafana/generate.py`` (tests/deploy checks every query parses and every
series is exported)."""

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}
I = 'instance=~"$instance"'
panels = []
y = 0
pid = 0


def nid():
    global pid
    pid += 1
    return pid


def row(title):
    global y
    panels.append(
        {
            "type": "row",
            "title": title,
            "id": nid(),
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        }
    )
    y += 1


x = 0
rowh = 0


def panel(
    title,
    targets,
    *,
    kind="timeseries",
    unit=None,
    w=8,
    h=8,
    description="",
    mappings=None,
    decimals=None,
    max_=None,
):
    global x, y, rowh
    if x + w > 24:
        x = 0
        y += rowh
        rowh = 0
    defaults = {}
    if unit:
        defaults["unit"] = unit
    if mappings:
        defaults["mappings"] = mappings
    if decimals is not None:
        defaults["decimals"] = decimals
    if max_ is not None:
        defaults["max"] = max_
    p = {
        "type": kind,
        "title": title,
        "id": nid(),
        "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(65 + i), "datasource": DS, "expr": e, "legendFormat": lf}
            for i, (e, lf) in enumerate(targets)
        ],
    }
    if description:
        p["description"] = description
    if kind == "stat":
        p["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
        }
    if kind == "timeseries":
        p["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    panels.append(p)
    x += w
    rowh = max(rowh, h)


def end_row():
    global x, y, rowh
    y += rowh
    x = 0
    rowh = 0


def rate(name, by, window="$__rate_interval", extra=""):
    sel = f"{name}{{{I}{extra}}}"
    return f"sum by ({by}) (rate({sel}[{window}]))"


def quantile(q, name, by, window="$__rate_interval"):
    b = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({b}) (rate({name}_bucket{{{I}}}[{window}])))"


CHECKS = [
    {
        "type": "value",
        "options": {
            "1": {"text": "ok", "color": "green", "index": 0},
            "0.5": {"text": "degraded", "color": "orange", "index": 1},
            "0": {"text": "unhealthy", "color": "red", "index": 2},
        },
    },
]
UP = [
    {
        "type": "value",
        "options": {
            "1": {"text": "yes", "color": "green", "index": 0},
            "0": {"text": "no", "color": "red", "index": 1},
        },
    }
]

row("Node")
panel(
    "Health checks",
    [(f"node_agent_health_check{{{I}}}", "{{instance}} {{check}}")],
    kind="stat",
    w=8,
    h=6,
    mappings=CHECKS,
    description="Each /health check: ok, degraded or unhealthy.",
)
panel(
    "Draining",
    [(f"node_agent_draining{{{I}}}", "{{instance}}")],
    kind="stat",
    w=4,
    h=6,
    mappings=UP,
)
panel(
    "Agent version",
    [(f"node_agent_build_info{{{I}}}", "{{instance}} {{version}}")],
    kind="stat",
    w=4,
    h=6,
    description="The version label of node_agent_build_info.",
)
panel("Jobs running", [(f"node_agent_jobs_running{{{I}}}", "{{instance}}")], kind="stat", w=4, h=6)
panel(
    "Jobs queued",
    [(f"sum by (instance) (node_agent_queue_depth{{{I}}})", "{{instance}}")],
    kind="stat",
    w=4,
    h=6,
)
panel(
    "Event loop lag",
    [
        (quantile(0.99, "node_agent_event_loop_lag_seconds", "instance", "5m"), "p99 {{instance}}"),
        (quantile(0.5, "node_agent_event_loop_lag_seconds", "instance", "5m"), "p50 {{instance}}"),
    ],
    unit="s",
    w=24,
    h=6,
    description="How late the agent's event loop ran a timer (sampled every 20 ms): every request, "
    "container call and delivery waits this long at that moment. Worst of the last minute: "
    "/info event_loop.",
)
end_row()
row("Infernet jobs")
panel(
    "Jobs finished / s by status",
    [(rate("node_agent_jobs_total", "status"), "{{status}}")],
    unit="reqps",
)
panel(
    "Job latency, accepted to final (queue wait included)",
    [
        (quantile(q, "node_agent_job_duration_seconds", ""), f"p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ],
    unit="s",
)
panel(
    "Jobs refused (queue full) / s",
    [(rate("node_agent_jobs_refused_total", "container"), "{{container}}")],
    unit="reqps",
)
end_row()
row("Service containers")
panel(
    "Container calls / s",
    [(rate("node_agent_container_calls_total", "container, status"), "{{container}} {{status}}")],
    unit="reqps",
    description="Every call of a service container: job steps and on-chain deliveries.",
)
panel(
    "Container call latency p95",
    [(quantile(0.95, "node_agent_container_call_duration_seconds", "container"), "{{container}}")],
    unit="s",
)
panel(
    "Queue wait p95",
    [(quantile(0.95, "node_agent_queue_wait_seconds", "container"), "{{container}}")],
    unit="s",
    description="Time a job step waited for one of the container's concurrency slots.",
)
panel(
    "Queue depth and capacity",
    [
        (f"node_agent_queue_depth{{{I}}}", "{{container}} waiting"),
        (f"node_agent_queue_capacity{{{I}}}", "{{container}} capacity"),
    ],
)
panel(
    "Containers up",
    [(f"node_agent_container_up{{{I}}}", "{{instance}} {{container}}")],
    kind="stat",
    mappings=UP,
)
panel(
    "Container restarts (1 h)",
    [(f"increase(node_agent_container_restarts_total{{{I}}}[1h])", "{{container}}")],
)
end_row()
row("GPUs")
panel(
    "GPU utilization",
    [(f"DCGM_FI_DEV_GPU_UTIL{{{I}}}", "GPU {{gpu}} {{modelName}}")],
    unit="percent",
    max_=100,
)
panel(
    "GPU memory used",
    [
        (
            f"DCGM_FI_DEV_FB_USED{{{I}}} / (DCGM_FI_DEV_FB_USED{{{I}}} + DCGM_FI_DEV_FB_FREE{{{I}}}) * 100",
            "GPU {{gpu}} {{modelName}}",
        )
    ],
    unit="percent",
    max_=100,
)
panel("GPU temperature", [(f"DCGM_FI_DEV_GPU_TEMP{{{I}}}", "GPU {{gpu}}")], unit="celsius")
panel(
    "GPU power",
    [
        (f"DCGM_FI_DEV_POWER_USAGE{{{I}}}", "GPU {{gpu}} draw"),
        (f"DCGM_FI_DEV_ENFORCED_POWER_LIMIT{{{I}}}", "GPU {{gpu}} limit"),
    ],
    unit="watt",
)
panel(
    "GPU health",
    [
        (f"node_agent_gpu_healthy{{{I}}}", "GPU {{index}} {{family}}"),
        (f"node_agent_gpu_up{{{I}}}", "NVML {{instance}}"),
    ],
    kind="stat",
    mappings=CHECKS,
    description="1 healthy, 0.5 degraded, 0 unhealthy or lost; NVML 1 when it answered the last poll.",
)
panel(
    "Last XID and row remapping",
    [
        (f"DCGM_FI_DEV_XID_ERRORS{{{I}}}", "GPU {{gpu}} last XID"),
        (f"DCGM_FI_DEV_ROW_REMAP_PENDING{{{I}}}", "GPU {{gpu}} remap pending"),
    ],
    kind="stat",
    description="Last XID code since the agent started (0: none).",
)
panel(
    "MIG slices (memory)",
    [(f'DCGM_FI_DEV_FB_TOTAL{{{I}, GPU_I_ID!=""}}', "GPU {{gpu}} {{GPU_I_PROFILE}} #{{GPU_I_ID}}")],
    kind="bargauge",
    unit="mbytes",
    w=24,
    h=6,
)
end_row()
row("Chain")
panel(
    "Head and synced block",
    [
        (f"node_agent_chain_head_block{{{I}}}", "head"),
        (f"node_agent_chain_synced_block{{{I}}}", "synced"),
    ],
    decimals=0,
)
panel("Sync lag", [(f"node_agent_chain_lag_blocks{{{I}}}", "{{instance}}")], unit="none")
panel("Connected", [(f"node_agent_chain_ready{{{I}}}", "{{instance}}")], kind="stat", mappings=UP)
panel(
    "Deliveries by outcome (1 h)",
    [(f"sum by (state) (increase(node_agent_chain_deliveries_total{{{I}}}[1h]))", "{{state}}")],
)
panel(
    "Delivery latency (blocks, interval due to mined)",
    [
        (quantile(q, "node_agent_chain_delivery_latency_blocks", "", "1h"), f"p{int(q * 100)}")
        for q in (0.5, 0.95)
    ],
    unit="none",
)
panel(
    "Subscriptions and deliveries in flight",
    [
        (f"node_agent_chain_subscriptions{{{I}}}", "{{state}}"),
        (f"node_agent_chain_deliveries_in_flight{{{I}}}", "in flight"),
    ],
)
panel(
    "RPC latency p95 by method",
    [(quantile(0.95, "node_agent_chain_rpc_duration_seconds", "method"), "{{method}}")],
    unit="s",
)
panel(
    "RPC failure ratio",
    [
        (
            f"sum by (instance) (rate(node_agent_chain_rpc_failures_total{{{I}}}[$__rate_interval])) / "
            f"sum by (instance) (rate(node_agent_chain_rpc_requests_total{{{I}}}[$__rate_interval]))",
            "{{instance}}",
        )
    ],
    unit="percentunit",
)
panel(
    "Chain loop failures in a row; chain process restarts",
    [
        (f"node_agent_chain_loop_failures{{{I}}}", "{{loop}}"),
        (
            f"increase(node_agent_chain_process_restarts_total{{{I}}}[1h])",
            "process restarts (1 h) {{instance}}",
        ),
    ],
    decimals=0,
    description="A loop failing again and again (its last error: /info chain.last_error); the "
    "chain process started again after it died (the OOM killer, a crash: chain_process_ended "
    "in the log).",
)
end_row()
row("Payments")
panel(
    "Paid deliveries / s by token",
    [(rate("node_agent_chain_paid_deliveries_total", "token"), "{{token}}")],
    unit="reqps",
    description="Confirmed deliveries of paid subscriptions; token 0x00..00 is ETH.",
)
panel(
    "Payments / s by token (base units, gross)",
    [(rate("node_agent_chain_paid_amount_total", "token"), "{{token}}")],
    description="paymentAmount of confirmed paid deliveries per second, in the token's base units "
    "(wei for ETH). Gross: the Coordinator keeps 2 x FEE; with a verifier it is paid once "
    "the proof is released.",
)
panel(
    "Payment refusals by reason (1 h)",
    [
        (
            f"sum by (code) (increase(node_agent_chain_payment_refusals_total{{{I}}}[1h]))",
            "{{code}}",
        ),
        (f"node_agent_chain_payments_waiting{{{I}}}", "waiting now {{instance}}"),
    ],
    description="Paid deliveries refused before computing. consumer_*: the consumer's Wallet cannot pay; "
    "node_stake / node_allowance / node_wallet_invalid: the node's own Wallet needs funds or "
    "approval (node-agent wallet show). A delivery refused for a transient reason waits (checked again while its interval is open) and counts once. Reasons: /info chain.payments.recent_refusals.",
)
panel(
    "Proof requests",
    [
        (f"node_agent_chain_proof_requests{{{I}}}", "{{state}}"),
        (
            f"sum by (outcome) (increase(node_agent_chain_proof_outcomes_total{{{I}}}[1h]))",
            "{{outcome}} (1 h)",
        ),
    ],
    decimals=0,
    description="Stakes in play (pending: sent, open: locked until the verifier decides or "
    "the request expires) and requests settled in the last hour.",
)
panel(
    "Payment Wallet by token (base units)",
    [
        (f"node_agent_chain_wallet_unlocked_balance{{{I}}}", "{{token}} unlocked"),
        (f"node_agent_chain_wallet_locked_balance{{{I}}}", "{{token}} locked"),
    ],
    description="chain.wallet.payment_address, read every 30 s. Unlocked funds pay proof stakes; locked "
    "ones are stakes of open proof requests.",
)
panel(
    "Node key gas (ETH)",
    [(f"node_agent_chain_gas_balance_wei{{{I}}} / 1e18", "{{instance}}")],
    description="The node key's ETH, which pays every delivery's gas.",
)
end_row()
row("Orchestrator and workloads")
panel(
    "Orchestrator connected",
    [(f"node_agent_grid_connected{{{I}}}", "{{instance}}")],
    kind="stat",
    mappings=UP,
    w=6,
)
panel(
    "Heartbeats / min",
    [(f"rate(node_agent_grid_heartbeats_total{{{I}}}[5m]) * 60", "{{instance}}")],
    w=6,
)
panel("Workloads by state", [(f"node_agent_workloads{{{I}}}", "{{state}}")], w=6)
panel(
    "Callbacks / s by outcome",
    [(rate("node_agent_workload_callbacks_total", "outcome"), "{{outcome}}")],
    unit="reqps",
    w=6,
)
end_row()

dashboard = {
    "title": "node-agent",
    "uid": "node-agent",
    "description": "One node-agent (or a fleet): Infernet jobs, service containers, GPUs (dcgm-exporter names), chain, payments, orchestrator. Series: README, Metrics.",
    "tags": ["node-agent", "gpu", "infernet"],
    "timezone": "browser",
    "editable": True,
    "graphTooltip": 1,
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "annotations": {"list": []},
    "links": [],
    "templating": {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "refresh": 1,
                "options": [],
            },
            {
                "name": "instance",
                "label": "Node",
                "type": "query",
                "datasource": DS,
                "query": {
                    "query": "label_values(node_agent_build_info, instance)",
                    "refId": "instance",
                },
                "definition": "label_values(node_agent_build_info, instance)",
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {},
                "refresh": 2,
                "sort": 1,
                "hide": 0,
                "options": [],
            },
        ]
    },
    "panels": panels,
}
with open(Path(__file__).with_name("node-agent.json"), "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
print(len(panels))
