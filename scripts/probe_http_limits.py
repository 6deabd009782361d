"""How the collector's HTTP server answers our limits (``infra/http_limits.py``), for comparing servers.

    python -m scripts.probe_http_limits [--server uvicorn|granian]

Starts the collector (``bench_common.collector``) with a 1 s header and body deadline and a cap of 5
connections, then sends: a 20 KB header (expect 431), a header that never ends (408), and a sixth
connection while five are open (503). Prints the first bytes of each answer; asserts nothing.
"""

from __future__ import annotations

import argparse
import socket
import time

from scripts import bench_common as bc


def talk(port: int, data: bytes, wait: float = 3.0) -> bytes:
    """Send ``data`` on a new connection; what comes back within ``wait`` seconds (or how it ended)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(wait)
    s.sendall(data)
    out, t0 = b"", time.monotonic()
    try:
        while time.monotonic() - t0 < wait:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (TimeoutError, ConnectionResetError) as exc:
        out += f" <{type(exc).__name__}>".encode()
    s.close()
    return out[:160]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="probe_http_limits", description=__doc__.split("\n")[0])
    p.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn")
    args = p.parse_args(argv)
    with bc.redis_server(None) as url:
        env = bc.bench_env(url, HTTP_HEADER_TIMEOUT_SECONDS="1", HTTP_BODY_TIMEOUT_SECONDS="1",
                           HTTP_MAX_CONNECTIONS="5")
        svc = bc.collector(env, 1, args.server)
        with bc.running(svc):
            port = svc.port or 0
            big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
            print("20 KB header:", talk(port, big))
            print("unfinished header:", talk(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", wait=4))
            held = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
            time.sleep(0.3)
            print("a connection over the cap of 5:", talk(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 2))
            for s in held:
                s.close()


if __name__ == "__main__":
    main()
