"""bench/chain_bench.py's burst in its quick mode (50 subscriptions, free and paid, a real agent
on anvil --block-time 1, with the lean consumer: the one the bench deploys itself), so it cannot
rot. No timing is asserted: the numbers are the benchmark's business; the test checks that the
report is complete and consistent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import MISSED_TARGET_EXIT  # noqa: E402

pytestmark = pytest.mark.chain


def test_quick_burst_writes_a_complete_report(tmp_path: Path) -> None:
    script = ROOT / "bench" / "chain_bench.py"
    done = subprocess.run(
        [
            *(sys.executable, str(script), "--quick", "--only", "burst"),
            *("--consumer", "lean", "--results-dir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    # A missed target (this machine may be slower than the targets) is not a failure.
    assert done.returncode in (0, MISSED_TARGET_EXIT), done.stdout[-2000:] + done.stderr[-4000:]
    (path,) = tmp_path.glob("chain-*.json")
    report = json.loads(path.read_text())
    assert report["quick"] is True and set(report) >= {"burst", "targets", "machine"}
    burst = report["burst"]
    assert burst["subscriptions"] == 50 and burst["free"] + burst["paid"] == 50
    assert burst["consumer"] == {"kind": "lean", "contract": "ExampleLeanConsumer"}
    assert burst["tracked"] + burst["skipped_by_agent"] == 50
    assert burst["all_delivered"] and burst["delivered"] == burst["tracked"]
    assert sum(row["deliveries"] for row in burst["blocks"]) == burst["delivered"]
    assert burst["blocks_to_all_delivered"] == burst["blocks"][-1]["block"]
    calls = burst["rpc_calls"]
    assert calls["by_method"]["eth_sendRawTransaction"] >= burst["delivered"]
    assert calls["total"] == sum(calls["by_method"].values())
    assert set(calls["per_delivery_by_method"]) == set(calls["by_method"])
    tx = burst["transactions"]
    assert tx["mined"] == burst["delivered"] + tx["extra"]
    for counter in ("gaps", "resent", "filled", "replaced", "resigned", "broadcast_rejected"):
        assert isinstance(tx[counter], int)
    assert 1 <= burst["blocks_needed_for_the_gas"] <= burst["blocks_to_all_delivered"]
    gas = burst["gas_per_delivery"]
    assert gas["free"]["n"] + gas["paid"]["n"] == burst["delivered"]
    assert gas["free"]["n"] <= burst["free"] and gas["paid"]["n"] <= burst["paid"]
    # a paid delivery moves ETH between Wallets; the lean consumer stores nothing
    assert gas["free"]["max"] < gas["paid"]["min"] and gas["paid"]["max"] < 200_000
    assert gas["free"]["min"] <= gas["used"] <= gas["paid"]["max"] and gas["limit"] > 0
    for route in ("idle_before", "all", "health", "jobs"):
        api = burst["api"][route]
        assert api["n"] > 0 and api["errors"] == 0 and api["p50_ms"] <= api["p99_ms"]
    # each answer over 10 ms with the host's steal around it (ms, never negative)
    slow, stolen = burst["api"]["over_10ms_at_s"], burst["api"]["over_10ms_host_steal_ms"]
    assert len(slow) == len(stolen) and all(ms >= 0 for ms in stolen)
    assert all(ms > 10 for _, _, ms in slow)
    assert {t["target"] for t in report["targets"]} == {
        "burst: blocks to every delivery",
        "burst: RPC calls per delivery",
        "burst: nonce gaps + replacements",
        "burst: API p99 during the burst (ms)",
    }
    assert (
        "== targets" in done.stdout and "of the lean consumer (ExampleLeanConsumer)" in done.stdout
    )


def test_steal_around_a_slow_answer_counts_the_window_around_it() -> None:
    """The host's steal booked from 50 ms before a slow answer was sent to 50 ms after it
    came (``/proc/stat`` counts in 10 ms ticks, so the tick a short theft lands in may come a
    little before or after the answer)."""
    from chain_burst import Sample, steal_around

    # answers every 10 ms, 2 ms each; the steal counter (s) read after each answer
    steal = [0.0] * 10 + [0.02] * 5 + [0.05] * 10
    samples = [Sample(i / 100, "jobs", 2.0, 200, s) for i, s in enumerate(steal)]
    samples[12] = samples[12]._replace(ms=30.0)  # a slow answer, sent at 0.12 s
    # from the last answer done by 0.07 s (#6: 0.00) to the first done after 0.20 s (#20: 0.05)
    assert steal_around(samples, 12) == 50.0
    assert steal_around(samples, 8) == 20.0  # #2 (0.00) to #14, done at 0.142 s (0.02)
    assert steal_around(samples, 2) == 0.0  # no answer done 50 ms before it: not judged
    assert steal_around(samples, 20) == 0.0  # no answer 50 ms after it: not judged
