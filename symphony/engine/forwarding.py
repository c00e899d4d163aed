"""Reading the results stream through a consumer group, for forwarders that hand every record on.

The results stream (``Keys.results``) holds one entry per completed, failed, timed-out or
cancelled task, capped at about 10,000 entries. A forwarder reads it as one consumer of its own
group: first the entries it read before but never acknowledged (what it was delivering when it
crashed), then new ones; it acknowledges an entry only once its sink has it, so every entry is
delivered at least once, in order, and a restart resumes exactly where it stopped. The group
itself lives inside the stream (no key of its own) and holds at most one batch of unacknowledged
entries per consumer.

The cap still applies: a forwarder stopped for long can find that entries it never read were
trimmed; :meth:`ResultsReader.trimmed_unread` says how many, so it can say so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import redis

FIELDS = {"s": "session", "t": "stage", "i": "item", "st": "state", "a": "attempts", "ms": "duration_ms",
          "w": "worker", "e": "error"}


@dataclass(frozen=True)
class ResultRecord:
    id: str  # the stream entry's id (unique, increasing)
    fields: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id}
        for short, name in FIELDS.items():
            value: Any = self.fields.get(short, "")
            if name in ("attempts", "duration_ms"):
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    pass
            data[name] = value
        return data


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


class ResultsReader:
    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str):
        self.client, self.stream, self.group, self.consumer = client, stream, group, consumer

    def ensure_group(self, start: str = "0") -> bool:
        """Create the group (reading from ``start``: ``0`` every entry the stream holds, ``$`` only
        new ones) unless it exists; True if it was created."""
        try:
            self.client.xgroup_create(self.stream, self.group, id=start, mkstream=True)
            return True
        except redis.ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise

    def _read(self, start: str, count: int, block_ms: int | None) -> list[ResultRecord]:
        answer = self.client.xreadgroup(self.group, self.consumer, {self.stream: start}, count=count, block=block_ms)
        records: list[ResultRecord] = []
        for _, entries in answer or []:
            records += [ResultRecord(entry_id, fields or {}) for entry_id, fields in entries if fields is not None]
        return records

    def pending(self, count: int) -> list[ResultRecord]:
        """Entries this consumer read before and never acknowledged (oldest first)."""
        return self._read("0", count, None)

    def new(self, count: int, block_ms: int | None = None) -> list[ResultRecord]:
        """Entries no consumer of the group has read yet (waits up to ``block_ms`` for one)."""
        return self._read(">", count, block_ms)

    def ack(self, ids: list[str]) -> None:
        if ids:
            self.client.xack(self.stream, self.group, *ids)

    def pending_ids(self) -> list[str]:
        """The ids of every entry read and not acknowledged, by any consumer of the group."""
        found = []
        start = "-"
        while True:
            batch = self.client.xpending_range(self.stream, self.group, min=start, max="+", count=1000)
            if not batch:
                return found
            found += [entry["message_id"] for entry in batch]
            last = _id(batch[-1]["message_id"])
            start = f"{last[0]}-{last[1] + 1}"

    def trimmed_unread(self) -> int:
        """How many entries were trimmed from the stream before this group read them (0 if none)."""
        try:
            stream = self.client.xinfo_stream(self.stream)
            groups = self.client.xinfo_groups(self.stream)
        except redis.ResponseError:
            return 0
        group = next((g for g in groups if g.get("name") == self.group), None)
        if group is None:
            return 0
        first = stream.get("first-entry")
        first_id = str(first[0]) if first else str(stream.get("recorded-first-entry-id") or "")
        last = str(group.get("last-delivered-id") or "0-0")
        if not first_id or _id(first_id) <= _id(last):
            return 0  # the oldest entry left was read already: nothing unread is gone
        added, read = stream.get("entries-added"), group.get("entries-read")
        if added is None or read is None:
            return 0  # a server that cannot count them (before Redis 7)
        return max(0, int(added) - int(read) - int(stream.get("length") or 0))
