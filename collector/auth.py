"""Who may write: a write key (HTTP Basic username, as Segment does, or ``X-Write-Key``) or a JWT."""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request
from starlette.responses import Response

from infra import tokens
from infra.service import error
from schemas.settings import Settings


def _basic_username(authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


def _known_key(candidate: str, keys: tuple[str, ...]) -> bool:
    ok = False
    for key in keys:  # no early exit: compare against every key in constant time
        ok |= hmac.compare_digest(candidate.encode(), key.encode())
    return ok


def authenticate(
    request: Request, settings: Settings, body_key: str | None = None
) -> tuple[str | None, str | None]:
    """Return ``(subject, None)`` when the request may write, else ``(None, reason)`` for a 401.

    ``body_key`` is a write key the body carries (Segment's ``writeKey``, for clients that cannot
    set headers, such as ``sendBeacon``); a key in the headers wins.

    The subject (``key:<write key>`` or ``jwt:<sub claim>``) is what the rate limit counts; it is
    hashed before it reaches Redis.
    """
    authorization = request.headers.get("authorization", "")
    key = request.headers.get("x-write-key") or _basic_username(authorization) or body_key
    if key:
        if _known_key(key, settings.write_keys):
            return "key:" + key, None
        return None, "unknown write key"
    token = tokens.bearer(authorization)
    if token:
        try:
            claims = tokens.verify(settings.jwt_secret_key, token, roles=None, max_age_s=settings.jwt_max_age_seconds)
        except tokens.TokenError as exc:
            return None, exc.detail
        return "jwt:" + str(claims.get("sub", "")), None
    return None, (
        "missing credentials: send a write key (Basic username or X-Write-Key) or a bearer JWT"
    )


def check_write_access(request: Request, settings: Settings) -> str | None:
    """Return None when the request may write, else the reason it may not (for a 401)."""
    return authenticate(request, settings)[1]


def admin_only(request: Request, settings: Settings) -> Response | None:
    """None when the request carries a valid admin bearer JWT, else the 401/403 to answer.

    Write keys never open an admin route: they ship inside game clients.
    """
    token = tokens.bearer(request.headers.get("authorization"))
    if token is None:
        return error(401, "unauthorized", "bearer JWT with role admin required",
                     {"WWW-Authenticate": "Bearer"})
    try:
        tokens.verify(
            settings.jwt_secret_key, token, roles=("admin",), max_age_s=settings.jwt_max_age_seconds
        )
    except tokens.TokenError as exc:
        return error(exc.status, "unauthorized" if exc.status == 401 else "forbidden", exc.detail)
    return None
