"""``apply.lua``'s ops driven directly on the real server, one by one, as the worker emits them.

Each op is documented beside its branch in the script and emitted by ``kinds/ops.py``,
``aggregator/effects.py`` (base aggregates, sessions) and the declared KPIs' kinds (``emit`` of
``kinds/count.py``, ``uniques.py``, ``sum.py``, ``top.py``). Here the ops are hand-built so each one's effect, and the XACK gate, are pinned down.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import redis

from aggregator.worker import OPS_ENCODER
from schemas import keyspace
from schemas.sketch import LOG_GAMMA, bucket

SCRIPT = (Path(__file__).parent.parent / "aggregator" / "apply.lua").read_text()
STREAM, STATS = keyspace.stream(0), keyspace.shard_stats(0)
TTL, SESSION_TTL = 1000, 500
DAY = 86_400_000


def k(name: str) -> str:
    return "analytics:{s0}:" + name


def run(r: redis.Redis, keys: list[str], ops: list[object], group: str = "", ids: str = "0",
        blobs: tuple[bytes, ...] = (), consumer: str = "") -> int:
    script = r.register_script(SCRIPT)
    return script(keys=[STREAM, STATS, *keys],
                  args=[group, ids, TTL, SESSION_TTL, repr(LOG_GAMMA), OPS_ENCODER.encode(ops), consumer, *blobs])


def test_p_h_i_z_e(r: redis.Redis) -> None:
    keys = [k("hll"), k("hash"), k("zset")]
    run(r, keys, ["P", 3, 3, "a", "b", "c", "H", 4, 2, "x", 2, "y", 3, "I", 4, "big", "9007199254740993",
                  "Z", 5, "m", 4, "E", 3, "E", 4])
    run(r, keys, ["P", 3, 2, "a", "d", "H", 4, 1, "x", 5, "Z", 5, "m", 1])
    assert r.pfcount(k("hll")) == 4
    assert r.hgetall(k("hash")) == {b"x": b"7", b"y": b"3", b"big": b"9007199254740993"}
    assert r.zscore(k("zset"), "m") == 5
    assert 0 < r.ttl(k("hll")) <= TTL and 0 < r.ttl(k("hash")) <= TTL and r.ttl(k("zset")) == -1


def test_d_writes_the_duration_sketch_once(r: redis.Redis) -> None:
    run(r, [k("sk")], ["D", 3, 0, "D", 3, 1500, "D", 3, 1500, "D", 3, 60_000])
    h = {f.decode(): int(v) for f, v in r.hgetall(k("sk")).items()}
    assert h == {"n": 4, "sum": 63_000, "z": 1, f"b{bucket(1500)}": 2, f"b{bucket(60_000)}": 1}
    assert 0 < r.ttl(k("sk")) <= TTL
    assert bucket(1500) == math.ceil(math.log(1500) / LOG_GAMMA)  # the script's own formula


def test_l_keeps_late_events_aside_and_counts_them(r: redis.Redis) -> None:
    run(r, [k("late")], ["L", 3, 8, 2], blobs=(b"\x92\x01\x02",))
    [(_, fields)] = r.xrange(k("late"))
    assert fields == {keyspace.ENTRY_COUNT_B: b"2", keyspace.ENTRY_EVENTS_B: b"\x92\x01\x02"}
    assert r.hget(STATS, "late") == b"2"


def _sketch(r: redis.Redis, key: str) -> dict[str, int]:
    return {f.decode(): int(v) for f, v in r.hgetall(k(key)).items()}


@pytest.mark.parametrize("order", ["start-first", "end-first"])
def test_s_and_f_pair_a_session_whichever_comes_first(r: redis.Redis, order: str) -> None:
    day = 20_000
    ts_s, ts_e = day * DAY + 1000, day * DAY + 61_000
    keys = [k("session:x"), k("sk-a"), k("sk-b")]
    start = ["S", 3, ts_s, 4]
    end = ["F", 3, 0, ts_e, day, 4, day - 1, 5]
    for op in ([start, end] if order == "start-first" else [end, start]):
        run(r, keys, op)
    assert _sketch(r, "sk-a") == {"n": 1, "sum": 60_000, f"b{bucket(60_000)}": 1}
    assert r.hget(k("session:x"), "d") == b"1" and 0 < r.ttl(k("session:x")) <= SESSION_TTL
    run(r, keys, end)  # a resent end of a done session changes nothing
    assert _sketch(r, "sk-a")["n"] == 1


def test_f_finds_the_start_under_the_previous_salt(r: redis.Redis) -> None:
    day = 20_000
    keys = [k("session:new"), k("session:old"), k("sk")]
    run(r, keys, ["S", 4, day * DAY, 5])
    run(r, keys, ["F", 3, 4, day * DAY + 5000, day, 5, day - 1, 5])
    assert _sketch(r, "sk") == {"n": 1, "sum": 5000, f"b{bucket(5000)}": 1}


def test_b_is_s_then_f_and_counts_out_of_range_starts(r: redis.Redis) -> None:
    day = 20_000
    keys = [k("session:b"), k("sk"), k("session:far")]
    run(r, keys, ["B", 3, day * DAY, 4, day * DAY + 2000, day, 4, day - 1, 4])
    assert _sketch(r, "sk") == {"n": 1, "sum": 2000, f"b{bucket(2000)}": 1}
    # a start on a day that is neither candidate of the end: counted apart, not in a sketch
    run(r, keys, ["B", 5, (day - 5) * DAY, 4, day * DAY, day, 4, day - 1, 4])
    assert r.hget(STATS, "sessions_out_of_range") == b"1" and _sketch(r, "sk")["n"] == 1


def test_xack_gates_the_ops_and_unknown_ops_fail(r: redis.Redis) -> None:
    r.xgroup_create(STREAM, "g", id="0", mkstream=True)
    eid = r.xadd(STREAM, {keyspace.ENTRY_COUNT: 1}).decode()
    r.xreadgroup("g", "c1", {STREAM: ">"})
    assert run(r, [k("h")], ["H", 3, 1, "x", 1], group="g", ids=eid) == 1
    assert run(r, [k("h")], ["H", 3, 1, "x", 1], group="g", ids=eid) == 0  # already acked: nothing
    assert r.hget(k("h"), "x") == b"1"
    # several ids: all must be pending to the consumer, else nothing happens
    a, b = (r.xadd(STREAM, {keyspace.ENTRY_COUNT: 1}).decode() for _ in range(2))
    r.xreadgroup("g", "c1", {STREAM: ">"})
    assert run(r, [k("h")], ["H", 3, 1, "x", 1], group="g", ids=f"{a} {b}", consumer="c2") == 0
    assert run(r, [k("h")], ["H", 3, 1, "x", 1], group="g", ids=f"{a} {b}", consumer="c1") == 1
    assert r.hget(k("h"), "x") == b"2" and r.xpending(STREAM, "g")["pending"] == 0
    with pytest.raises(redis.ResponseError, match="unknown op"):
        run(r, [], ["Q"])
