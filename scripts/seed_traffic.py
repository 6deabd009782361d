"""Synthetic traffic for every profile (seeds 000-004), for tests, demos and benchmarks.

``profile_events(profile, ...)`` draws events of the profile's catalog with realistic payloads;
sessions (where the catalog has them) come as start/end pairs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from schemas.profiles import Profile
from scripts.simulate import event, session_events

QUERIES = [f"mcp server {w}" for w in ("git", "postgres", "slack", "files", "search", "maps")]
SERVERS = [f"server-{i}" for i in range(12)]
SERVICES = [f"svc-{i}" for i in range(15)]
PAGES = ["/", "/dashboard", "/settings", "/reports/daily", "/users"]
FEATURES = ["export", "bulk_edit", "search", "share", "templates"]
CONTENT = ["post", "page", "form", "image"]
MODELS = ["small", "medium", "large"]

Payload = Callable[[random.Random], dict[str, Any]]
PAYLOADS: dict[str, Payload] = {
    "search_performed": lambda g: {"query": g.choice(QUERIES), "results": g.randint(0, 40)},
    "server_installed": lambda g: {"server_id": g.choice(SERVERS)},
    "page_view": lambda g: {"page": g.choice(PAGES)},
    "button_click": lambda g: {"button_id": g.choice(["save", "cancel", "share"])},
    "error": lambda g: {"code": g.choice(["E400", "E404", "E500"])},
    "error_occurred": lambda g: {"code": g.choice(["E400", "E404", "E500"])},
    "form_submit": lambda g: {"form_id": g.choice(["signup", "profile", "contact"])},
    "video_play": lambda g: {"video_id": f"vid-{g.randrange(20)}", "position_seconds": g.randint(0, 600)},
    "course_complete": lambda g: {"course_id": f"course-{g.randrange(30)}",
                                  "completion_time": g.randint(60, 7200), "score": g.randint(0, 100)},
    "search_query": lambda g: {"query": g.choice(QUERIES), "results": g.randint(0, 40)},
    "booking_status": lambda g: {"booking_id": f"bk-{g.randrange(10**9)}",
                                 "status": g.choice(["confirmed", "cancelled", "done"])},
    "job_apply": lambda g: {"job_id": f"job-{g.randrange(50)}", "worker_id": f"wk-{g.randrange(10**9)}"},
    "emergency_request": lambda g: {"latitude": round(g.uniform(-60, 60), 6),
                                    "longitude": round(g.uniform(-170, 170), 6)},
    "booking_created": lambda g: {"booking_id": f"bk-{g.randrange(10**9)}", "service_id": g.choice(SERVICES)},
    "service_viewed": lambda g: {"service_id": g.choice(SERVICES)},
    "service_search": lambda g: {"query": g.choice(QUERIES), "service_id": g.choice(SERVICES)},
    "feature_use": lambda g: {"feature": g.choice(FEATURES)},
    "content_create": lambda g: {"content_type": g.choice(CONTENT)},
    "ai_request": lambda g: {"model": g.choice(MODELS), "tokens": g.randint(10, 4000),
                             "cost_usd": round(g.uniform(0, 0.2), 6)},
    "village_active": lambda g: {"kind": "heartbeat"},
    "dialogue_open": lambda g: {"dialogue_id": g.choice(["elder", "merchant", "smith"])},
    "command_executed": lambda g: {"command": g.choice(["build", "trade", "harvest"]), "success": True},
}


def profile_events(
    profile: Profile, actors: int, count: int, start_ms: int, end_ms: int, seed: int
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    names = [f"{profile.name}-actor-{i}" for i in range(actors)]
    kinds = sorted(n for n, _ in profile.events if n not in ("session_start", "session_end"))
    has_sessions = ("session_start", 1) in profile.events
    out: list[dict[str, Any]] = []
    while len(out) < count:
        actor = rng.choice(names)
        ts = rng.randint(start_ms, end_ms - 1)
        if has_sessions and rng.random() < 0.15:
            pair = session_events(actor, ts, rng)
            out += [e for e in pair if e["event_name"] in ("session_start", "session_end")]
            continue
        name = rng.choice(kinds)
        out.append(event(name, actor, ts, None, PAYLOADS[name](rng), rng))
    return out
