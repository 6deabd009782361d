"""Who may write: a write key (HTTP Basic username, as Segment does, or ``X-Write-Key``) or a JWT."""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request

from schemas import tokens
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


def check_write_access(request: Request, settings: Settings) -> str | None:
    """Return None when the request may write, else the reason it may not (for a 401)."""
    authorization = request.headers.get("authorization", "")
    key = request.headers.get("x-write-key") or _basic_username(authorization)
    if key:
        if _known_key(key, settings.write_keys):
            return None
        return "unknown write key"
    token = tokens.bearer(authorization)
    if token:
        try:
            tokens.verify(settings.jwt_secret_key, token, roles=None)
            return None
        except tokens.TokenError as exc:
            return exc.detail
    return "missing credentials: send a write key (Basic username or X-Write-Key) or a bearer JWT"
