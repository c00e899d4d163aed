"""A worker's view of the session registry, kept up to date incrementally.

Every registry change (a session registered, resumed, updated, cancelled, purged) adds an entry
naming the session to a capped stream (``Keys.registry_changes``) and then bumps the epoch, in
one fleet-slot MULTI (:mod:`.registry`). A worker sees the epoch in its heartbeat's reply; when
it moved, :meth:`RegistryFollower.follow` reads the entries after the last one it saw (one
``XRANGE`` from that entry on, so it also learns that nothing between was trimmed away) and
forgets only those sessions' cached definitions and aliases. A worker that fell further behind
than the cap, a new one, or one whose Redis lost its data re-reads everything (lazily: a
definition when a task of its session arrives, the aliases when a ``--roles`` worker next needs
them).

So a change costs the fleet one small read per worker, plus the definitions of the sessions that
changed, instead of every worker re-reading every session's definition.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import redis

from .keys import Keys
from .records import RecordCache
from .registry import CHANGES_MAXLEN, _record_of

STATE_ONLY = ("cancelled", "active")  # changes that leave the pools and the pipelines as they were
READ_LIMIT = CHANGES_MAXLEN + 200  # an approximate trim keeps up to about a node more than the cap


@dataclass(frozen=True)
class RegistryChanges:
    """What one :meth:`RegistryFollower.follow` learned: the sessions that changed (and how), or
    ``everything`` when the whole registry was read again."""

    sessions: frozenset[str] = frozenset()
    everything: bool = False
    kinds: tuple[tuple[str, str], ...] = ()  # (session, change), in order

    def touches(self, session: str) -> bool:
        return self.everything or session in self.sessions

    @property
    def roles_may_change(self) -> bool:
        """Whether the pools or the stages' aliases may differ now: not for a session that was only
        cancelled or set active again (its state changed, not its pipeline)."""
        return self.everything or any(change not in STATE_ONLY for _, change in self.kinds)


class RegistryFollower:
    def __init__(self, client: redis.Redis, keys: Keys, records: RecordCache):
        self.client, self.keys, self.records = client, keys, records
        self._last: str | None = None  # the id of the last change seen; "" when the log was empty then
        self._aliases: dict[str, dict[str, str]] | None = None  # session -> alias -> stage; None: not read
        self._lock = threading.Lock()

    def follow(self, *, lost: bool = False) -> RegistryChanges:
        """Catch up with the registry's changes (``lost``: Redis no longer knew this worker, so its
        data may be gone and the change log proves nothing: read everything again)."""
        last = self._last
        if lost or last is None:
            return self._everything()
        if last:
            entries = self.client.xrange(self.keys.registry_changes, min=last, count=READ_LIMIT)
            if not entries or entries[0][0] != last:  # the last one seen was trimmed away: too far behind
                return self._everything()
            entries = entries[1:]
        else:
            entries = self.client.xrange(self.keys.registry_changes, count=READ_LIMIT)
            if len(entries) >= CHANGES_MAXLEN:  # the log may have been trimmed since it was empty
                return self._everything()
        if len(entries) >= READ_LIMIT - 1:
            return self._everything()
        kinds = tuple((str(fields.get("s", "")), str(fields.get("c", ""))) for _, fields in entries)
        sessions = frozenset(s for s, _ in kinds if s)
        if entries:
            self._last = entries[-1][0]
        self.records.forget(sessions)
        # aliases: read again for a new or changed pipeline, dropped for a purged session, kept
        # for a change of state only
        last_change = dict(kinds)
        self._reread_aliases(frozenset(s for s in sessions if last_change[s] not in STATE_ONLY + ("purged",)),
                             dropped=frozenset(s for s in sessions if last_change[s] == "purged"))
        return RegistryChanges(sessions=sessions, kinds=kinds)

    def _everything(self) -> RegistryChanges:
        newest = self.client.xrevrange(self.keys.registry_changes, count=1)  # before reading anything else
        self._last = newest[0][0] if newest else ""
        self.records.clear()
        with self._lock:
            self._aliases = None
        return RegistryChanges(everything=True)

    # --- aliases (what a --roles worker resolves its roles with) ------------------------------------
    def aliases(self) -> dict[str, str]:
        """Alias -> canonical stage name over every registered session's pipeline, from the cache
        (read in full the first time, then only for sessions that changed)."""
        with self._lock:
            cached = self._aliases
        if cached is None:
            names = self.client.hkeys(self.keys.sessions)
            cached = self._read_aliases(names)
            with self._lock:
                self._aliases = cached
        out: dict[str, str] = {}
        for session in sorted(cached):
            out.update(cached[session])
        return out

    def _reread_aliases(self, sessions: frozenset[str], dropped: frozenset[str] = frozenset()) -> None:
        with self._lock:
            if self._aliases is None or not (sessions or dropped):
                return
        fresh = self._read_aliases(sorted(sessions)) if sessions else {}
        with self._lock:
            if self._aliases is None:
                return
            for session in sessions | dropped:
                self._aliases.pop(session, None)
            self._aliases.update(fresh)

    def _read_aliases(self, names) -> dict[str, dict[str, str]]:
        names = list(names)
        if not names:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(self.keys.session(name), "spec")
            specs = pipe.execute()
        out: dict[str, dict[str, str]] = {}
        for name, spec in zip(names, specs):
            if not spec:
                continue
            pipeline = _record_of(spec).pipeline
            out[name] = {alias: pipeline.canonical(alias) for stage in pipeline.stages for alias in stage.aliases}
        return out
