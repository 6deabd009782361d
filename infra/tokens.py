"""Bearer tokens: HS256 JWTs signed with ``JWT_SECRET_KEY``, with a ``role`` claim."""

from __future__ import annotations

import time

import jwt

ROLES = ("staff", "admin")


class TokenError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def issue(secret: str, role: str = "staff", subject: str = "dev", ttl_s: int = 30 * 86400) -> str:
    now = int(time.time())
    return jwt.encode({"sub": subject, "role": role, "iat": now, "exp": now + ttl_s}, secret, "HS256")


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def verify(
    secret: str, token: str, roles: tuple[str, ...] | None = ROLES, max_age_s: int | None = None
) -> dict[str, object]:
    """Decode and check a token; 401 when it is not valid, 403 when its role is not allowed.

    ``roles=None`` accepts any role (clients that only write events). Every token needs ``exp``;
    with ``max_age_s`` (``JWT_MAX_AGE_SECONDS``) a token may live no longer than that: ``exp``
    at most that far after its ``iat`` (or, without ``iat``, after now).
    """
    if not secret:
        raise TokenError(401, "bearer tokens are not accepted: JWT_SECRET_KEY is not set")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.ExpiredSignatureError:
        raise TokenError(401, "invalid token: expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(401, f"invalid token: no {exc.claim!r} claim") from None
    except jwt.PyJWTError:  # the decoder's own words can quote the bytes it choked on
        raise TokenError(401, "invalid token") from None
    if max_age_s is not None:
        start = claims.get("iat")
        start = start if isinstance(start, int | float) else time.time()
        if float(claims["exp"]) - float(start) > max_age_s:  # type: ignore[arg-type]
            raise TokenError(401, f"invalid token: lives longer than JWT_MAX_AGE_SECONDS={max_age_s}, issue one with an earlier exp")
    if roles is not None and claims.get("role") not in roles:
        raise TokenError(403, f"role {claims.get('role')!r} may not use this route")
    return claims
