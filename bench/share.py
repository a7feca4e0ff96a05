"""The agent's share of the direct container rate, measured interleaved.

Only the share, without the full table of ``run.py`` (which ends with the same interleaved
rounds, ``run.interleaved_share``): on a shared virtual machine the speed drifts by ±20 %
within minutes, so every round measures the echo container directly (through its published
port and on its Docker network address; the higher is the ceiling) and then the agent, each
for a few seconds at the same concurrency, one fresh load process each, so drift hits both
sides alike.

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

import loadgen
import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--agent-cmd", default=None, help="command that runs node-agent")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--results-dir", default=str(loadgen.RESULTS_DIR))
    args = parser.parse_args(argv)

    subprocess.run(["bash", str(run.ROOT / "scripts" / "build-examples.sh")], check=True)
    with (
        tempfile.TemporaryDirectory(prefix="node-agent-share-") as tmp,
        run.running_agent(args, Path(tmp)) as (url, _pid, echo_port),
    ):
        measured = run.interleaved_share(
            url,
            run.echo_urls(echo_port),
            rounds=args.rounds,
            duration=args.duration,
            concurrency=args.concurrency,
        )
    summary = measured["share"]
    print("share of the direct rate: " + ", ".join(f"{m} {v}" for m, v in summary.items()))
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"share-{stamp}.json"
    report = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **measured,
        "target": run.TARGET_SHARE_OF_DIRECT,
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0 if summary["batched"] >= run.TARGET_SHARE_OF_DIRECT else 1


if __name__ == "__main__":
    sys.exit(main())
