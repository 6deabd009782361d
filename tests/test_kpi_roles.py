"""Every KPI API route's role, as the README's route table documents it, against the running service.

The table in README.md ("KPI API and dashboard") is the contract: this test reads it, checks that it
lists exactly the routes the application serves, and calls each one with no token, a staff token and
an admin token.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from kpi_api.app import create_app
from infra import tokens
from schemas.settings import Settings
from tests import services
from tests.conftest import JWT_SECRET

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| (`[A-Z]+ /[^|]*`(?:, `[A-Z]+ /[^|]*`)*) \| (public|staff|admin) \|")
# a value for each path parameter, and a query that each route accepts
PARAMS = {"{kpi}": "daily-active-villages", "{name}": "dashboard.js"}
QUERY = "start=2026-01-01&end=2026-01-02&date=2026-01-01&date_from=2026-01-01&date_to=2026-01-01&metric=events"


def documented() -> list[tuple[str, str, str]]:
    """(method, path, role) for every row of the README's route table."""
    text = README.read_text()
    section = text[text.index("## KPI API and dashboard"):]
    section = section[: section.index("\n## ", 3)]
    rows = []
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            for route in re.findall(r"`([A-Z]+) (/[^`]*)`", m.group(1)):
                rows.append((route[0], route[1], m.group(2)))
    return rows


def served() -> set[tuple[str, str]]:
    app = create_app(Settings(jwt_secret_key=JWT_SECRET))
    out = set()
    for route in app.routes:
        for method in getattr(route, "methods", None) or ["GET"]:
            if method != "HEAD":
                out.add((method, route.path))
    return out


def test_the_readme_table_lists_every_route_once() -> None:
    rows = documented()
    pairs = [(m, p) for m, p, _ in rows]
    assert len(pairs) == len(set(pairs)), "a route is listed twice"
    assert set(pairs) == served()


@pytest.fixture
def api(env: dict[str, str], r):  # type: ignore[no-untyped-def]
    svc = services.kpi_api(env)
    yield svc
    svc.stop()


def test_each_route_answers_each_role_as_documented(api: services.Service) -> None:
    bearer = {role: {"Authorization": f"Bearer {tokens.issue(JWT_SECRET, role)}"}
              for role in ("staff", "admin")}
    wrong = []
    with httpx.Client(base_url=api.url, timeout=30) as c:
        for method, path, role in documented():
            url = path
            for name, value in PARAMS.items():
                url = url.replace(name, value)
            url += "?" + QUERY
            body = b"{}" if method == "PATCH" else None
            got = {
                who: c.request(method, url, headers=bearer.get(who, {}), content=body).status_code
                for who in ("anonymous", "staff", "admin")
            }
            allowed = {"public": {"anonymous", "staff", "admin"}, "staff": {"staff", "admin"},
                       "admin": {"admin"}}[role]
            for who, status in got.items():
                if who in allowed:
                    ok = status not in (401, 403) and status < 500
                else:
                    ok = status == (401 if who == "anonymous" else 403)
                if not ok:
                    wrong.append((method, path, role, who, status))
    assert wrong == []
