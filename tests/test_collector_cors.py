"""CORS on the collector for browser clients on other origins, and the client-info reducers."""

from __future__ import annotations

import json

from collector.client_info import mask_ip, parse_user_agent
from tests.test_collector_support import HEADERS, ROUTE, batch, client, event, stored

ORIGIN = "http://app.example.test:8080"


def test_preflight_is_answered_for_the_sdk_headers_of_an_allowed_origin(env, r):
    with client(env, ANALYTICS_ALLOWED_ORIGINS=f"http://other.test,{ORIGIN}") as c:
        resp = c.options(ROUTE, headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-write-key",
        })
        refused = c.options(ROUTE, headers={
            "Origin": "http://evil.test", "Access-Control-Request-Method": "POST",
        })
    assert resp.status_code == 200, resp.text
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    allowed = resp.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "x-write-key"):
        assert header in allowed
    assert "access-control-allow-credentials" not in resp.headers
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_cross_origin_post_is_stored_and_exposes_the_server_clock(env, r, settings, rng):
    with client(env, ANALYTICS_ALLOWED_ORIGINS="*") as c:
        resp = c.post(ROUTE, headers={**HEADERS, "Origin": ORIGIN},
                      content=json.dumps(batch([event(rng)])))
    assert resp.status_code == 202 and resp.json()["accepted"] == 1
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "x-server-time" in resp.headers["access-control-expose-headers"].lower()
    assert len(stored(r, settings)) == 1


def test_without_allowed_origins_no_cors_headers_are_sent(env, r, rng):
    with client(env) as c:
        resp = c.post(ROUTE, headers={**HEADERS, "Origin": ORIGIN},
                      content=json.dumps(batch([event(rng)])))
    assert resp.status_code == 202
    assert "access-control-allow-origin" not in resp.headers


def test_ip_is_masked_and_user_agent_reduced_to_families():
    assert mask_ip("203.0.113.77") == "203.0.113.0"
    assert mask_ip("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff") == "2001:db8:aaaa::"
    assert mask_ip("::ffff:198.51.100.9") == "198.51.100.0"
    assert mask_ip("not an ip") is None and mask_ip(None) is None
    iphone = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
    linux = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/120.0 Safari/537.36")
    assert parse_user_agent(iphone) == {"browser": "Mobile Safari", "os": "iOS",
                                        "device_type": "mobile"}
    assert parse_user_agent(linux) == {"browser": "Chrome", "os": "Linux", "device_type": "desktop"}
    assert parse_user_agent("Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X)")["device_type"] == "tablet"
    assert parse_user_agent("Googlebot/2.1 (+http://www.google.com/bot.html)")["device_type"] == "bot"
