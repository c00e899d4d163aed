"""The long-running services (the exporter, the SLURM tracker, the Azure Monitor collector, the web
console's server) say an evicting maxmemory-policy once per change: one WARNING at start, again
after a reconnect if it still evicts, never per poll, nothing under noeviction; they keep running
(only workers refuse). Issue 13."""
from __future__ import annotations

import logging
import subprocess
import sys
import urllib.request

import pytest

from symphony.engine import EmbeddedRedis, PolicyNotice
from symphony.engine.embedded import free_port
from symphony.engine.server import server_info_from
from tests.helpers import ROOT, ProcessRun, wait_until, worker_env
from tests.test_slurm import cluster  # noqa: F401 - the fixture: a real SLURM cluster (skips without one)

WORDS = (  # the workers' words (ServerInfo.policy_danger)
    "Redis has maxmemory-policy allkeys-lru", "when full it deletes any key", "set maxmemory-policy noeviction")


def said(text: str) -> list[str]:
    """The lines that say the policy (the workers' words)."""
    return [line for line in text.splitlines() if all(w in line for w in WORDS)]


def info(policy: str, maxmemory: int = 100 << 20):
    return server_info_from({"redis_version": "7.0.15"}, {"maxmemory": maxmemory, "maxmemory_policy": policy,
                                                          "used_memory": 1 << 20})


# --- the helper ---------------------------------------------------------------------------------
def test_the_notice_says_each_change_once(caplog):
    log = logging.getLogger("symphony.test.policy")
    notice = PolicyNotice(log, "the test service")
    with caplog.at_level(logging.WARNING, logger="symphony.test.policy"):
        for _ in range(5):
            notice.observe(info("allkeys-lru"))  # at start, then every poll: once
        assert len(said(caplog.text)) == 1
        record = caplog.records[0]
        assert record.levelno == logging.WARNING
        assert "the test service keeps running" in record.getMessage() and "workers refuse" in record.getMessage()
        notice.observe(server_info_from(None, None))  # settings unreadable (no INFO): changes nothing
        notice.observe(info("allkeys-lru"))
        assert len(said(caplog.text)) == 1
        notice.lost()  # Redis gone; back, still evicting: said again, once
        notice.observe(info("allkeys-lru"))
        notice.observe(info("allkeys-lru"))
        assert len(said(caplog.text)) == 2
        notice.observe(info("noeviction"))  # fixed: nothing said
        notice.observe(info("volatile-lru"))  # changed again: said
        notice.observe(info("volatile-lru"))
    lines = caplog.text.count("maxmemory-policy volatile-lru")
    assert lines == 1 and len(caplog.records) == 3


def test_the_notice_says_nothing_under_noeviction_or_without_maxmemory(caplog):
    notice = PolicyNotice(logging.getLogger("symphony.test.policy"), "the test service")
    with caplog.at_level(logging.DEBUG, logger="symphony.test.policy"):
        notice.observe(info("noeviction"))
        notice.observe(info("allkeys-lru", maxmemory=0))  # no limit: nothing is evicted
    assert caplog.records == []


def test_the_notice_reads_at_most_once_per_period_and_at_once_after_a_reconnect():
    now = [0.0]

    class Server:
        reads = 0

        def server_info(self):
            Server.reads += 1
            return info("noeviction")

    notice = PolicyNotice(logging.getLogger("symphony.test.policy"), "t", every_s=60, clock=lambda: now[0])
    server = Server()
    for _ in range(10):
        notice.check(server)
    assert Server.reads == 1
    notice.lost()
    notice.check(server)
    assert Server.reads == 2
    now[0] = 61.0
    notice.check(server)
    assert Server.reads == 3


def test_the_workers_refusal_is_the_same_words():
    evicting = info("allkeys-lru")
    assert evicting.policy_refusal.startswith(evicting.policy_danger)
    assert info("noeviction").policy_danger is None


def test_the_web_consoles_server_says_it_at_start(caplog):
    from symphony.console.web import say_policy
    from symphony.engine import resolve_redis

    server = EmbeddedRedis()
    server.start()
    try:
        with server.client() as client:
            client.config_set("maxmemory", "100mb")
            client.config_set("maxmemory-policy", "allkeys-lru")
        with caplog.at_level(logging.WARNING, logger="symphony.web"):
            say_policy(resolve_redis(server.url))
            assert len(said(caplog.text)) == 1 and "the web console's server keeps running" in caplog.text
            with server.client() as client:
                client.config_set("maxmemory-policy", "noeviction")
            caplog.clear()
            say_policy(resolve_redis(server.url))
        assert said(caplog.text) == []
    finally:
        server.close()


