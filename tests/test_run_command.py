"""The README's run command: everything comes up on the embedded server and serves simulator KPIs."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_run_command_serves_kpis_from_the_simulator_within_a_minute() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "JWT_SECRET_KEY", "ANALYTICS_WRITE_KEYS")}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.dev", "--ephemeral", "--port", str(port), "--seconds", "90"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    started = time.monotonic()
    token = kpi_url = None
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if m := re.match(r"KPI API\s+(http://\S+?)/internal", line):
                kpi_url = m.group(1)
            if m := re.match(r"token\s+(\S+)", line):
                token = m.group(1)
                break
        assert token and kpi_url, "".join(lines[-30:])
        today = datetime.now(timezone.utc).date()
        value, attempt = 0, 0
        while time.monotonic() - started < 60 and not value:
            # each poll asks a range not asked before: an early empty answer is cached for 60 s
            attempt += 1
            start = today - timedelta(days=2 + attempt)
            resp = httpx.get(
                f"{kpi_url}/internal/analytics/kpis/dialogue-opens?start={start}&end={today}",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert resp.status_code == 200, resp.text
            value = sum(row["value"] for row in resp.json())
            time.sleep(1)
        assert value > 0, "no KPI from the simulator within a minute"
    finally:
        proc.terminate()  # the launcher stops honcho, its services and the embedded server
        try:
            proc.communicate(timeout=40)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its own group
