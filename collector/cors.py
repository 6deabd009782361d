"""CORS for browser clients on other origins: the SDKs' preflight and readable response headers.

Origins come from ``ANALYTICS_ALLOWED_ORIGINS`` (comma-separated, ``*`` for any); with none set, no
CORS headers are sent and browsers on other origins are refused, as before. Credentials (cookies)
are never allowed: clients authenticate with a write key, not a session.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from schemas.settings import Settings

# what the SDKs send (Segment's analytics.js, our sdk.js, seed 002's anonymous id header);
# analytics.js adds X-Retry-Count to a retry, whose preflight must pass too
ALLOWED_HEADERS = (
    "Authorization", "Content-Type", "Content-Encoding", "X-Write-Key", "X-Analytics-Opt-Out",
    "X-Client-ANON-ID", "X-Retry-Count",
)
# what a browser client must be able to read: the server's clock (skew correction), back-off
EXPOSED_HEADERS = ("X-Server-Time", "Retry-After")
PREFLIGHT_MAX_AGE = 600


def cors_middleware(settings: Settings) -> list[Middleware]:
    if not settings.allowed_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=list(ALLOWED_HEADERS),
            expose_headers=list(EXPOSED_HEADERS),
            allow_credentials=False,
            max_age=PREFLIGHT_MAX_AGE,
        )
    ]
