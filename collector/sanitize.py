"""Seed 004's sanitisation: strings cut to 1,000 characters, arrays to 100 items, nulls dropped.

Applied recursively to an event before it is checked against its catalog entry. Depth is capped
too, so a hostile event cannot make the collector recurse without bound.
"""

from __future__ import annotations

MAX_STRING = 1000
MAX_ITEMS = 100
MAX_DEPTH = 32


class TooDeep(ValueError):
    pass


def sanitize(value: object, depth: int = 0) -> object:
    if depth > MAX_DEPTH:
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return value[:MAX_STRING]
    if isinstance(value, dict):
        return {
            k: sanitize(v, depth + 1) for k, v in value.items() if v is not None
        }
    if isinstance(value, list):
        kept = [v for v in value if v is not None][:MAX_ITEMS]  # nulls go first, then the cut
        return [sanitize(v, depth + 1) for v in kept]
    return value
