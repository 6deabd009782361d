"""The total/new actor cards in Chromium: seed 004's users and seed 003's villages, week over week.

Actors go through the real worker on known days; the cards must show the exact totals (small sets)
of the range's last week and the change against the week before, as the summary route says.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest
import redis

from aggregator.worker import Worker
from schemas.days import DAY_MS, day_start_ms
from schemas.settings import Settings
from tests.streamfeed import append, stored
from tests.test_dashboard import dashboard_page, wait_state

CARDS = {"seed003": ("total-villages", "new-villages", "village_active", "villages"),
         "seed004": ("total-users", "new-users", "page_view", "users")}


def _activity(rng: random.Random, today: date) -> dict[date, set[str]]:
    """14 days to today: a few new actors a day (more in the last week), some seen before come back."""
    seen: list[str] = []
    out: dict[date, set[str]] = {}
    for i in range(14):
        d = today - timedelta(days=13 - i)
        new = [f"a{i}-{j}" for j in range(rng.randrange(3, 8) + (6 if i >= 7 else 0))]
        out[d] = set(new) | {a for a in seen if rng.random() < 0.3}
        seen += new
    return out


def _seen(days: dict[date, set[str]], upto: date, since: date | None = None) -> set[str]:
    return set().union(*(a for d, a in days.items() if (since is None or d >= since) and d <= upto))


@pytest.mark.parametrize("profile", sorted(CARDS))
def test_total_and_new_cards_week_over_week(
    profile: str, env: dict[str, str], r: redis.Redis, rng: random.Random
) -> None:
    total_kpi, new_kpi, event, unit = CARDS[profile]
    env = {**env, "ANALYTICS_PROFILE": profile}
    settings = Settings.from_env(env)
    today = datetime.now(timezone.utc).date()
    days = _activity(rng, today)
    for d, actors in days.items():
        append(r, settings, [stored(event, a, day_start_ms(d) + rng.randrange(DAY_MS // 2)) for a in actors])
    Worker(r, settings, consumer="cards").run(burst=True)
    week_ago = today - timedelta(days=7)
    total_now, total_before = len(_seen(days, today)), len(_seen(days, week_ago))
    new_now = total_now - total_before
    new_before = total_before - len(_seen(days, week_ago - timedelta(days=7)))
    with dashboard_page(env) as (page, errors, _url):
        status = wait_state(page, "ready|empty|error")
        assert status.startswith("ready"), status
        cards = {c["kpi"]: c for c in page.eval_on_selector_all("#totals .card", """cs => cs.map(c => ({
            kpi: c.dataset.kpi, label: c.querySelector('.label').textContent,
            value: c.querySelector('.value').textContent, delta: c.querySelector('.delta').textContent}))""")}
        assert errors == []
    for name, now, before, label in ((total_kpi, total_now, total_before, f"Total {unit}"),
                                     (new_kpi, new_now, new_before, f"New {unit}")):
        card = cards[name]
        shown = int(card["value"].replace(",", ""))
        print(profile, name, card, "exact", now, before)
        assert card["label"].startswith(label) and today.isoformat() in card["label"], card
        assert abs(shown - now) <= 2, (card, now)  # HLL unions of a few dozen: within a couple
        pct = float(card["delta"].split("%")[0])
        assert abs(pct - 100 * (now - before) / before) <= 5, (card, now, before)
        prev_start = (today - timedelta(days=13)).isoformat()
        assert f"vs {prev_start}–{week_ago.isoformat()}" in card["delta"], card
