"""``--workers N``: run N worker processes (consumers ``<name>-0`` .. ``<name>-<N-1>``) and keep
them running.

A child that crashes or is killed is restarted under the same name, so it first finishes its own
pending entries. A child that exits 0 (a ``--burst`` drain, or told to stop) stays down. The first
SIGTERM/SIGINT is passed on to every child (each finishes its batch and exits 0); a second one is
passed on too, which makes the children exit at once, and the supervisor exits with them.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from typing import Any

log = logging.getLogger("aggregator.supervisor")
RESTART_DELAY_MAX = 10.0


class Supervisor:
    def __init__(self, n: int, base_name: str, burst: bool, metrics_port: int) -> None:
        self.n = n
        self.base_name = base_name
        self.burst = burst
        self.metrics_port = metrics_port
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.started: dict[int, float] = {}
        self.delay: dict[int, float] = {}
        self.codes: dict[int, int] = {}
        self.signals = 0

    def command(self, i: int) -> list[str]:
        cmd = [sys.executable, "-m", "aggregator.cli", "--name", f"{self.base_name}-{i}"]
        if self.burst:
            cmd.append("--burst")
        if self.metrics_port:
            cmd += ["--metrics-port", str(self.metrics_port + i)]
        return cmd

    def spawn(self, i: int) -> None:
        # a session of its own: a terminal's Ctrl-C reaches the children only through us, once
        self.children[i] = subprocess.Popen(self.command(i), start_new_session=True)
        self.started[i] = time.monotonic()
        log.info("started worker %s-%d (pid %d)", self.base_name, i, self.children[i].pid)

    def forward(self, signum: int, frame: Any) -> None:
        self.signals += 1
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        if self.signals > 1:
            log.warning("second signal: children told to exit now")

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.forward)
        signal.signal(signal.SIGINT, self.forward)
        for i in range(self.n):
            self.spawn(i)
        restart_at: dict[int, float] = {}
        while True:
            for i, proc in list(self.children.items()):
                code = proc.poll()
                if code is None:
                    continue
                del self.children[i]
                if self.signals or code == 0:
                    self.codes[i] = code
                    continue
                ran = time.monotonic() - self.started[i]
                # back off if it keeps dying young; reset after a good run
                delay = 0.5 if ran > 30 else min(self.delay.get(i, 0.25) * 2, RESTART_DELAY_MAX)
                self.delay[i] = delay
                log.warning("worker %s-%d exited with %s; restarting in %.1fs", self.base_name, i, code, delay)
                restart_at[i] = time.monotonic() + delay
            for i, at in list(restart_at.items()):
                if self.signals:
                    del restart_at[i]
                elif time.monotonic() >= at:
                    del restart_at[i]
                    self.spawn(i)
            if not self.children and not restart_at:
                break
            time.sleep(0.1)
        failed = {i: c for i, c in self.codes.items() if c != 0}
        if failed:
            log.warning("workers exited with errors: %s", failed)
        return 0 if not failed and self.signals <= 1 else 1
