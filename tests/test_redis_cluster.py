"""The Redis Cluster fixture itself (tests/redis_cluster.py): three masters that cover every slot,
a master killed and restarted keeps its keys (AOF), FLUSHALL empties every shard."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_the_cluster_spreads_keys_over_three_masters(redis_cluster, cluster_url):
    client = redis_cluster.client()
    try:
        for index in range(60):
            client.set(f"spread:{index}", index)
        holders = {redis_cluster.node_for(f"spread:{index}").port for index in range(60)}
        assert holders == set(redis_cluster.ports)
        redis_cluster.flushall()
        assert all(node.client().dbsize() == 0 for node in redis_cluster.nodes)
    finally:
        client.close()


def test_a_killed_master_comes_back_with_its_keys(own_cluster):
    client = own_cluster.client()
    try:
        client.set("{kept}:one", "1")
        holder = own_cluster.nodes.index(own_cluster.node_for("{kept}:one"))
        own_cluster.kill(holder)
        own_cluster.wait_down()
        own_cluster.restart(holder)
        assert own_cluster.client().get("{kept}:one") == "1"
    finally:
        client.close()
