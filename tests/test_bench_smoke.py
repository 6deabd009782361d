"""Each benchmark script runs end to end with tiny sizes and prints its summary.

No timing is asserted: benchmarks are measured by hand (BENCHMARKS.md), never by the test suite.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

SMOKE = {
    "bench_ingest": ["--runs", "1", "--seconds", "1", "--latency-seconds", "1", "--ceiling-seconds", "0.3",
                     "--templates", "3", "--connections", "2"],
    "bench_aggregate": ["--runs", "1", "--events", "2000"],
    "bench_collector_path": ["--windows", "2", "--window-batches", "3", "--templates", "3",
                             "--rate-limit-requests", "10"],
    "bench_kpi": ["--runs", "1", "--days", "3", "--requests", "8", "--villages-per-day", "20"],
    "bench_memory": ["--events", "300", "--checkpoints", "200", "--chunk-seconds", "1", "--connections", "2"],
    "bench_accuracy": ["--villages", "300", "--sessions", "50"],
    "bench_cluster": ["--runs", "1", "--seconds", "1", "--connections", "2"],  # starts its own servers
}


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_bench_script_runs(script: str, redis_url: str) -> None:
    args = [sys.executable, "-m", f"scripts.{script}", *SMOKE[script]]
    if script != "bench_cluster":
        args += ["--redis-url", redis_url]
    elif not shutil.which("wrk"):
        pytest.skip("bench_cluster drives the collector with wrk (apt-get install wrk)")
    if script == "bench_ingest" and not shutil.which("wrk"):
        args += ["--loadgen", "asyncio", "--loadgen-procs", "1"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    assert len(lines) == 1, proc.stdout[-2000:]
    summary = json.loads(lines[0][len("BENCH "):])
    assert summary["bench"] == script.removeprefix("bench_")
    assert summary["date"] and summary["commit"]
