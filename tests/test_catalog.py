"""The event catalog: JSON Schema files and msgspec structs must not drift apart."""

from __future__ import annotations

import copy
import json
import random
import time

import jsonschema
import msgspec
import pytest

from schemas.catalog import CATALOG, schema_id
from schemas.export import EVENTS_DIR, rendered
from scripts.simulate import generate


def test_checked_in_schemas_match_the_structs() -> None:
    for path, text in rendered().items():
        assert path.exists(), f"{path.name} missing: run python -m schemas.export"
        assert path.read_text() == text, f"{path.name} drifted from its struct: run python -m schemas.export"
    on_disk = {p.name for p in EVENTS_DIR.glob("*.json")}
    assert on_disk == {f"{schema_id(n, v)}.json" for n, v in CATALOG}


def _mutations(ev: dict) -> list[dict]:
    out = []
    for field in ("event_id", "ts_utc", "anon_village_id", "app_version", "platform"):
        gone = copy.deepcopy(ev)
        del gone[field]
        out.append(gone)
        wrong = copy.deepcopy(ev)
        wrong[field] = 12345
        out.append(wrong)
    for bad in ({"ts_utc": "2025-09-14 10:00"}, {"event_id": "not-a-uuid"}, {"platform": "Free Text!"},
                {"event_version": 0}, {"anon_village_id": ""}):
        out.append({**copy.deepcopy(ev), **bad})
    if "payload" in ev and ev["payload"]:
        free_text = copy.deepcopy(ev)
        key = next(iter(free_text["payload"]))
        free_text["payload"][key] = "hello, this is free text"
        out.append(free_text)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_structs_and_json_schema_agree_on_valid_and_invalid_events(seed: int) -> None:
    schemas = {
        key: json.loads((EVENTS_DIR / f"{schema_id(*key)}.json").read_text()) for key in CATALOG
    }
    now = int(time.time() * 1000)
    events = generate(5, 20, now - 3_600_000 * 10, now - 3_600_000, seed)
    rng = random.Random(seed)
    checked = 0
    for ev in rng.sample(events, 40):
        key = (ev["event_name"], ev["event_version"])
        for candidate, should_pass in [(ev, True)] + [(m, False) for m in _mutations(ev)]:
            raw = msgspec.json.encode(candidate)
            try:
                msgspec.json.decode(raw, type=CATALOG[key])
                struct_ok = True
            except msgspec.ValidationError:
                struct_ok = False
            validator = jsonschema.Draft202012Validator(
                schemas[key], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
            )
            schema_ok = validator.is_valid(candidate)
            assert struct_ok == schema_ok == should_pass, (candidate, struct_ok, schema_ok)
            checked += 1
    assert checked > 400
