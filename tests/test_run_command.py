"""The README's run command: everything comes up on the embedded server and serves simulator KPIs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from infra import tokens
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent


def readme_block(heading: str, env_file: str, env: dict[str, str]) -> str:
    """Run the first ``sh`` block under a README heading in bash; its stdout."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading + "\n"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")].replace(". .run/env", f". {env_file}")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block + "\necho"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_run_command_serves_kpis_from_the_simulator_within_a_minute(tmp_path: Path) -> None:
    """...and hands over what a new user needs: an admin and a staff token signed with a secret kept
    under the run directory, the dashboard's URL with the staff token, and an env file with which
    the operator commands work in another shell."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "JWT_SECRET_KEY", "ANALYTICS_WRITE_KEYS")}
    env["ANALYTICS_RUN_DIR"] = str(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.dev", "--ephemeral", "--port", str(port), "--seconds", "90"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    started = time.monotonic()
    token = kpi_url = staff = dashboard = env_file = None
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if m := re.match(r"KPI API\s+(http://\S+?)/internal", line):
                kpi_url = m.group(1)
            if m := re.match(r"token\s+(\S+)", line):
                token = m.group(1)
            if m := re.match(r"staff\s+(\S+)", line):
                staff = m.group(1)
            if m := re.match(r"dashboard\s+(\S+)", line):
                dashboard = m.group(1)
            if m := re.match(r"env\s+\. (\S+)", line):
                env_file = m.group(1)
                break
        assert token and kpi_url and staff and dashboard and env_file, "".join(lines[-30:])
        assert dashboard == f"{kpi_url}/dashboard#token={staff}"
        secret = (tmp_path / "jwt-secret").read_text().strip()
        assert (tmp_path / "jwt-secret").stat().st_mode & 0o077 == 0  # the owner's only
        assert tokens.verify(secret, token)["role"] == "admin"
        assert tokens.verify(secret, staff)["role"] == "staff"
        # the operator commands, in another shell with only the env file sourced
        shell_env = {k: v for k, v in env.items() if k not in ("VIRTUAL_ENV",)}
        shell_env["PATH"] = "/usr/bin:/bin"
        def operator_check() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["bash", "-c", f". {env_file} && analytics-aggregator --check --workers 2"],
                env=shell_env, capture_output=True, text=True, timeout=60,
            )

        checked = operator_check()
        for _ in range(20):  # the workers' first heartbeats may still be on their way
            if checked.returncode == 0:
                break
            time.sleep(0.5)
            checked = operator_check()
        assert checked.returncode == 0, checked.stderr
        today = datetime.now(timezone.utc).date()
        value, attempt = 0, 0
        while time.monotonic() - started < 60 and not value:
            # each poll asks a range not asked before: an early empty answer is cached for 60 s
            attempt += 1
            start = today - timedelta(days=2 + attempt)
            resp = httpx.get(
                f"{kpi_url}/internal/analytics/kpis/dialogue-opens?start={start}&end={today}",
                headers={"Authorization": f"Bearer {staff if attempt % 2 else token}"},
            )
            assert resp.status_code == 200, resp.text
            value = sum(row["value"] for row in resp.json())
            time.sleep(1)
        assert value > 0, "no KPI from the simulator within a minute"
        # the README's examples, pasted in order into a shell that sourced the env file
        sent = readme_block("## Sending events", env_file, shell_env)
        assert '"accepted":1' in sent or '"duplicates":1' in sent, sent
        read, series = readme_block("## Reading KPIs", env_file, shell_env), []
        while read:  # two curl answers, back to back
            rows, end = json.JSONDecoder().raw_decode(read)
            series.append(rows)
            read = read[end:].strip()
        assert len(series) == 2, series
        assert all(len(rows) == 3 and all(set(r) >= {"date", "value"} for r in rows) for rows in series), series
        assert sum(r["value"] for r in series[0]) > 0
        life = readme_block("## Data lifecycle", env_file, shell_env)
        for expected in ('"user_id":"sim-village-1"', '"subject_hash":', '"requested_by":"ticket-4711"',
                         '"dry_run":true', '"analytics_retention_days":{"value":3', '{"profile":'):
            assert expected in life, (expected, life)
    finally:
        proc.terminate()  # the launcher stops honcho, its services and the embedded server
        try:
            proc.communicate(timeout=40)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its own group
