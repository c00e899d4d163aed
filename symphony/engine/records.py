"""A small cache of session definitions; the registry's change log says which to forget (engine/following.py)."""
from __future__ import annotations

import threading

import redis

from symphony.spec import SessionRecord

from .errors import UnknownSession
from .keys import Keys
from .registry import load_record


class RecordCache:
    def __init__(self, client: redis.Redis, keys: Keys):
        self.client, self.keys = client, keys
        self._records: dict[str, SessionRecord] = {}
        self._epoch: str | None = None
        self._lock = threading.Lock()
        self._generation = 0  # moves whenever definitions are forgotten: a read begun before is not kept

    def get(self, session: str) -> SessionRecord | None:
        """The session's definition, or None if it is not registered."""
        with self._lock:
            hit = self._records.get(session)
            generation = self._generation
        if hit is not None:
            return hit
        try:
            record, _ = load_record(self.client, self.keys, session)
        except UnknownSession:
            return None
        with self._lock:
            if generation == self._generation:
                self._records[session] = record
        return record

    def clear(self) -> None:
        """Forget every cached definition (Redis may have lost its data: the epoch proves nothing)."""
        with self._lock:
            self._records.clear()
            self._generation += 1

    def forget(self, sessions) -> None:
        """Forget the cached definitions of ``sessions`` (they changed: read again when next needed)."""
        with self._lock:
            for session in sessions:
                self._records.pop(session, None)
            self._generation += 1

    def observe_epoch(self, epoch: str) -> bool:
        """Forget cached definitions if the registry changed; True if it did."""
        if epoch == self._epoch:
            return False
        with self._lock:
            self._epoch = epoch
            self._records.clear()
            self._generation += 1
        return True
