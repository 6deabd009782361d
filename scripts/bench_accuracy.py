"""Benchmark 5 — accuracy: daily-active error at 1,000,000 villages; session p50/p95 error.

    python -m scripts.bench_accuracy [--villages 1000000] [--sessions 100000]

Through the real services: one ``village_active`` event for each of ``--villages`` distinct
villages on one UTC day (yesterday, inside the late window) plus ``--sessions`` sessions (start and
end, log-normal durations as the simulator draws them) of villages from the same set starting
that day, POSTed to the HTTP collector in batches of 1,000, drained by one worker, read back from
the KPI API. Ground truth is computed here from the events sent: exact distinct villages, and exact
lower-rank percentiles of the durations (the rank rule the sketch uses). The ceiling for accuracy
is the theory: HyperLogLog standard error 0.81 %, the sketch's relative error alpha (0.5 %).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import random
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import msgspec

from scripts import bench_common as bc
from scripts.simulate import event, sample_duration


def build(villages: int, sessions: int, day: date, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    rng = random.Random(seed)
    day_ms = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
    names = [f"acc-village-{seed}-{i}" for i in range(villages)]
    events = [event("village_active", v, day_ms + rng.randrange(86_400_000 - 1), None, {"kind": "daily"}, rng)
              for v in names]
    durations = []
    for _ in range(sessions):
        v = names[rng.randrange(villages)]
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        start = day_ms + rng.randrange(12 * 3_600_000)
        dur = sample_duration(rng)
        durations.append(dur)
        events.append(event("session_start", v, start, sid, {}, rng))
        events.append(event("session_end", v, start + dur, sid, {"reason": "quit"}, rng))
    rng.shuffle(events)
    return events, durations


def send(port: int, events: list[dict[str, Any]], batch: int = 1000, threads: int = 4) -> int:
    bodies = [msgspec.json.encode({"batch_id": f"acc-{i}", "events": events[i : i + batch]})
              for i in range(0, len(events), batch)]

    def worker(chunk: list[bytes]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        accepted = 0
        for body in chunk:
            conn.request("POST", "/api/analytics/events", body=body,
                         headers={"Content-Type": "application/json", "X-Write-Key": bc.WRITE_KEY})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status == 202:
                accepted += json.loads(data)["accepted"]
        conn.close()
        return accepted

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(worker, [bodies[i::threads] for i in range(threads)]))


def kpi(port: int, token: str, path: str, day: date) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sep = "&" if "?" in path else "?"
    conn.request("GET", f"/internal/analytics/kpis/{path}{sep}start={day}&end={day}",
                 headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    series = json.loads(resp.read())
    conn.close()
    return float(series[0]["value"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench_accuracy", description=__doc__.split("\n")[1])
    p.add_argument("--villages", type=int, default=1_000_000)
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--redis-url", help="use this server (it is FLUSHED) instead of a private one")
    args = p.parse_args(argv)
    from infra import tokens
    from schemas.sketch import exact_quantile

    day = datetime.now(timezone.utc).date() - timedelta(days=1)
    t0 = time.monotonic()
    events, durations = build(args.villages, args.sessions, day, args.seed)
    with bc.redis_server(args.redis_url) as url:
        env = bc.bench_env(url, KPI_MIN_GROUP_SIZE="0")
        svc = bc.collector(env)
        with bc.running(svc):
            accepted = send(svc.port or 0, events)
        worker = bc.Proc(["aggregator.cli", "--name", "bench-acc", "--burst"], env)
        worker.proc.wait()
        api = bc.kpi_api(env)
        with bc.running(api):
            token = tokens.issue(bc.JWT_SECRET, "staff")
            dau = kpi(api.port or 0, token, "daily-active-villages", day)
            got = {m: kpi(api.port or 0, token, f"session-duration?metric={m}", day) for m in ("p50", "p95", "avg")}
    truth = {"p50": exact_quantile(durations, 0.5) / 1000, "p95": exact_quantile(durations, 0.95) / 1000,
             "avg": sum(durations) / len(durations) / 1000}
    err = {m: (got[m] - truth[m]) / truth[m] for m in truth}
    summary = {
        **bc.meta(1),
        "day": day.isoformat(),
        "events_sent": len(events),
        "events_accepted": accepted,
        "villages_true": args.villages,
        "villages_measured": dau,
        "dau_error": (dau - args.villages) / args.villages,
        "hll_standard_error": 0.0081,
        "sessions": args.sessions,
        "session_true_s": truth,
        "session_measured_s": got,
        "session_error": err,
        "sketch_alpha": 0.005,
        "target_unique_error": 0.01,
        "target_percentile_error": 0.01,
        "elapsed_s": time.monotonic() - t0,
    }
    rows = [
        ("daily active villages", args.villages, dau, summary["dau_error"], 0.0081, "< 1 %"),
        ("session p50 (s)", truth["p50"], got["p50"], err["p50"], 0.005, "< 1 %"),
        ("session p95 (s)", truth["p95"], got["p95"], err["p95"], 0.005, "< 1 %"),
        ("session avg (s)", truth["avg"], got["avg"], err["avg"], 0.0, ""),
    ]
    bc.emit("accuracy", summary, rows, ("figure", "exact", "measured", "rel. error", "ceiling (theory)", "target"))
    return summary


if __name__ == "__main__":
    main()
