"""One Redis connection per worker process, shared by its threads in turn.

A worker process has three threads that talk to Redis: the loop (claims, reports, and the
blocking wait on the bells), the heart (heartbeats, reaping, the registry's changes, drains) and
the log shipper. With redis-py's ordinary pool each thread that finds the connection busy opens
another one, so an idle worker (the loop blocked in ``BLPOP``) held two: a fleet of 5,000
processes filled a default ``maxclients`` of 10,000. :class:`TurnTakingPool` hands its one
connection to one thread at a time, first come first served (a ticket lock: a thread that just
gave the connection back cannot take it again ahead of one already waiting), so the heart's beat
goes next after the loop's current command. The worker caps its blocking wait at the heart's
next beat (``symphony/workers/process.py``), so the heart never waits behind a long ``BLPOP``.

A thread that asks again while it already holds the connection (a command sent from inside a
``WATCH`` it holds) gets a second, short-lived connection rather than waiting for itself forever;
it is closed when given back.
"""
from __future__ import annotations

import threading

import redis


class _Turns:
    """A fair (FIFO) lock that knows its holder."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._serving = 0
        self._owner: int | None = None

    def take(self) -> bool:
        """Wait for this thread's turn; False (at once) if this thread already has it."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                return False
            ticket = self._next
            self._next += 1
            while self._serving != ticket:
                self._cond.wait()
            self._owner = me
            return True

    def give(self) -> None:
        """Give the turn back (only its holder can: a second give is nothing)."""
        with self._cond:
            if self._owner != threading.get_ident():
                return
            self._owner = None
            self._serving += 1
            self._cond.notify_all()

    def reset(self) -> None:
        """After a fork: no thread of the parent holds anything here."""
        self._cond = threading.Condition()
        self._next = self._serving = 0
        self._owner = None


class TurnTakingPool(redis.ConnectionPool):
    """A connection pool of one connection, taken by the process's threads in turn."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._turns = _Turns()
        self._nested: set[int] = set()  # ids of the extra connections of a thread that asked twice
        self._turn_pid = self.pid
        self._getting = threading.local()  # .first while in get_connection: whether it took the turn

    def get_connection(self, *args, **kwargs):  # noqa: D102 - redis-py's interface
        if self._turn_pid != self.pid or self._turn_pid is None:
            self._turns.reset()
        self._turn_pid = self.pid
        first = self._turns.take()
        self._getting.first = first  # redis-py gives back a connection that failed to connect itself
        try:
            connection = super().get_connection(*args, **kwargs)
        except BaseException:
            if first:
                self._turns.give()
            raise
        finally:
            self._getting.first = None
        if not first:
            self._nested.add(id(connection))
        return connection

    def release(self, connection) -> None:  # noqa: D102 - redis-py's interface
        first = getattr(self._getting, "first", None)
        if first is not None:  # from inside get_connection (it failed to connect): the turn is its to give
            if first:
                super().release(connection)
            else:
                self._drop(connection)
            return
        if id(connection) in self._nested:  # the extra connection: closed and dropped, never kept
            self._nested.discard(id(connection))
            self._drop(connection)
            return
        try:
            super().release(connection)
        finally:
            self._turns.give()


    def _drop(self, connection) -> None:
        with self._lock:
            self._in_use_connections.discard(connection)
            self._created_connections = max(0, self._created_connections - 1)
        connection.disconnect()


def share_one_connection(client):
    """``client`` with its pool replaced by a :class:`TurnTakingPool` of the same settings (before
    its first command; a connection opened already, to ask whether the server is a cluster, is
    closed). A cluster client (one connection per node already) is returned as it is; a client
    deferred because Redis was away (``engine.cluster.DeferredClient``) is shared once built."""
    from .cluster import DeferredClient

    if isinstance(client, DeferredClient):  # Redis was away at start: share the client built at first use
        build = client._build
        client._build = lambda: share_one_connection(build())
        return client
    if not isinstance(client, redis.Redis):
        return client
    old = client.connection_pool
    pool = TurnTakingPool(connection_class=old.connection_class, **old.connection_kwargs)
    client.connection_pool = pool
    old.disconnect()
    return client
