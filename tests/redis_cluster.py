"""A real Redis Cluster for the tests: three masters (``redis-server --cluster-enabled yes``) on
free ports in a temporary folder, joined with ``CLUSTER MEET``, the 16384 slots split between
them with ``CLUSTER ADDSLOTSRANGE``, ready once every node says ``cluster_state:ok`` (polled,
with a deadline). Each node is an :class:`~symphony.engine.embedded.EmbeddedRedis` (AOF on, so a
killed master restarted in its folder keeps its data and its ``nodes.conf``), stopped by its PID.

Usage::

    cluster = LocalCluster(tmp_path)      # or the ``redis_cluster`` / ``cluster_url`` fixtures
    cluster.start()
    cluster.url                           # redis://127.0.0.1:<port of the first master>/0
    cluster.client()                      # a redis.cluster.RedisCluster (decode_responses)
    cluster.flushall()                    # FLUSHALL and SCRIPT FLUSH on every master
    cluster.kill(1); cluster.restart(1)   # SIGKILL one master, start it again (AOF), wait for ok
    cluster.node_for(key)                 # the EmbeddedRedis that holds ``key``'s slot
    cluster.close()

:func:`why_unavailable` says (one line) why no cluster can be started here, or None.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster

from symphony.engine.embedded import EmbeddedRedis, find_server_binary, free_port
from symphony.engine.errors import ConfigError

SLOTS = 16384


def why_unavailable() -> str | None:
    """Why a cluster cannot be started on this machine (one line), or None if it can."""
    binary = find_server_binary()
    if not binary:
        return "no redis-server on PATH (nor $SYMPHONY_REDIS_SERVER): the Redis Cluster tests need one"
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary} --version failed: {exc}"
    version = next((part[2:] for part in out.split() if part.startswith("v=")), "")
    numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if numbers and numbers < (7, 0):
        return f"{binary} is version {version}: the Redis Cluster tests need 7.0+ (CLUSTER ADDSLOTSRANGE)"
    return None


class LocalCluster:
    """``masters`` redis-server processes forming one Redis Cluster (no replicas)."""

    def __init__(self, directory: str | os.PathLike, masters: int = 3, *, node_timeout_ms: int = 2000,
                 args: tuple[str, ...] = ()):
        self.directory = Path(directory)
        self.nodes: list[EmbeddedRedis] = []
        self.bus_ports: list[int] = []
        for index in range(masters):
            port = free_port()
            self.bus_ports.append(free_port())
            folder = self.directory / f"node{index}"
            folder.mkdir(parents=True, exist_ok=True)
            self.nodes.append(EmbeddedRedis(
                port=port, directory=str(folder), appendonly=True,
                args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                      # the bus on a free port of its own (the default, port + 10000, may be taken or > 65535)
                      "--cluster-port", str(self.bus_ports[-1]),
                      "--cluster-node-timeout", str(node_timeout_ms), *args)))

    # -- addresses -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """A URL naming one node; a cluster client discovers the others from it."""
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def client(self, **kwargs) -> RedisCluster:
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 5)
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports], **kwargs)

    def node_for(self, key: str) -> EmbeddedRedis:
        """The node serving ``key``'s hash slot now."""
        with self.nodes[0].client() as direct:
            slot = direct.execute_command("CLUSTER", "KEYSLOT", key)
            for start, end, master, *_ in direct.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"no node serves the slot of {key!r}")

    # -- life cycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "LocalCluster":
        for node in self.nodes:
            node.start()
        first = self.nodes[0]
        with first.client() as client:
            for node, bus in zip(self.nodes[1:], self.bus_ports[1:]):
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
        share = SLOTS // len(self.nodes)
        for index, node in enumerate(self.nodes):
            low = index * share
            high = SLOTS - 1 if index == len(self.nodes) - 1 else low + share - 1
            with node.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
        self.wait_ok(timeout)
        return self

    def _state(self, node: EmbeddedRedis) -> str:
        with node.client(socket_timeout=2) as client:
            info = client.execute_command("CLUSTER", "INFO")
            fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
            if fields.get("cluster_state") != "ok" or fields.get("cluster_known_nodes") != str(len(self.nodes)):
                return f"{fields.get('cluster_state')}, {fields.get('cluster_known_nodes')} nodes known"
            if fields.get("cluster_slots_ok") != str(SLOTS):
                return f"{fields.get('cluster_slots_ok')} slots ok"
            # every node must see every other node's slots (gossip done), or a client gets MOVED loops
            owners = {int(m[1]) for _s, _e, m, *_ in client.execute_command("CLUSTER", "SLOTS")}
            if owners != set(self.ports):
                return f"slot owners {sorted(owners)}"
        return "ok"

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Poll every node until each says ``cluster_state:ok`` and knows every slot's owner."""
        deadline = time.monotonic() + timeout
        states: dict[int, str] = {}
        while True:
            for node in self.nodes:
                try:
                    states[node.port] = self._state(node)
                except redis.RedisError as exc:
                    states[node.port] = repr(exc)
            if all(state == "ok" for state in states.values()):
                return
            if time.monotonic() >= deadline:
                raise ConfigError(f"the Redis Cluster on ports {self.ports} was not ok within {timeout}s: {states}")
            time.sleep(0.05)

    def wait_down(self, timeout: float = 30.0) -> None:
        """Poll the live nodes until one says ``cluster_state:fail`` (a master is gone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process is None or node.process.poll() is not None:
                    continue
                try:
                    with node.client(socket_timeout=2) as client:
                        if "cluster_state:fail" in client.execute_command("CLUSTER", "INFO"):
                            return
                except redis.RedisError:
                    pass
            time.sleep(0.05)
        raise ConfigError(f"the Redis Cluster on ports {self.ports} did not notice a lost master within {timeout}s")

    def flushall(self) -> None:
        """Empty every master: its keys and its script cache."""
        for node in self.nodes:
            with node.client() as client:
                client.flushall()
                client.script_flush()

    def kill(self, index: int) -> None:
        """SIGKILL master ``index`` (what its AOF had stays on disk)."""
        self.nodes[index].kill()
        self.nodes[index].process = None

    def restart(self, index: int, timeout: float = 30.0) -> None:
        """Start master ``index`` again on its port and folder (its AOF and nodes.conf); wait for ok."""
        self.nodes[index].start()
        self.wait_ok(timeout)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def servers(client) -> list:
    """The server, or a plain client of every primary of a cluster: a cluster client's own
    ``client_list()``, ``info()`` and ``config_resetstat()`` reach one node only."""
    if isinstance(client, RedisCluster):
        return [client.get_redis_connection(node) for node in client.get_primaries()]
    return [client]


def every_client(client) -> list[dict]:
    """``CLIENT LIST`` of the server, or of every primary of a cluster."""
    return [entry for node in servers(client) for entry in node.client_list()]


def command_calls(client, command: str) -> int:
    """How many times ``command`` ran (INFO commandstats) on the server, or on all primaries."""
    return sum(int(node.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
               for node in servers(client))


def cluster_key_layout() -> bool:
    """Whether this tree's key names put each atomic step in one hash slot: a session's queue,
    hash and counters together, and the fleet's keys (workers, registry, bells, ready sets)
    together. Before that layout, Symphony's scripts fail on a cluster (CROSSSLOT) by design."""
    from redis.crc import key_slot

    from symphony.engine.keys import DEFAULT_KEYS as k

    def one_slot(*keys: str) -> bool:
        return len({key_slot(key.encode()) for key in keys}) == 1

    return (one_slot(k.queue("a", "s"), k.session("s"), k.stats("s"), k.live("s"))
            and one_slot(k.workers, k.sessions, k.pools, k.epoch, k.bell("a"), k.bell("b"), k.ready("a")))


def raw_client(redis_url: str):
    """A client of the suite's Redis that does not decode replies (to plant raw bytes): a cluster
    client when the URL is a cluster node, a plain one otherwise."""
    probe = redis.Redis.from_url(redis_url)
    try:
        clustered = int(probe.info("cluster").get("cluster_enabled", 0) or 0) == 1
    finally:
        probe.close()
    return RedisCluster.from_url(redis_url) if clustered else redis.Redis.from_url(redis_url)


def pause_every_primary(client, ms: int) -> None:
    """``CLIENT PAUSE ms ALL`` on the server, or on every primary of a cluster (a cluster client's
    own ``client_pause()`` pauses one node only), so that nobody is answered for ``ms``."""
    for node in servers(client):
        node.client_pause(ms, all=True)
