"""The engine's client on a real 3-master Redis Cluster (tests/redis_cluster.py): connect() tells a
cluster from one server by asking it once, scripts are loaded on every primary and reloaded on
the node that lost them, the server's facts and maxmemory policy come from every shard, a
blocking wait on the fleet's bells works, and a lost master reads as "unavailable"."""
from __future__ import annotations

import threading

import pytest
import redis
from redis.cluster import RedisCluster

from symphony.engine import resolve_redis
from symphony.engine import cluster as topology
from symphony.engine.connection import connect, is_unavailable, ping, redis_problem
from symphony.engine.errors import ConfigError
from symphony.engine.keys import DEFAULT_KEYS
from symphony.engine.scripts import NAMES, ensure_loaded, execute, load_all, scripts
from symphony.engine.server import read_server_info
from tests.helpers import wait_until
from tests.redis_cluster import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _calls(node, command: str) -> int:
    with node.client() as direct:
        return direct.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


def _reset_stats(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        with node.client() as direct:
            direct.config_resetstat()


def test_connect_gives_a_cluster_client_for_a_cluster_and_a_plain_one_for_one_server(cluster_url, redis_server):
    on_cluster = connect(resolve_redis(cluster_url, env={}))
    on_one = connect(resolve_redis(redis_server.url, env={}))
    told = connect(resolve_redis(cluster_url + "?cluster=no", env={}))
    try:
        assert isinstance(on_cluster, RedisCluster) and topology.is_cluster(on_cluster)
        assert isinstance(on_one, redis.Redis) and not topology.is_cluster(on_one)
        assert isinstance(told, redis.Redis)  # cluster=no: believed, nothing asked
        assert ping(on_cluster, resolve_redis(cluster_url, env={})) >= (7, 0, 0)
        on_cluster.set("{probe}:one", "1")
        assert on_cluster.get("{probe}:one") == "1"
    finally:
        for client in (on_cluster, on_one, told):
            client.close()


def test_the_environment_beats_the_url_and_bad_words_are_refused(cluster_url):
    assert resolve_redis(cluster_url + "?cluster=no", env={}).cluster == "no"
    assert resolve_redis(cluster_url + "?cluster=no", env={"SYMPHONY_REDIS_CLUSTER": "yes"}).cluster == "yes"
    assert resolve_redis(cluster_url, env={}).cluster == "auto"
    assert resolve_redis(cluster_url + "?cluster=no", env={}).server_url == cluster_url
    with pytest.raises(ConfigError, match="auto, yes or no"):
        resolve_redis(cluster_url, env={"SYMPHONY_REDIS_CLUSTER": "maybe"})
    with pytest.raises(ConfigError, match="only database 0"):
        connect(resolve_redis(cluster_url.rsplit("/", 1)[0] + "/3?cluster=yes", env={}))


def test_a_process_asks_a_server_once_whether_it_is_a_cluster(redis_cluster, cluster_url):
    config = resolve_redis(cluster_url, env={})
    connect(config).close()  # asked (or remembered from an earlier test)
    _reset_stats(redis_cluster)
    for _ in range(3):
        connect(config).close()
    assert sum(_calls(node, "info") for node in redis_cluster.nodes) == 0


def test_a_client_made_before_the_cluster_is_up_connects_at_its_first_command(tmp_path):
    cluster = LocalCluster(tmp_path / "late")
    try:
        client = connect(resolve_redis(cluster.url, env={}), socket_timeout=2, connect_timeout=1)
        assert isinstance(client, topology.DeferredClient)
        with pytest.raises(Exception) as refused:
            client.get("{late}:x")
        assert is_unavailable(refused.value), refused.value
        cluster.start()
        client.set("{late}:x", "here")
        assert client.get("{late}:x") == "here" and topology.is_cluster(client)
        client.close()
    finally:
        cluster.close()


def test_scripts_are_loaded_on_every_primary_with_one_round_trip_each(redis_cluster, cluster_url):
    client = connect(resolve_redis(cluster_url, env={}))
    try:
        _reset_stats(redis_cluster)
        ensure_loaded(client)
        ensure_loaded(client)  # once per client
        shas = [getattr(scripts(), name).sha for name in NAMES]
        for node in redis_cluster.nodes:
            with node.client() as direct:
                assert all(direct.script_exists(*shas)), node.port
            assert _calls(node, "script|load") == len(NAMES)
    finally:
        client.close()


def test_a_node_that_lost_its_scripts_gets_them_again_and_the_call_runs_there(redis_cluster, cluster_url):
    client = connect(resolve_redis(cluster_url, env={}))
    try:
        load_all(client)
        key = DEFAULT_KEYS.session("lost-scripts")
        holder = redis_cluster.node_for(key)
        with holder.client() as direct:
            direct.script_flush()  # what a restart or a promoted replica looks like
        _reset_stats(redis_cluster)
        read = scripts().read
        assert read(client, [key], ["hgetall"], readonly=True) is not None
        assert _calls(holder, "script|load") == 1
        assert sum(_calls(n, "script|load") for n in redis_cluster.nodes) == 1  # that node only
        with holder.client() as direct:
            direct.script_flush()
        pipe = client.pipeline(transaction=False)
        queued = [read.queue(pipe, [key], ["hgetall"], readonly=True), None]
        pipe.get("{elsewhere}:x")
        replies = execute(client, pipe, queued)
        assert len(replies) == 2 and replies[1] is None
    finally:
        client.close()


def test_script_calls_on_a_pipeline_cost_no_key_lookup_round_trip(redis_cluster, cluster_url):
    client = connect(resolve_redis(cluster_url, env={}))
    try:
        load_all(client)
        _reset_stats(redis_cluster)
        read = scripts().read
        pipe = client.pipeline(transaction=False)
        queued = [read.queue(pipe, [DEFAULT_KEYS.session(f"s{i}")], ["hgetall"], readonly=True) for i in range(6)]
        execute(client, pipe, queued)
        read(client, [DEFAULT_KEYS.session("s0")], ["hgetall"], readonly=True)
        assert sum(_calls(n, "command|getkeys") for n in redis_cluster.nodes) == 0
        assert sum(_calls(n, "evalsha_ro") for n in redis_cluster.nodes) == 7
    finally:
        client.close()


def test_server_facts_come_from_every_shard_and_an_evicting_one_is_named(redis_cluster, cluster_url):
    client = connect(resolve_redis(cluster_url, env={}))
    odd = redis_cluster.nodes[1]
    try:
        calm = read_server_info(client)
        assert calm.shards == 3 and calm.maxmemory_policy == "noeviction" and not calm.can_evict
        assert "cluster of 3 shards" in calm.display
        with odd.client() as direct:
            direct.config_set("maxmemory", 512 * 1024 * 1024)
            direct.config_set("maxmemory-policy", "allkeys-lru")
        info = read_server_info(client)
        assert info.can_evict and info.maxmemory_policy == "allkeys-lru"
        assert info.policy_refusal and len(info.problems) == 1
        assert info.problems[0].startswith(f"on 127.0.0.1:{odd.port}: maxmemory-policy is allkeys-lru")
    finally:
        with odd.client() as direct:
            direct.config_set("maxmemory-policy", "noeviction")
            direct.config_set("maxmemory", 0)
        client.close()


def test_a_blocking_wait_on_two_bells_of_the_fleet_slot_wakes_on_a_push(redis_cluster, cluster_url):
    bells = [DEFAULT_KEYS.bell("alpha"), DEFAULT_KEYS.bell("beta")]
    with redis_cluster.nodes[0].client() as direct:
        slots = {direct.execute_command("CLUSTER", "KEYSLOT", b) for b in bells}
    if len(slots) > 1:
        pytest.skip("this tree's key layout puts the roles' bells in different hash slots (the fleet slot "
                    "{symphony} of the cluster key layout puts them in one)")
    # a socket timeout longer than the wait, as the worker's engine has (idle wait + 5 s)
    waiter = connect(resolve_redis(cluster_url, env={}), socket_timeout=5)
    pusher = connect(resolve_redis(cluster_url, env={}))
    try:
        assert waiter.blpop(bells, timeout=0.2) is None  # times out in Redis, not in the socket
        got: list = []
        thread = threading.Thread(target=lambda: got.append(waiter.blpop(bells, timeout=4)))
        thread.start()
        wait_until(lambda: sum(int(n.client().info("clients")["blocked_clients"]) for n in redis_cluster.nodes),
                   timeout=5, message="the waiter blocked on the bells")
        pusher.lpush(bells[1], "block7")
        thread.join(timeout=10)
        assert got == [(bells[1], "block7")]
    finally:
        waiter.close()
        pusher.close()


def test_a_lost_master_reads_as_unavailable_and_the_client_recovers(own_cluster):
    config = resolve_redis(own_cluster.url, env={})
    client = connect(config, socket_timeout=2, connect_timeout=1)
    try:
        client.set("{gone}:x", "1")
        holder = own_cluster.nodes.index(own_cluster.node_for("{gone}:x"))
        own_cluster.kill(holder)
        with pytest.raises(Exception) as refused:
            client.get("{gone}:x")
        assert is_unavailable(refused.value), repr(refused.value)
        assert "is unavailable" in redis_problem(refused.value, config.display)
        own_cluster.wait_down()
        survivor = next(n for i, n in enumerate(own_cluster.nodes) if i != holder)
        with survivor.client() as direct:
            name = next(f"down:{i}" for i in range(100)
                        if own_cluster.node_for(f"down:{i}").port == survivor.port)
        with pytest.raises(Exception) as down:
            client.get(name)  # a live shard refuses while the cluster is down (CLUSTERDOWN)
        assert is_unavailable(down.value), repr(down.value)
        own_cluster.restart(holder)
        assert wait_until(lambda: client.get("{gone}:x"), timeout=20, message="the key back") == "1"
    finally:
        client.close()


def test_a_plain_client_on_a_cluster_node_is_told_why_it_gets_moved(cluster_url):
    config = resolve_redis(cluster_url + "?cluster=no", env={})
    client = connect(config)
    cluster_client = connect(resolve_redis(cluster_url, env={}))
    try:
        name = next(f"moved:{i}" for i in range(200)
                    if topology.node_for(cluster_client, f"moved:{i}")[0] != cluster_url.split("//")[1].split("/")[0])
        with pytest.raises(redis.ResponseError) as moved:
            client.get(name)
        assert "is a Redis Cluster node" in redis_problem(moved.value, config.display)
        assert not is_unavailable(moved.value)
    finally:
        client.close()
        cluster_client.close()


def test_acl_apply_sets_the_user_on_every_node_and_that_user_can_use_the_cluster(redis_cluster, cluster_url, tmp_path,
                                                                                 monkeypatch, capsys):
    from symphony.console.commands.main import main as symphony

    secret = tmp_path / "worker-password"
    secret.write_text("worker-secret-1\n")
    monkeypatch.setenv("REDIS_URL", cluster_url)
    try:
        assert symphony(["acl", "worker", "--stages", "rvm", "--password-file", str(secret), "--apply"]) == 0
        assert "all 3 nodes of the cluster" in capsys.readouterr().out
        for node in redis_cluster.nodes:
            with node.client() as direct:
                assert "symphony-worker" in direct.acl_users(), node.port
        host_port = cluster_url.split("//", 1)[1]
        as_worker = resolve_redis(f"redis://symphony-worker:worker-secret-1@{host_port}", env={})
        client = connect(as_worker)
        try:
            assert topology.is_cluster(client)  # INFO, CLUSTER SLOTS and COMMAND are allowed
            key = DEFAULT_KEYS.queue("rvm", "acl-session")
            client.rpush(key, "x")
            assert client.lrange(key, 0, -1) == ["x"]
            ensure_loaded(client)
        finally:
            client.close()
        for node in redis_cluster.nodes:
            with node.client() as direct:
                assert direct.acl_log() == [], node.port
    finally:
        for node in redis_cluster.nodes:
            with node.client() as direct:
                direct.acl_deluser("symphony-worker")
                direct.acl_log_reset()
