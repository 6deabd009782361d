"""Minimum aggregation threshold (seed 003): no breakdown cell may single out fewer than k villages.

A cell is suppressed (``"value": null, "suppressed": true``) when the number of villages behind it
is known to be between 1 and k - 1. Where a cell's own unique count is not kept, the caller passes
an upper bound (the day's active villages), which can only suppress less than an exact count would.
Day totals of the seed-003 KPI routes are not breakdowns and keep their numeric contract.
"""

from __future__ import annotations

from typing import Any


def suppress(rows: list[dict[str, Any]], villages: list[int], k: int) -> list[dict[str, Any]]:
    if k <= 1:
        return rows
    out = []
    for row, n in zip(rows, villages):
        if 0 < n < k:
            row = {**row, "value": None, "suppressed": True}
        out.append(row)
    return out