# --- the services, as real processes on a private Redis -----------------------------------------
@pytest.fixture
def evicting(tmp_path):
    """A private server with maxmemory 100mb and the given policy (AOF on: a restart keeps the data;
    the policy is given on the command line, so a restart keeps it too)."""
    servers = []

    def start(policy: str) -> EmbeddedRedis:
        (tmp_path / "redis").mkdir(exist_ok=True)
        server = EmbeddedRedis(directory=str(tmp_path / "redis"), appendonly=True)
        server.start()
        with server.client() as client:
            client.config_set("maxmemory", "100mb")
            client.config_set("maxmemory-policy", policy)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def scrape(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return response.status
    except OSError:
        return 0


@pytest.mark.parametrize("policy", ["allkeys-lru", "noeviction"])
def test_metrics_serve_says_the_policy_once(evicting, tmp_path, policy):
    server = evicting(policy)
    port = free_port()
    service = ProcessRun([sys.executable, "-m", "symphony.console.commands", "metrics", "serve", "--port", str(port),
                          "--cache", "0"], tmp_path / "exporter.log", env=worker_env(server.url))
    try:
        wait_until(lambda: "serving Symphony's figures" in service.output(), timeout=30,
                   message="the exporter to start")
        if policy != "noeviction":
            wait_until(lambda: said(service.output()), timeout=10, message="the exporter to say the policy at start")
        for _ in range(5):  # five polls of Redis: nothing more
            assert scrape(port) == 200
    finally:
        code = service.stop()
    text = service.output()
    assert code == 0, text
    lines = said(text)
    if policy == "noeviction":
        assert lines == [] and "maxmemory-policy" not in text, text
    else:
        assert len(lines) == 1, text
        assert "WARNING" in lines[0] and "the exporter keeps running" in lines[0]


def test_metrics_serve_says_it_again_after_a_reconnect(tmp_path):
    (tmp_path / "redis").mkdir()
    server = EmbeddedRedis(directory=str(tmp_path / "redis"), appendonly=True,
                           args=("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"))
    server.start()
    port = free_port()
    service = ProcessRun([sys.executable, "-m", "symphony.console.commands", "metrics", "serve", "--port", str(port),
                          "--cache", "0"], tmp_path / "exporter.log", env=worker_env(server.url))
    try:
        wait_until(lambda: said(service.output()), timeout=30, message="the exporter to say the policy at start")
        for _ in range(3):
            assert scrape(port) == 200
        server.kill()
        for _ in range(2):
            scrape(port)  # failed reads
        wait_until(lambda: "cannot read Redis" in service.output(), timeout=30, message="the exporter to notice")
        server.start()
        wait_until(lambda: scrape(port) == 200 and "Redis answers again" in service.output(), timeout=30,
                   message="the exporter to reconnect")
        for _ in range(3):
            assert scrape(port) == 200
    finally:
        service.stop()
        server.close()
    text = service.output()
    assert len(said(text)) == 2, text  # at start, and once after the reconnect


@pytest.mark.parametrize("policy", ["allkeys-lru", "noeviction"])
def test_slurm_track_once_says_the_policy_once(cluster, evicting, tmp_path, policy):  # noqa: F811
    server = evicting(policy)
    done = subprocess.run([sys.executable, "-m", "symphony.console.commands", "slurm", "track", "--once"], cwd=ROOT,
                          env=worker_env(server.url, SLURM_CONF=cluster.env["SLURM_CONF"]), capture_output=True,
                          text=True, timeout=120)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    lines = said(text)
    if policy == "noeviction":
        assert lines == [] and "maxmemory-policy" not in text, text
    else:
        assert len(lines) == 1, text
        assert "the SLURM tracker keeps running" in lines[0] and "WARNING" in lines[0].upper()


@pytest.mark.parametrize("policy", ["allkeys-lru", "noeviction"])
def test_the_azure_monitor_collector_says_the_policy_once(evicting, caplog, policy):
    from symphony.azure.monitor import AzureCollector, AzureMonitorConfig
    from symphony.engine import Engine, resolve_redis
    from tests.azure_fake import RECORDED_END, RG, SUB, AzureFake, FakeCredential, standard, transport_for

    server = evicting(policy)
    engine = Engine(resolve_redis(server.url))
    fake = standard(AzureFake())
    collector = AzureCollector(engine, AzureMonitorConfig(subscription=SUB, resource_group=RG),
                               credential=FakeCredential(), transport=transport_for(fake),
                               clock=lambda: RECORDED_END + 30, say_policy=True)
    try:
        with caplog.at_level(logging.WARNING, logger="symphony.metrics"):
            for _ in range(3):
                assert collector.poll().ok
            collector.policy.lost()  # as after a write Redis did not answer
            assert collector.poll().ok
    finally:
        collector.clients.close()
        engine.close()
    lines = said(caplog.text)
    if policy == "noeviction":
        assert lines == []
    else:
        assert len(lines) == 2 and "the Azure Monitor collector keeps running" in lines[0]  # start, reconnect
