"""The Lua scripts behind every atomic step, loaded once per process.

Each script declares every key it touches in KEYS (none builds key names inside Lua). Scripts
run with EVALSHA; after a Redis restart (``NOSCRIPT``) they are loaded again and the call is
repeated. Unlike redis-py's ``Script`` in a pipeline, queuing a script here costs no extra
``SCRIPT EXISTS`` round trip.

On a Redis Cluster every primary has its own script cache: :func:`load_all` loads every script
on each primary (one pipelined round trip per primary, never a pipeline across nodes), and a
``NOSCRIPT`` (a master restarted, or a replica promoted by a failover) loads the script on the
node that serves the call's keys and repeats the call there.
"""
from __future__ import annotations

import hashlib
import weakref
from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

import redis
from redis.exceptions import NoScriptError

from . import cluster

NAMES = ("enqueue", "claim", "hints", "finish", "heartbeat", "lapsed", "reclaim", "forget", "cancel",
         "recount", "host_metrics", "read", "slurm", "host_health", "heal", "unclaim")


@lru_cache(maxsize=None)
def source(name: str) -> str:
    """The full text of script ``name`` (the shared prelude plus its own body)."""
    lua = resources.files("symphony.engine") / "lua"
    prelude = (lua / "_prelude.lua").read_text(encoding="utf-8")
    body = (lua / f"{name}.lua").read_text(encoding="utf-8")
    return prelude + "\n" + body


class Lua:
    """One script: call it directly, or queue it on a pipeline and settle the replies after."""

    def __init__(self, name: str):
        self.name = name
        self.text = source(name)
        self.sha = hashlib.sha1(self.text.encode()).hexdigest()

    def __call__(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Any], *,
                 readonly: bool = False) -> Any:
        command = "EVALSHA_RO" if readonly else "EVALSHA"
        try:
            return client.execute_command(command, self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.load(client, keys)
            return client.execute_command(command, self.sha, len(keys), *keys, *args)

    def load(self, client: Any, keys: Sequence[str] = ()) -> None:
        """Load this script where a call with ``keys`` runs: the server, or on a cluster the
        primary serving the keys' slot (every primary for a call without keys)."""
        if cluster.is_cluster(client) and keys:
            _name, node = cluster.node_for(client, keys[0])
            node.script_load(self.text)
        else:
            client.script_load(self.text)  # a cluster client sends SCRIPT LOAD to every primary

    def queue(self, pipe: redis.client.Pipeline, keys: Sequence[str], args: Sequence[Any], *,
              readonly: bool = False) -> "Queued":
        """Queue a call on ``pipe``. ``readonly`` sends ``EVALSHA_RO`` (Redis 7+): the server then
        refuses any write in the script, and a user with only read access to the keys may run it
        (plain ``EVALSHA`` needs read and write access to every key it declares)."""
        pipe.execute_command("EVALSHA_RO" if readonly else "EVALSHA", self.sha, len(keys), *keys, *args)
        return Queued(self, tuple(keys), tuple(args), readonly)


class Queued:
    __slots__ = ("lua", "keys", "args", "readonly")

    def __init__(self, lua: Lua, keys: tuple, args: tuple, readonly: bool = False):
        self.lua, self.keys, self.args, self.readonly = lua, keys, args, readonly


def load_all(client: redis.Redis) -> None:
    """Load every script into the server's cache (one round trip; on a cluster one per primary).

    Processes call this before their first pipeline of scripts: once all are cached, a
    pipeline either runs every script or (after a restart emptied the cache) none of them,
    so redoing the ``NOSCRIPT`` ones keeps their order (on a cluster: every script or none
    of those on one node).
    """
    lua = scripts()
    for _name, node in cluster.primaries(client):
        with node.pipeline(transaction=False) as pipe:
            for name in NAMES:
                pipe.script_load(getattr(lua, name).text)
            pipe.execute()


_loaded_pools: "weakref.WeakSet[Any]" = weakref.WeakSet()


def ensure_loaded(client: redis.Redis) -> None:
    """:func:`load_all` once per connection pool (per Redis client) of this process: after that,
    a script call is one ``EVALSHA``, and :func:`execute` reloads them all if the server lost
    its cache (a restart), so a pipeline still runs every script or none."""
    client = cluster.real(client)
    pool = getattr(client, "connection_pool", None) or client  # a cluster client: itself
    if pool in _loaded_pools:
        return
    load_all(client)
    _loaded_pools.add(pool)


def execute(client: redis.Redis, pipe: redis.client.Pipeline, queued: Sequence[Queued | None]) -> list[Any]:
    """Execute ``pipe`` and return its replies; a script reply that was ``NOSCRIPT`` is redone.

    ``queued`` has one entry per command on the pipeline (``None`` for plain commands). Any
    other error reply is raised, after every command ran.
    """
    replies = pipe.execute(raise_on_error=False)
    if any(isinstance(reply, NoScriptError) for reply in replies):
        load_all(client)
    for index, reply in enumerate(replies):
        if isinstance(reply, NoScriptError) and queued[index] is not None:
            q = queued[index]
            replies[index] = q.lua(client, q.keys, q.args, readonly=q.readonly)
        elif isinstance(reply, Exception):
            raise reply
    return replies


class Scripts:
    """Every script, by name: ``scripts.claim(client, keys, args)``."""

    def __init__(self) -> None:
        for name in NAMES:
            setattr(self, name, Lua(name))


@lru_cache(maxsize=1)
def scripts() -> Scripts:
    return Scripts()
