"""Redis clients for the engine, and the reconnect backoff every long-running process uses."""
from __future__ import annotations

import importlib.util
import random
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import cluster
from .config import RedisConfig
from .errors import ConfigError, CredentialsRefused, RedisUnavailable
from .redaction import redact

# Errors that mean "Redis is not reachable right now" (as opposed to a bug or a bad command).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)
try:  # a server that is loading its dataset or is busy running a script answers with these
    CONNECTION_ERRORS += (redis.exceptions.BusyLoadingError,)
except AttributeError:  # pragma: no cover
    pass

MIN_SERVER = (6, 2, 0)


# A Redis Cluster that lost a master (CLUSTERDOWN), is moving a slot (TRYAGAIN), has a replica
# cut from its master (MASTERDOWN) or a slot nobody serves yet. redis-py strips the prefix of the
# first three from the message, so they are told by their class.
CLUSTER_UNAVAILABLE: tuple[type[BaseException], ...] = tuple(
    getattr(redis.exceptions, name) for name in ("ClusterDownError", "TryAgainError", "SlotNotCoveredError")
    if hasattr(redis.exceptions, name))
# what redis-py's cluster client raises when no node answers (its messages, not a server's)
CLUSTER_UNREACHABLE = ("Redis Cluster cannot be connected", "TTL exhausted", "Cluster error")
_CLUSTER_CLIENT_ERRORS: tuple[type[BaseException], ...] = tuple(
    getattr(redis.exceptions, name) for name in ("RedisClusterException", "ClusterError")
    if hasattr(redis.exceptions, name))


def is_unavailable(exc: BaseException) -> bool:
    """True if ``exc`` means Redis is down, unreachable, loading or paused (on a Redis Cluster
    too: a shard down, a failover, a slot moving)."""
    if isinstance(exc, CLUSTER_UNAVAILABLE):
        return True
    if isinstance(exc, redis.exceptions.ResponseError):
        text = str(exc)
        return text.startswith(("LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"))
    if isinstance(exc, _CLUSTER_CLIENT_ERRORS):
        return str(exc).startswith(CLUSTER_UNREACHABLE)
    return isinstance(exc, CONNECTION_ERRORS)


