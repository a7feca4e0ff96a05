"""The agent's share of the direct container rate, measured interleaved.

Why a second script: on a shared virtual machine the speed drifts by ±20 % within minutes, and
``run.py`` measures the ceiling minutes after the agent. Here every round measures the echo
container directly (through its published port and on its Docker network address; the
higher is the ceiling) and then the agent, each for a few seconds at the same concurrency,
one fresh load process each, so drift hits both sides alike.

    python bench/share.py --rounds 3 --duration 5 --concurrency 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import loadgen
import run

MODES = ("batched", "per-job")


def one_level(target: str, url: str, args: argparse.Namespace, *extra: str) -> float:
    """Jobs (or direct calls) per second from one load process at ``args.concurrency``."""
    with tempfile.TemporaryDirectory(prefix="node-agent-share-") as tmp:
        command = [sys.executable, str(Path(loadgen.__file__)), "--target", target, "--url", url]
        command += ["--concurrency", str(args.concurrency), "--duration", str(args.duration)]
        command += ["--warmup", str(args.warmup), "--results-dir", tmp, "--scenario", "s"]
        subprocess.run([*command, *extra], check=True, capture_output=True)
        report = json.loads((Path(tmp) / "latest.json").read_text())["s"]
    return float(report["results"][0]["throughput_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--agent-cmd", default=None, help="command that runs node-agent")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--results-dir", default=str(loadgen.RESULTS_DIR))
    args = parser.parse_args(argv)

    subprocess.run(["bash", str(run.ROOT / "scripts" / "build-examples.sh")], check=True)
    rounds: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="node-agent-share-") as tmp,
        run.running_agent(args, Path(tmp)) as (url, _pid, echo_port),
    ):
        published = f"http://127.0.0.1:{echo_port}"
        bridge = f"http://{run.echo_bridge_address(echo_port)}:3000"
        for number in range(args.rounds):
            ceiling = max(one_level("direct", u, args) for u in (published, bridge))
            row: dict[str, Any] = {"round": number, "direct": ceiling}
            for mode in MODES:
                row[mode] = one_level("agent", url, args, "--results", mode)
            rounds.append(row)
            shares = "  ".join(f"{m} {row[m]:7.0f}/s = {row[m] / ceiling:.3f}" for m in MODES)
            print(f"round {number}: direct {ceiling:7.0f}/s  {shares}", flush=True)
    ceilings = sum(r["direct"] for r in rounds)
    summary = {m: round(sum(r[m] for r in rounds) / ceilings, 3) for m in MODES}
    print("share of the direct rate: " + ", ".join(f"{m} {v}" for m, v in summary.items()))
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"share-{stamp}.json"
    report = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": rounds,
        "share": summary,
        "target": run.TARGET_SHARE_OF_DIRECT,
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0 if summary["batched"] >= run.TARGET_SHARE_OF_DIRECT else 1


if __name__ == "__main__":
    sys.exit(main())
