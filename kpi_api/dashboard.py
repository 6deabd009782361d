"""The internal dashboard: our own page and scripts from ``static/``, the chart library from npm.

The chart library is never copied into the repo: ``npm ci`` installs it (pinned by
``package-lock.json``) and the server resolves its built file under ``node_modules`` at startup.
The page itself holds no data; it calls the KPI API with the staff token the user pastes (kept in
the browser's localStorage, or handed over once in the URL fragment ``#token=``, which browsers
never send to the server).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from infra.service import error

STATIC = Path(__file__).parent / "static"
VENDOR = {
    "chart.umd.min.js": ("chart.js", "dist/chart.umd.min.js"),
    "chartjs-chart-matrix.min.js": ("chartjs-chart-matrix", "dist/chartjs-chart-matrix.min.js"),
}
OWN = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "favicon.svg": "image/svg+xml",
       "privacy.js": "text/javascript", "seed000_panels.js": "text/javascript"}


def node_modules(configured: str) -> Path:
    """``DASHBOARD_ASSETS`` if set, else the ``node_modules`` beside the package (``npm ci`` there)."""
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "node_modules"


def resolve_vendor(configured: str) -> dict[str, Path]:
    base = node_modules(configured)
    return {name: base / pkg / rel for name, (pkg, rel) in VENDOR.items() if (base / pkg / rel).is_file()}


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "dashboard.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


async def privacy_page(request: Request) -> Response:
    """The privacy report page (it reads ``GET /internal/analytics/privacy-report``)."""
    return FileResponse(STATIC / "privacy.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name in OWN:
        return FileResponse(STATIC / name, media_type=OWN[name], headers={"Cache-Control": "no-cache"})
    path = request.app.state.vendor.get(name)
    if path is None:
        if name in VENDOR:
            return error(503, "assets_missing",
                         f"{name} is not installed: run `npm ci` in the repository root")
        return error(404, "not_found", f"no asset {name!r}")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


# a staff feature behind a switch: with DASHBOARD_ENABLED=false these routes are not served (404)
ROUTES = (Route("/dashboard", page), Route("/dashboard/privacy", privacy_page),
          Route("/dashboard/assets/{name}", asset))
