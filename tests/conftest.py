"""Fixtures: a real Redis server started by the suite on a free port (never the operator's).

``SYMPHONY_TEST_REDIS=cluster`` (the cluster tier, .ci/run) makes ``redis_url``, ``r``,
``engine`` and ``cli`` use a 3-master Redis Cluster (tests/redis_cluster.py) instead of one
server; the ``redis_cluster`` / ``cluster_url`` / ``own_cluster`` fixtures give a cluster to any
test. ``--cluster-tier`` runs the tests listed in tests/cluster_tier.txt
that way (.ci/run does, after the main run).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from symphony.engine import EmbeddedRedis, Engine, resolve_redis
from symphony.engine.scripts import load_all


ON_CLUSTER = os.environ.get("SYMPHONY_TEST_REDIS", "").strip().lower() == "cluster"
TIER = Path(__file__).with_name("cluster_tier.txt")


def pytest_addoption(parser):
    parser.addoption("--cluster-tier", action="store_true", default=False,
                     help="the Redis Cluster tier: only the tests listed in tests/cluster_tier.txt, against a "
                          "3-master Redis Cluster (as SYMPHONY_TEST_REDIS=cluster)")


def pytest_configure(config):
    global ON_CLUSTER
    config.addinivalue_line("markers", "cluster: starts a real 3-master Redis Cluster (tests/redis_cluster.py)")
    if config.getoption("--cluster-tier"):
        ON_CLUSTER = True


def cluster_tier() -> tuple[set[str], set[str]]:
    """(entries, exclusions) of tests/cluster_tier.txt that apply to this tree: ``path`` or
    ``path::test``, an exclusion starting with ``-``. Those under ``[cluster key layout]`` count
    only once keys.py puts every script's keys in one hash slot (tests/redis_cluster.py
    ``cluster_key_layout``): before that they fail on a cluster by design."""
    from tests.redis_cluster import cluster_key_layout

    layout = cluster_key_layout()
    entries: set[str] = set()
    excluded: set[str] = set()
    section = ""
    for line in TIER.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
        elif line and (section != "[cluster key layout]" or layout):
            (excluded.add(line[1:].strip()) if line.startswith("-") else entries.add(line))
    return entries, excluded


def pytest_collection_modifyitems(config, items):
    """``--cluster-tier``: keep the listed tests that use the suite's Redis (``redis_url``, and so
    ``r``, ``engine``, ``cli``); the others do not touch the cluster and ran in the main run."""
    if not config.getoption("--cluster-tier"):
        return
    entries, excluded = cluster_tier()
    keep, drop = [], []
    for item in items:
        test = item.nodeid.split("[", 1)[0]
        listed = (test in entries or test.split("::", 1)[0] in entries) and test not in excluded
        (keep if listed and "redis_url" in getattr(item, "fixturenames", ()) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


@pytest.fixture(scope="session")
def redis_server():
    """One ``redis-server`` (or the embedded Valkey) for the whole run, stopped by its PID at the end."""
    server = EmbeddedRedis()
    server.start()
    yield server
    server.close()


def _started_cluster(folder):
    """A started 3-master cluster in ``folder``, or a skip saying why this machine cannot have one."""
    from tests.redis_cluster import LocalCluster, why_unavailable

    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = LocalCluster(folder)
    try:
        cluster.start()
    except Exception as exc:  # noqa: BLE001 - e.g. a redis-server built without cluster support
        cluster.close()
        pytest.skip(f"could not start a Redis Cluster: {exc}".splitlines()[0])
    return cluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """One 3-master Redis Cluster for the whole run, stopped by PID; skips saying why when this
    machine's redis-server cannot form one."""
    cluster = _started_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.close()


@pytest.fixture
def cluster_url(redis_cluster) -> str:
    """The shared cluster, emptied (keys and script caches of every master): a URL naming one node."""
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture
def own_cluster(tmp_path):
    """A private 3-master cluster for tests that kill or restart a master (AOF on every node)."""
    cluster = _started_cluster(tmp_path / "cluster")
    yield cluster
    cluster.close()


@pytest.fixture
def redis_url(request) -> str:
    """The suite's Redis, emptied: one server, or the cluster when SYMPHONY_TEST_REDIS=cluster."""
    if ON_CLUSTER:
        return request.getfixturevalue("cluster_url")
    server = request.getfixturevalue("redis_server")
    with server.client() as client:
        client.flushall()
        client.script_flush()
    return server.url


@pytest.fixture
def r(redis_url):
    """A plain client of the suite's Redis (a RedisCluster on the cluster tier)."""
    if ON_CLUSTER:
        from redis.cluster import RedisCluster

        client = RedisCluster.from_url(redis_url, decode_responses=True)
    else:
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


@pytest.fixture(autouse=True)
def _stop_every_worker(monkeypatch):
    """Every worker a test starts is stopped at teardown, even when an assertion failed first."""
    from tests.helpers import WorkerRun

    started: list = []
    original = WorkerRun.__init__

    def tracking(self, *args, **kwargs):
        original(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(WorkerRun, "__init__", tracking)
    yield
    for worker in started:
        worker.stop()


@pytest.fixture
def cli(redis_url, monkeypatch, capsys):
    """Run a ``symphony`` verb in this process against the suite's Redis: (exit code, stdout, stderr)."""
    from symphony.console.commands.main import main as symphony

    monkeypatch.setenv("REDIS_URL", redis_url)

    def run(*args: str) -> tuple[int, str, str]:
        code = symphony(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run



@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    """One Azurite (Blob and Queue on free ports, in a temporary folder) for the run, stopped by PID;
    the tests that need it skip with the reason when it cannot be had."""
    from tests.azurite import Azurite, why_unavailable

    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    server.start()
    yield server
    server.close()


@pytest.fixture
def azurite(azurite_server, monkeypatch):
    """Azurite, with ``AZURE_STORAGE_CONNECTION_STRING`` pointing at it (and no other Azure credential)."""
    for name in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
                 "AZURE_STORAGE_CONNECTION_STRING_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server.connection_string)
    return azurite_server
