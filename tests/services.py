"""Start the real services as subprocesses on free ports (the way the Procfile runs them)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import IO

import httpx
import redis

from aggregator.worker import pending_total
from schemas.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    def __init__(
        self, name: str, args: list[str], env: Mapping[str, str], port: int | None = None,
        stderr: IO[bytes] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        full_env = {**os.environ, **env}
        if port is not None:
            full_env["PORT"] = str(port)
        self.proc = subprocess.Popen([sys.executable, "-m", *args], env=full_env, stderr=stderr)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout} s")

    def stop(self, sig: int | None = None) -> int:
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def collector(env: Mapping[str, str], stderr: IO[bytes] | None = None) -> Service:
    """The collector; ``stderr``, a file its log goes to (else the test's own stderr)."""
    svc = Service("collector", ["collector.cli"], env, free_port(), stderr)
    svc.wait_ready()
    return svc


def kpi_api(env: Mapping[str, str], stderr: IO[bytes] | None = None) -> Service:
    svc = Service("kpi_api", ["kpi_api.cli"], env, free_port(), stderr)
    svc.wait_ready()
    return svc


def aggregator(env: Mapping[str, str], name: str, *extra: str) -> Service:
    return Service(f"aggregator {name}", ["aggregator.cli", "--name", name, *extra], env)


def wait_drained(client: redis.Redis, settings: Settings, timeout: float = 120.0) -> None:
    """Wait until every shard's group has no undelivered and no pending entries."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pending_total(client, settings) == 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"streams not drained after {timeout} s: {pending_total(client, settings)} left")
