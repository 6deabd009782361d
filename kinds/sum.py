"""The ``sum`` kind: a numeric payload field summed exactly as integers at the KPI's scale.

A sum KPI's hash (``keyspace.kpi``) holds ``sum`` (the scaled total, any size: HINCRBY) and ``n``
(the events summed); encoded and parsed here only.
"""

from __future__ import annotations

from collections.abc import Mapping

SUM = "sum"
N = "n"


def value(fields: Mapping[str, int], scale: int) -> int | float:
    """The day's (or range's) total in the field's own unit."""
    total = fields.get(SUM, 0)
    return total if scale == 1 else total / scale
