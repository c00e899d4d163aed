"""Redis Cluster: which client to use, and the few operations that must go to every primary.

A server is a cluster when ``INFO cluster`` says ``cluster_enabled:1``; :func:`connect` asks once
per process and URL (``cluster=yes|no`` in the URL or ``SYMPHONY_REDIS_CLUSTER`` skips the
question). On a cluster the client is a ``redis.cluster.RedisCluster`` that follows MOVED/ASK,
with two changes:

* the keys of ``EVALSHA`` / ``EVALSHA_RO`` (and ``EVAL`` / ``EVAL_RO``) are read from the command
  itself. redis-py otherwise asks the server (``COMMAND GETKEYS``, one more round trip) for
  every script call queued on a pipeline and for every read-only script call;
* commands without keys that describe a server (``INFO``, ``SCRIPT LOAD``, the maxmemory
  policy) are sent to every primary by :func:`primaries` and the callers in server.py and
  scripts.py, never through a cluster pipeline (which refuses them).

Everything else (pipelines without MULTI spanning nodes, MULTI/EXEC and Lua scripts within one
hash slot: docs/cluster.md) is redis-py's own.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import RedisConfig
from .errors import ConfigError
from .redaction import redact

try:
    from redis.cluster import ClusterPipeline, RedisCluster
except ImportError:  # pragma: no cover - redis-py without cluster support
    ClusterPipeline = RedisCluster = None  # type: ignore[assignment,misc]

SCRIPT_COMMANDS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})

# what each process found out (the URL and user: two configs naming one server ask once)
_detected: dict[tuple[str, str | None], str] = {}
_detected_lock = threading.Lock()


def _where(config: RedisConfig) -> tuple[str, str | None]:
    return config.server_url, config.username


def detected(config: RedisConfig) -> str:
    """``yes``/``no`` if this process already asked the server of ``config``; else ``auto``."""
    with _detected_lock:
        return _detected.get(_where(config), "auto")


def remember(config: RedisConfig, enabled: bool) -> None:
    with _detected_lock:
        _detected[_where(config)] = "yes" if enabled else "no"


def cluster_enabled(client: redis.Redis) -> bool:
    """Whether the server of ``client`` is a Redis Cluster node (``INFO cluster``). A user that
    may not run INFO is taken to be on one server: ``cluster=yes`` says otherwise."""
    try:
        info = client.execute_command("INFO", "cluster")
    except redis.exceptions.ResponseError as exc:
        if isinstance(exc, redis.exceptions.NoPermissionError) or "NOPERM" in str(exc):
            return False
        raise
    if isinstance(info, dict):
        return str(info.get("cluster_enabled", "0")) == "1"
    return "cluster_enabled:1" in str(info)


class _ScriptKeys:
    """redis-py's command parser, except that a script call's keys come from its own arguments."""

    def __init__(self, parser: Any):
        self._parser = parser

    def get_keys(self, redis_conn: Any, *args: Any) -> Any:
        if args and str(args[0]).upper() in SCRIPT_COMMANDS and len(args) >= 3:
            return list(args[3:3 + int(args[2])])
        return self._parser.get_keys(redis_conn, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


if RedisCluster is not None:
    class SymphonyCluster(RedisCluster):  # type: ignore[misc,valid-type]
        """redis-py's cluster client, with ``pipeline()`` a MULTI/EXEC transaction by default as on
        one server (``redis.Redis.pipeline``), so the same code means the same on both."""

        def pipeline(self, transaction: Any = True, shard_hint: Any = None) -> Any:
            return super().pipeline(transaction=transaction, shard_hint=shard_hint)
else:  # pragma: no cover
    SymphonyCluster = None  # type: ignore[assignment,misc]


def cluster_client(config: RedisConfig, kwargs: dict) -> Any:
    """A ``RedisCluster`` for ``config`` with the options of every other client (``kwargs``).
    Builds its map of the slots now (``CLUSTER SLOTS``; ``COMMAND`` for redis-py's key parser):
    raises a connection error when no node answers."""
    if RedisCluster is None or not hasattr(redis.cluster, "TransactionStrategy"):
        raise ConfigError("this redis-py has no Redis Cluster client with MULTI/EXEC on one slot: "
                          "install redis-py 6.2 or newer for a Redis Cluster")
    options = dict(kwargs)
    options.pop("health_check_interval", None)
    # one immediate try more after a node failed (the client refreshes its map of the slots in
    # between); longer outages are the caller's to wait out, as on one server
    options["retry"] = Retry(NoBackoff(), 1)
    try:
        client = SymphonyCluster.from_url(config.server_url, **options)
    except redis.exceptions.RedisClusterException as exc:
        text = redact(str(exc))
        if "db" in text and "cluster mode" in text:
            raise ConfigError(f"invalid Redis URL {config.display}: a Redis Cluster has only database 0") from None
        if "cannot be connected" in text or "not covered" in text:
            raise redis.ConnectionError(f"no node of the Redis Cluster at {config.display} answers: {text}") from None
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid Redis URL {config.display}: {redact(exc)}") from None
    client.commands_parser = _ScriptKeys(client.commands_parser)
    return client


class DeferredClient:
    """Stands for a client while Redis cannot be reached when the process starts: the first use
    builds it (asking whether the server is a cluster), and raises the connection error while
    Redis is still away, as a plain client's command would."""

    def __init__(self, build: Callable[[], Any], display: str):
        self._build = build
        self._display = display
        self._client: Any = None
        self._lock = threading.Lock()

    def resolve(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build()
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolve(), name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> "DeferredClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DeferredClient({self._display}, {'connected' if self._client is not None else 'not connected yet'})"


def real(client: Any) -> Any:
    """The client behind a :class:`DeferredClient` (built now), or ``client`` itself."""
    return client.resolve() if isinstance(client, DeferredClient) else client


def is_cluster(client: Any) -> bool:
    """Whether ``client`` (or pipeline) talks to a Redis Cluster."""
    client = real(client)
    return RedisCluster is not None and isinstance(client, RedisCluster)


def primaries(client: Any) -> list[tuple[str, redis.Redis]]:
    """``[(name, plain client of that node)]`` for every primary of a cluster (``host:port``),
    or ``[("", client)]`` on one server. A node's client sends to that node only (no MOVED)."""
    client = real(client)
    if not is_cluster(client):
        return [("", client)]
    return [(node.name, client.get_redis_connection(node)) for node in client.get_primaries()]


def node_for(client: Any, key: str) -> tuple[str, redis.Redis]:
    """The primary that serves ``key``'s hash slot now, as in :func:`primaries`."""
    client = real(client)
    if not is_cluster(client):
        return "", client
    node = client.get_node_from_key(key)
    return node.name, client.get_redis_connection(node)


def every_node(client: Any, *command: Any) -> list[Any]:
    """Run ``command`` on the server, or on every node of a cluster, replicas included (each
    node keeps its own ACL users and settings); the replies, one per node."""
    client = real(client)
    if not is_cluster(client):
        return [client.execute_command(*command)]
    return [client.get_redis_connection(node).execute_command(*command) for node in client.get_nodes()]
