"""Workers joining and leaving share the shards without losing or repeating work.

Every worker reads every shard through the one consumer group, so there is nothing to reassign:
a new worker gets entries from its first read, a stopped one has acked its batch, a killed one's
pending entries are claimed by the others after ``CLAIM_IDLE_MS``.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import redis

from schemas.days import day_of_ms
from schemas.settings import Settings
from tests.services import aggregator, free_port, wait_drained
from tests.streamfeed import append, count, dead_letters, now_ms, pending_of, stat, stored
from tests.workerprocs import scrape, try_scrape, wait_for

PROCESSED = "analytics_aggregator_entries_processed_total"


def test_workers_coming_and_going_share_the_work_exactly_once(
    r: redis.Redis, redis_url: str, env: dict[str, str], settings: Settings, rng: random.Random
) -> None:
    env = {**env, "CLAIM_IDLE_MS": "1000", "READ_COUNT": "5", "BLOCK_MS": "100"}
    ts = now_ms() - 3_600_000
    sent = {"events": 0}
    done = threading.Event()
    seed = rng.randrange(1 << 30)

    def feeder() -> None:
        frng = random.Random(seed)
        client = redis.Redis.from_url(redis_url)
        while not done.is_set():
            for _ in range(10):
                n = frng.randint(1, 30)
                append(client, settings, [stored("command_executed", f"v{frng.randrange(400)}", ts) for _ in range(n)])
                sent["events"] += n
            time.sleep(0.02)
        client.close()

    ports = {name: free_port() for name in "abc"}
    workers = {"a": aggregator(env, "a", "--metrics-port", str(ports["a"]))}
    thread = threading.Thread(target=feeder)
    thread.start()
    try:
        wait_for(lambda: try_scrape(ports["a"]) is not None, what="a serving metrics")
        time.sleep(1.0)
        for name in "bc":  # two more join while traffic flows
            workers[name] = aggregator(env, name, "--metrics-port", str(ports[name]))
        wait_for(lambda: all(try_scrape(ports[n]) for n in "bc"), what="b and c serving metrics")
        before = {n: scrape(ports[n]).get(PROCESSED, 0.0) for n in "abc"}
        time.sleep(3.0)
        during = {n: scrape(ports[n]).get(PROCESSED, 0.0) - before[n] for n in "abc"}
        # all three took a fair part of the traffic while they ran side by side
        assert all(during[n] >= 0.1 * sum(during.values()) for n in "abc"), during
        assert workers["b"].stop(signal.SIGTERM) == 0  # leaves gracefully
        assert pending_of(r, settings, "b") == 0
        workers["c"].stop(signal.SIGKILL)  # leaves abruptly, holding whatever it held
        a_alone = scrape(ports["a"]).get(PROCESSED, 0.0)
        time.sleep(2.0)
    finally:
        done.set()
        thread.join()
    wait_drained(r, settings)
    assert scrape(ports["a"]).get(PROCESSED, 0.0) > a_alone  # a carried on alone
    assert pending_of(r, settings, "c") == 0  # c's leftovers were claimed
    assert count(r, settings, "command_executed", day_of_ms(ts)) == sent["events"]
    assert stat(r, settings, "applied") == sent["events"]
    assert dead_letters(r, settings) == []
    assert workers["a"].stop(signal.SIGTERM) == 0