def is_out_of_memory(exc: BaseException) -> bool:
    """True if ``exc`` is Redis refusing a write because it is at its ``maxmemory`` (noeviction):
    Redis answers, but writes fail until memory is freed."""
    if isinstance(exc, getattr(redis.exceptions, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(
        ("OOM", "command not allowed when used memory"))


def _client_kwargs(config: RedisConfig, socket_timeout: float, connect_timeout: float) -> dict:
    """The redis-py options every client of ``config`` gets, on one server or on each cluster node."""
    kwargs: dict = dict(
        decode_responses=True,
        # a value that is not UTF-8 (a planted message with byte 0xff) decodes to lone surrogates
        # instead of failing the whole reply, and encodes back to the same bytes (LREM finds it)
        encoding_errors="surrogateescape",
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        socket_keepalive=True,
        health_check_interval=15,
        retry=Retry(NoBackoff(), 0),
        client_name=config.client_name,
    )
    try:  # redis-py 7+: skip the CLIENT MAINT_NOTIFICATIONS handshake (an extra command, and ACL noise)
        from redis.maint_notifications import MaintNotificationsConfig

        kwargs["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    except ImportError:  # pragma: no cover - older redis-py
        pass
    # no CLIENT SETINFO: one command less per connection, and none an ACL user must be granted.
    # (Never ``import redis.driver_info`` here: an import statement makes ``redis`` a local name of
    # this function, unbound below when the module does not exist.)
    if importlib.util.find_spec("redis.driver_info") is not None:  # redis-py 7.1+
        kwargs["driver_info"] = None
    else:
        kwargs["lib_name"] = kwargs["lib_version"] = None
    if config.password is not None:
        kwargs["password"] = config.password
    if config.username is not None:
        kwargs["username"] = config.username
    if config.ca_file and config.url.startswith("rediss://"):
        kwargs["ssl_ca_certs"] = config.ca_file
    return kwargs


def connect(config: RedisConfig, *, socket_timeout: float = 10.0, connect_timeout: float = 5.0) -> Any:
    """A redis-py client for ``config``: a ``redis.Redis``, or a ``redis.cluster.RedisCluster``
    when the server is a Redis Cluster (``config.cluster``: ``auto`` asks the server once per
    process with ``INFO cluster``; ``yes``/``no`` say it; see :mod:`engine.cluster`).

    Retries are left to the caller (the worker loop and the console poller back off on their
    own), so a failing command fails fast instead of hiding an outage; a cluster client still
    follows MOVED and ASK redirections itself, and refreshes its map of the slots once after a
    node fails. ``socket_timeout`` bounds every command on every node, so a blocking command
    (BLPOP) must ask for less than it.

    No command is sent for ``cluster=no``. Otherwise the server is asked now; when it cannot be
    reached, the client returned connects (and asks) at its first command instead, raising the
    connection error while Redis stays away, like a plain client.
    """
    kwargs = _client_kwargs(config, socket_timeout, connect_timeout)
    if config.cluster == "no":
        return _single(config, kwargs)
    try:
        return _open(config, kwargs)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        return cluster.DeferredClient(lambda: _open(config, kwargs), config.display)


def _single(config: RedisConfig, kwargs: dict) -> redis.Redis:
    try:
        return redis.Redis.from_url(config.server_url, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid Redis URL {config.display}: {redact(exc)}") from None


def _open(config: RedisConfig, kwargs: dict) -> Any:
    """The client, after asking the server whether it is a cluster if ``config`` does not say;
    raises a connection error when it cannot be reached."""
    mode = config.cluster if config.cluster != "auto" else cluster.detected(config)
    if mode == "no":
        return _single(config, kwargs)
    if mode == "auto":
        client = _single(config, kwargs)
        try:
            enabled = cluster.cluster_enabled(client)
        except Exception:
            client.close()
            raise
        cluster.remember(config, enabled)
        if not enabled:
            return client  # its connection is open already: no second one
        client.close()
    return cluster.cluster_client(config, kwargs)


def describe_error(exc: BaseException) -> str:
    """A one-line description of a Redis error, safe to show (no password)."""
    name = type(exc).__name__
    text = redact(str(exc)) or name
    return f"{name}: {text}" if not text.startswith(name) else text


def redis_problem(exc: BaseException, where: str = "") -> str | None:
    """A clear sentence (never a password) for a failure that came from Redis, or None if
    ``exc`` is not one; ``where`` is the server's display form. The CLI prints it instead of a
    traceback.

    ``Redis at URL refused the credentials: ...``, ``... is unavailable: ...`` (with a hint for
    TLS failures), ``... did not allow this: ...`` (an ACL user), ``... answered with an error: ...``.
    """
    text = describe_error(exc)
    server = f"Redis at {where}" if where else "Redis"
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return (f"{server} refused the credentials: {text} (check the user name and password: in the URL, "
                "REDIS_PASSWORD or --redis-password-file)")
    if isinstance(exc, getattr(redis.exceptions, "MovedError", ())):
        return (f"{server} is a Redis Cluster node that does not hold this key (MOVED {text}): this client "
                "was told the server is not a cluster; remove cluster=no from the URL or set "
                "SYMPHONY_REDIS_CLUSTER=auto (docs/cluster.md)")
    if "CROSSSLOT" in text or isinstance(exc, getattr(redis.exceptions, "CrossSlotTransactionError", ())):
        return (f"{server} refused a step whose keys are in different hash slots of the Redis Cluster: {text} "
                "(a key layout from an older Symphony, or a bug; docs/cluster.md)")
    if isinstance(exc, redis.exceptions.NoPermissionError) or "NOPERM" in text:
        return (f"{server} did not allow this: {text} (the Redis user is not allowed to do this; "
                "docs/security.md has the rules of Symphony's ACL users)")
    if is_unavailable(exc):
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
            return (f"{server} is unavailable: {text} (the TLS connection failed: check the CA file, "
                    "--redis-ca-file or REDIS_CA_FILE, and that the server's certificate names this host)")
        return f"{server} is unavailable: {text}"
    if isinstance(exc, redis.RedisError):
        return f"{server} answered with an error: {text}"
    return None


def ping(client: redis.Redis, config: RedisConfig) -> tuple[int, ...]:
    """Check that Redis answers and is recent enough; return its version tuple."""
    try:
        info = client.info("server")
    except redis.AuthenticationError as exc:
        raise CredentialsRefused(f"Redis at {config.display} refused the credentials: {describe_error(exc)}") from None
    except redis.ResponseError as exc:
        # an ACL user without INFO (the worker user): assume a modern server. redis-py strips the
        # NOPERM prefix and raises NoPermissionError, so test the class, not only the text
        if isinstance(exc, redis.exceptions.NoPermissionError) or "NOPERM" in str(exc):
            return MIN_SERVER
        raise RedisUnavailable(f"Redis at {config.display}: {describe_error(exc)}") from None
    except Exception as exc:
        if is_unavailable(exc):
            raise RedisUnavailable(f"cannot reach Redis at {config.display}: {describe_error(exc)}") from None
        raise
    version = tuple(int(p) for p in str(info.get("redis_version", "0.0.0")).split(".")[:3] if p.isdigit())
    if version and version < MIN_SERVER:
        raise ConfigError(
            f"Redis at {config.display} is version {'.'.join(map(str, version))}; Symphony needs 6.2 or newer")
    return version


class Backoff:
    """Exponential backoff with jitter for reconnect loops: 0.2 s doubling up to ``maximum``."""

    def __init__(self, initial: float = 0.2, maximum: float = 10.0):
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * (2 ** self.failures))
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)

    def sleep(self, stop=None) -> None:
        """Sleep for the next delay; return early if ``stop`` (an Event) is set."""
        delay = self.next_delay()
        if stop is not None:
            stop.wait(delay)
        else:
            time.sleep(delay)

    def reset(self) -> None:
        self.failures = 0
