"""Helpers for tests that run aggregator processes: heartbeats, metrics scrapes, waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

import httpx
import msgspec
import redis
from prometheus_client.parser import text_string_to_metric_families

from schemas import keyspace


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached after {timeout} s")


def heartbeat_pid(r: redis.Redis, consumer: str) -> int | None:
    raw = r.get(keyspace.heartbeat(consumer))
    return None if raw is None else int(msgspec.json.decode(raw)["pid"])


def scrape(port: int) -> dict[str, float]:
    """Samples summed over labels: ``{"analytics_aggregator_events_applied_total": 123.0, ...}``."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def try_scrape(port: int) -> dict[str, float] | None:
    try:
        return scrape(port)
    except httpx.HTTPError:
        return None


def check(env: Mapping[str, str], *args: str) -> int:
    return subprocess.run(
        [sys.executable, "-m", "aggregator.cli", "--check", *args],
        env={**os.environ, **env}, capture_output=True, timeout=60,
    ).returncode
