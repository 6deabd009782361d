"""Helpers for the stock-SDK tests: a proxy that makes the SDKs retry a batch the collector already
stored, plans of what each SDK sends with their ground truth, and the KPIs the API serves."""

from __future__ import annotations

import gzip
import json
import random
import threading
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from infra import tokens
from tests.conftest import JWT_SECRET

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
              "host", "date", "server"}


class RetryProxy:
    """Forwards everything to the collector; the answers to the first ``fail`` POSTs to ``/v1/``
    are replaced by a 503 after the collector stored them (a load balancer that lost the answer),
    so the SDK sends the same batch again. Records every POSTed body, decoded."""

    def __init__(self, upstream: str, fail: int = 1) -> None:
        self.upstream = upstream
        self.fail = fail
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_OPTIONS(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def do_GET(self) -> None:
                self._forward()

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                with httpx.Client(timeout=30) as c:
                    resp = c.request(self.command, proxy.upstream + self.path, content=body, headers=headers)
                status, content = resp.status_code, resp.content
                out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
                if self.command == "POST" and self.path.startswith("/v1/"):
                    with proxy.lock:
                        raw = gzip.decompress(body) if self.headers.get("content-encoding") == "gzip" else body
                        post = {"path": self.path, "status": status, "answered": status,
                                "content_type": self.headers.get("content-type", ""),
                                "body": json.loads(raw)}
                        proxy.posts.append(post)
                        if status == 200 and proxy.fail > 0:
                            post["answered"] = 503
                            proxy.fail -= 1
                            status = 503
                            content = b'{"error":"unavailable","detail":"proxy","code":"unavailable","message":"proxy"}'
                            out = {k: v for k, v in out.items() if k.lower().startswith("access-control")}
                            out["Content-Type"] = "application/json"
                self.send_response(status)
                for k, v in out.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> RetryProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> set[str]:
        """The messageIds of posts the SDK was answered 200 for."""
        with self.lock:
            posts = [post for post in self.posts if post["answered"] == 200]
        return {msg["messageId"] for post in posts for msg in post["body"].get("batch", [post["body"]])}

    def message_ids(self) -> Counter[str]:
        """How many times each messageId was posted (retries included)."""
        out: Counter[str] = Counter()
        for post in self.posts:
            body = post["body"]
            for msg in body.get("batch", [body]):
                out[msg["messageId"]] += 1
        return out


@dataclass
class Plan:
    """What one SDK is told to send, and the truth of it: per UTC day the tracked events by name
    and the distinct actors (a user id and an anonymous id with the same value are two)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    actors: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    email: str = ""
    raw_ids: list[str] = field(default_factory=list)

    @property
    def tracks(self) -> int:
        return sum(1 for m in self.messages if m["type"] == "track")

    @property
    def days(self) -> list[str]:
        return sorted(self.counts)


PROPERTIES = {"dialogue_open": {"dialogue_id": "elder", "mood": "cheerful"},
              "command_executed": {"command": "build", "success": True, "note": "free text here"},
              "village_active": {"kind": "heartbeat"}}


def plan(rng: random.Random, users: int = 6, anonymous: int = 4, tracks: int = 60,
         hours_back: int = 40, user_ids: list[str] | None = None) -> Plan:
    """Tracks spread over the last ``hours_back`` hours (inside the late window, so two UTC days
    at least most of the time), by users and anonymous visitors, plus an identify with an email."""
    tag = uuid.UUID(int=rng.getrandbits(128)).hex[:10]
    p = Plan(email=f"someone.{tag}@example.org")
    people = [("user", f"sdk-user-{tag}-{i}") for i in range(users)]
    people += [("anon", f"sdk-anon-{tag}-{i}") for i in range(anonymous)]
    if user_ids:
        people = [("user", u) for u in user_ids]
    p.raw_ids = [who for _, who in people]
    now = datetime.now(timezone.utc)
    kind, who = people[0]
    p.messages.append({"type": "identify", kind == "user" and "userId" or "anonymousId": who,
                       "traits": {"email": p.email, "name": f"Name {tag}"}})
    for _ in range(tracks):
        kind, who = rng.choice(people)
        name = rng.choice(list(PROPERTIES))
        at = now - timedelta(seconds=rng.randrange(60, hours_back * 3600))
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        p.messages.append({"type": "track", "event": name, "properties": PROPERTIES[name],
                           "userId" if kind == "user" else "anonymousId": who, "timestamp": at.isoformat()})
        day = at.strftime("%Y-%m-%d")
        p.counts[day][name] += 1
        p.actors[day].add((kind, who))
    return p


def kpis(kpi_url: str, days: list[str]) -> dict[str, dict[str, float]]:
    """Per KPI route, the served value per day."""
    token = tokens.issue(JWT_SECRET, role="staff")
    out: dict[str, dict[str, float]] = {}
    with httpx.Client(base_url=kpi_url, headers={"Authorization": f"Bearer {token}"}) as k:
        for name in ("dialogue-opens", "command-executions", "daily-active-villages"):
            resp = k.get(f"/internal/analytics/kpis/{name}?start={days[0]}&end={days[-1]}")
            assert resp.status_code == 200, resp.text
            out[name] = {row["date"]: row["value"] for row in resp.json()}
    return out


def assert_kpis_equal_truth(kpi_url: str, p: Plan) -> None:
    days = p.days
    served = kpis(kpi_url, days)
    for d in days:
        assert served["dialogue-opens"][d] == p.counts[d]["dialogue_open"], d
        assert served["command-executions"][d] == p.counts[d]["command_executed"], d
        assert served["daily-active-villages"][d] == len(p.actors[d]), d  # exact at this size
