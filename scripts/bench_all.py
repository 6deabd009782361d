"""Run every benchmark in sequence and write their summaries to one JSON file (see BENCHMARKS.md).

    python -m scripts.bench_all [--quick] [--profile DIR] [--out bench-results.json]

Full sizes take about 15 minutes on 2 cores; ``--quick`` (minutes) shrinks every size, so its
figures are indicative only. For honest numbers run it from a clean checkout, nothing else busy.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from scripts import bench_accuracy, bench_aggregate, bench_ingest, bench_kpi, bench_memory


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench_all")
    p.add_argument("--quick", action="store_true", help="small sizes, single runs")
    p.add_argument("--profile", metavar="DIR", help="also py-spy the collector and the worker")
    p.add_argument("--out", default="bench-results.json")
    p.add_argument("--only", default="ingest,aggregate,kpi,memory,accuracy")
    args = p.parse_args(argv)
    prof = ["--profile", args.profile] if args.profile else []
    plan: dict[str, tuple[Any, list[str]]] = {
        "ingest": (bench_ingest.main, (["--runs", "1", "--seconds", "3", "--latency-seconds", "3",
                                        "--templates", "20"] if args.quick else []) + prof),
        "aggregate": (bench_aggregate.main, (["--runs", "1", "--events", "50000"] if args.quick else []) + prof),
        "kpi": (bench_kpi.main, ["--runs", "1", "--requests", "400", "--villages-per-day", "1000"] if args.quick else []),
        "memory": (bench_memory.main, ["--events", "200000", "--checkpoints", "100000,200000"] if args.quick else []),
        "accuracy": (bench_accuracy.main, ["--villages", "50000", "--sessions", "5000"] if args.quick else []),
    }
    results = {}
    for name in args.only.split(","):
        fn, argv_ = plan[name]
        results[name] = fn(argv_)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1, default=str)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
