"""The ops ``apply.lua`` executes, as the worker and the backfill accumulate them.

``Effects`` holds one call's KEYS (every key an op names, by 1-based index), its flat op list and
its binary values; ``emit_counters`` and ``lua_int`` encode counter increments. The op table
itself is documented at the top of each branch of ``apply.lua`` and in ``tests/test_apply_ops.py``.
Shared by ``aggregator.effects`` (base aggregates) and ``aggregator.declared`` (declared KPIs),
which therefore do not import each other.
"""

from __future__ import annotations

from typing import Any

from schemas import keyspace

EXACT = 1 << 53  # integers a Lua number (a double) holds exactly


class Effects:
    def __init__(self, shard: int) -> None:
        self.shard = shard
        self.keys: list[str] = [keyspace.stream(shard), keyspace.shard_stats(shard)]
        self._index: dict[str, int] = {}
        self.ops: list[str | int] = []
        self.blobs: list[bytes] = []  # binary values (msgpack in the script has no bin type): ARGV[8..]
        self.applied = 0
        self.late = 0

    def key(self, name: str) -> int:
        idx = self._index.get(name)
        if idx is None:
            self.keys.append(name)
            idx = self._index[name] = len(self.keys)  # Lua is 1-based
        return idx


COUNTER_CHUNK = 500  # fields per H op, well under Lua's unpack limit


def emit_counters(ops: list[Any], key: int, fields: list[tuple[str, int]]) -> None:
    """H ops: counters of one hash incremented by one HMGET and one HSET per chunk of fields.

    For counters that stay far below 2**53 (event counts, durations in ms): the script adds in
    Lua numbers. One HINCRBY per field cost ~10 us each on a hash small enough to be a listpack.
    """
    for start in range(0, len(fields), COUNTER_CHUNK):
        part = fields[start : start + COUNTER_CHUNK]
        ops += ["H", key, len(part)]
        for field, by in part:
            ops += (field, by)


def lua_int(n: int) -> int | str:
    """An increment as the ops carry it: a number when a double holds it exactly, else its text."""
    return n if -EXACT < n < EXACT else str(n)
