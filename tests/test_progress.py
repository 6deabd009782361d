"""Long operator commands show progress: a bar on a terminal, JSON lines when piped, and a summary."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import httpx
import redis

from infra import tokens
from schemas import keyspace
from schemas.settings import Settings
from scripts.simulate import batch, generate
from tests import services
from tests.conftest import JWT_SECRET
from tests.test_collector_support import HEADERS, ROUTE

DAY = 86_400_000


def piped(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], env={**os.environ, **env, "PROGRESS_EVERY_SECONDS": "0"},
                          capture_output=True, text=True, timeout=120)


def on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """(exit code, stdout, what reached the terminal on stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 120 columns
    proc = subprocess.Popen([sys.executable, "-m", *args], env={**os.environ, **env}, stderr=slave,
                            stdout=subprocess.PIPE, text=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    out = proc.communicate(timeout=30)[0]
    os.close(master)
    return proc.returncode, out, seen.decode(errors="replace")


def json_lines(err: str, what: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in err.splitlines() if line.startswith('{"progress"')]
    assert lines and all(line["progress"] == what for line in lines), err
    assert lines[-1].get("finished") is True
    dones = [line["done"] for line in lines]
    assert dones == sorted(dones)
    return lines


def test_import_backfill_and_replay_show_progress_in_both_modes(
    env: dict[str, str], r: redis.Redis, tmp_path: Path
) -> None:
    settings = Settings.from_env(env)
    now = int(time.time() * 1000)
    events = generate(villages=5, sessions=40, start_ms=now - 20 * DAY, end_ms=now - 5 * DAY, seed=3)
    path = tmp_path / "history.ndjson"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    token = tokens.issue(JWT_SECRET, role="admin")
    svc = services.collector(env)
    try:
        cmd = ["collector.import_cli", str(path), "--url", svc.url, "--token", token, "--batch", "25"]
        first = piped(cmd, env)
        assert first.returncode == 0, first.stderr
        lines = json_lines(first.stderr, "import")
        assert lines[-1]["done"] == lines[-1]["total"] == len(events)
        assert lines[-1]["accepted"] == len(events)
        assert json.loads(first.stdout) == {"accepted": len(events), "duplicates": 0, "rejected": 0}
        code, out, tty = on_a_terminal(cmd, env)
        assert code == 0 and json.loads(out)["duplicates"] == len(events)
        assert "import" in tty and "100%" in tty and "|" in tty and '{"progress"' not in tty

        # dead letters to replay: events over a size limit that is raised afterwards
        small = {**env, "ANALYTICS_MAX_EVENT_SIZE": "300"}
        svc.stop()
        svc = services.collector(small)
        fresh = generate(villages=2, sessions=3, start_ms=now - 3_600_000, end_ms=now - 60_000, seed=4)
        resp = httpx.post(svc.url + ROUTE, headers=HEADERS, json=batch(fresh))
        assert resp.status_code == 202 and resp.json()["rejected"], resp.text
        rejected = len(resp.json()["rejected"])
    finally:
        svc.stop()
    dry = piped(["collector.deadletter_cli", "replay", "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    assert json_lines(dry.stderr, "replay")[-1]["done"] == rejected
    code, out, tty = on_a_terminal(["collector.deadletter_cli", "replay", "--dry-run"], env)
    assert code == 0 and json.loads(out)["replayed"] == rejected and "replay" in tty and "100%" in tty

    first_day = time.strftime("%Y-%m-%d", time.gmtime((now - 20 * DAY) / 1000))
    today = time.strftime("%Y-%m-%d", time.gmtime(now / 1000))
    entries = sum(r.xlen(keyspace.stream(i)) for i in range(settings.stream_shards))
    back = piped(["aggregator.backfill", "--start", first_day, "--end", today, "--force"], env)
    assert back.returncode == 0, back.stderr
    assert json_lines(back.stderr, "backfill")[-1]["done"] == entries
    assert back.stdout.startswith(f"rebuilt {first_day}..{today}: ")
    code, out, tty = on_a_terminal(["aggregator.backfill", "--start", first_day, "--end", today, "--force"], env)
    assert code == 0 and "backfill" in tty and "100%" in tty
