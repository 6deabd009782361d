"""What a request says about its client, reduced to what may be stored: a masked IP, a parsed UA.

Seed 002 captures the client's IP address and User-Agent; we keep neither raw. The IP is masked
(IPv4: last octet zeroed; IPv6: last 80 bits zeroed) and the User-Agent is reduced by the maintained
``ua-parser`` rules to browser family, OS family and a device type. Every route that records a
client (seed 002's events route, Segment's ``context.ip``/``context.userAgent``) calls these two.
"""

from __future__ import annotations

import functools
import ipaddress

from starlette.requests import Request
from ua_parser import parse

DEVICE_TYPES = ("desktop", "mobile", "tablet", "bot", "other")
_TABLETS = ("ipad", "tablet", "kindle", "nexus 7", "nexus 9", "nexus 10", "sm-t", "galaxy tab")
_MOBILE_OS = ("ios", "android", "windows phone", "blackberry os", "kaios", "firefox os")
_DESKTOP_OS = ("windows", "mac os x", "macos", "linux", "ubuntu", "chrome os", "fedora", "freebsd")


def mask_ip(raw: str | None) -> str | None:
    """The client IP with its host part zeroed, or None when ``raw`` is not an IP address."""
    if not raw:
        return None
    try:
        ip = ipaddress.ip_address(raw.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 8 if ip.version == 4 else 80
    network = ipaddress.ip_network(f"{ip}/{ip.max_prefixlen - bits}", strict=False)
    return str(network.network_address)


@functools.lru_cache(maxsize=4096)
def parse_user_agent(raw: str | None) -> dict[str, str]:
    """``{"browser", "os", "device_type"}`` families of a User-Agent; never the raw string."""
    if not raw:
        return {"browser": "Other", "os": "Other", "device_type": "other"}
    result = parse(raw[:1024])
    browser = result.user_agent.family if result.user_agent else "Other"
    os_family = result.os.family if result.os else "Other"
    device = result.device.family if result.device else "Other"
    return {"browser": browser, "os": os_family, "device_type": _device_type(device, os_family)}


def _device_type(device: str, os_family: str) -> str:
    d, o = device.lower(), os_family.lower()
    if d == "spider":
        return "bot"
    if any(t in d for t in _TABLETS):
        return "tablet"
    if o in _MOBILE_OS or "phone" in d:
        return "mobile"
    if o in _DESKTOP_OS:
        return "desktop"
    return "other"


def client_info(request: Request) -> dict[str, str]:
    """What an event may keep of its request's client (see ``describe``)."""
    return describe(request.client.host if request.client else None, request.headers.get("user-agent"))


def describe(ip: str | None, user_agent: str | None) -> dict[str, str]:
    """``ip`` (masked; left out when it is not an IP address) and the User-Agent's ``browser``,
    ``os`` and ``device_type``: all a route may record of a client (Segment's ``context.ip`` and
    ``context.userAgent`` too)."""
    out = dict(parse_user_agent(user_agent))
    masked = mask_ip(ip)
    if masked is not None:
        out["ip"] = masked
    return out
