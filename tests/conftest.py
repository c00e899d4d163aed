"""Fixtures: a real Redis server started by the suite on a free port (never the operator's)."""
from __future__ import annotations

import pytest
import redis

from engine import EmbeddedRedis, Engine, resolve_redis
from engine.scripts import load_all


@pytest.fixture(scope="session")
def redis_server():
    """One ``redis-server`` (or the embedded Valkey) for the whole run, stopped by its PID at the end."""
    server = EmbeddedRedis()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server) -> str:
    with redis_server.client() as client:
        client.flushall()
        client.script_flush()
    return redis_server.url


@pytest.fixture
def r(redis_url) -> redis.Redis:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def engine(redis_url) -> Engine:
    eng = Engine(resolve_redis(redis_url))
    load_all(eng.client)
    yield eng
    eng.close()


@pytest.fixture
def own_redis(tmp_path):
    """A private server for tests that kill, pause or restart Redis (AOF on, so a restart keeps data)."""
    server = EmbeddedRedis(directory=str(tmp_path / "redis"), appendonly=True)
    (tmp_path / "redis").mkdir(exist_ok=True)
    server.start()
    yield server
    server.close()
