"""The session-duration sketch (DDSketch): log-spaced buckets, mergeable by adding counts.

The aggregator's Lua script computes bucket indexes with the same ``GAMMA``; readers merge the
per-shard, per-day hashes field-wise and estimate quantiles here. Relative error <= ``ALPHA``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from itertools import accumulate

import msgspec
from collections.abc import Iterable, Mapping

ALPHA = 0.005
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LOG_GAMMA = math.log(GAMMA)


def bucket(value_ms: float) -> int:
    return math.ceil(math.log(value_ms) / LOG_GAMMA)


def representative(index: int) -> float:
    return 2 * GAMMA**index / (GAMMA + 1)


class Sketch:
    """Merged view of one or more sketch hashes (``n``, ``sum``, ``z``, ``b<i>``)."""

    def __init__(self) -> None:
        self.n = 0
        self.sum_ms = 0
        self.zero = 0
        self.buckets: dict[int, int] = {}

    def merge(self, fields: Mapping[bytes | str, bytes | str | int]) -> None:
        for raw_key, raw_val in fields.items():
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            val = int(raw_val)
            if key == "n":
                self.n += val
            elif key == "sum":
                self.sum_ms += val
            elif key == "z":
                self.zero += val
            elif key.startswith("b"):
                idx = int(key[1:])
                self.buckets[idx] = self.buckets.get(idx, 0) + val

    def absorb(self, other: Sketch) -> None:
        """Merge another merged view into this one (e.g. the days of a range)."""
        self.n += other.n
        self.sum_ms += other.sum_ms
        self.zero += other.zero
        for i, c in other.buckets.items():
            self.buckets[i] = self.buckets.get(i, 0) + c

    def add(self, value_ms: int) -> None:
        """Pure-Python insert, for ground truth in tests and benchmarks."""
        self.n += 1
        self.sum_ms += value_ms
        if value_ms <= 0:
            self.zero += 1
        else:
            i = bucket(value_ms)
            self.buckets[i] = self.buckets.get(i, 0) + 1

    def fields(self) -> dict[str, int]:
        """The hash fields of this sketch, as ``apply.lua`` writes them (``n``, ``sum``, ``z``, ``b<i>``)."""
        out = {"n": self.n, "sum": self.sum_ms}
        if self.zero:
            out["z"] = self.zero
        out.update((f"b{i}", c) for i, c in self.buckets.items())
        return out

    def encode(self) -> bytes:
        """Compact form of a merged sketch: msgpack ``[n, sum, zero, lowest index, counts...]``."""
        if not self.buckets:
            return _ENCODER.encode([self.n, self.sum_ms, self.zero, 0])
        lo, hi = min(self.buckets), max(self.buckets)
        return _ENCODER.encode([self.n, self.sum_ms, self.zero, lo,
                                *(self.buckets.get(i, 0) for i in range(lo, hi + 1))])

    def absorb_encoded(self, blob: bytes) -> None:
        """Merge a sketch written by ``encode``."""
        n, sum_ms, zero, lo, *counts = _DECODER.decode(blob)
        self.n += n
        self.sum_ms += sum_ms
        self.zero += zero
        b = self.buckets
        if not b:  # the common case (one day's rollup): built in one pass, in index order
            self.buckets = {i: c for i, c in zip(range(lo, lo + len(counts)), counts) if c}
            return
        for i, c in enumerate(counts, lo):
            if c:
                b[i] = b.get(i, 0) + c

    def average_ms(self) -> float:
        return self.sum_ms / self.n if self.n else 0.0

    def quantile_ms(self, q: float) -> float:
        if self.n == 0:
            return 0.0
        rank = q * (self.n - 1)
        if rank < self.zero:
            return 0.0
        order = sorted(self.buckets)
        if not order:
            return 0.0
        # the first bucket whose running total (after the zeros) exceeds the rank
        seen = list(accumulate((self.buckets[i] for i in order), initial=self.zero))[1:]
        at = bisect_right(seen, rank)
        return representative(order[at] if at < len(order) else order[-1])


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[int])


def exact_quantile(values: Iterable[float], q: float) -> float:
    """Lower-rank quantile with the same rank rule as ``Sketch.quantile_ms``."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[int(q * (len(ordered) - 1))]
