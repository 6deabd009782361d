"""``POST /internal/analytics/import``: the admin path for history older than the late window.

Same body and answers as ``POST /api/analytics/events``, but only for a bearer JWT with role
``admin`` (write keys ship inside clients and never open it). Its events are marked
``historical``: the workers apply them whatever their age, where an ordinary event older than
``LATE_WINDOW_HOURS`` goes to the late stream. Their idempotency markers last the retention
period, so re-running an import answers its events as duplicates instead of counting them twice.
As PostHog's historical-migration mode, it is meant for a one-off load, not for live traffic.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from collector.auth import admin_only
from collector.ingest import admit, receive


async def import_history(request: Request) -> Response:
    refused = admin_only(request, request.app.state.settings) or await admit(request)
    return refused if refused is not None else await receive(request, historical=True)
