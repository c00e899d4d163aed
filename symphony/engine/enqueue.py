"""Putting items into a stage's queue: pipelined, deduplicated, atomic per batch.

Each batch is one session-slot step (``enqueue.lua``); after the replies, one fleet-slot step
names the session in the role's ready set and rings its bell (symphony/engine/fleet.py).

An item that is already queued, retrying or in flight (at any stage) is skipped, so running
``initialize`` or ``repair`` twice never duplicates work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import redis

from .errors import SessionConflict
from .keys import Keys
from .messages import Sealed, encode_task
from .fleet import FleetOps
from .scripts import ensure_loaded, execute

BELL_MAX = 64
BATCH_ITEMS = 2000  # items per script call (each call is atomic)
CALLS_PER_ROUND_TRIP = 8


@dataclass(frozen=True)
class EnqueueResult:
    added: int = 0
    skipped: int = 0

    def __add__(self, other: "EnqueueResult") -> "EnqueueResult":
        return EnqueueResult(self.added + other.added, self.skipped + other.skipped)


# (id, metadata) or (id, metadata, ordinal): the ordinal is the item's place in the session file
# (engine.progress), which lets its completions be counted once; without one they count as before
ItemLike = tuple[str, Mapping[str, Any] | None] | tuple[str, Mapping[str, Any] | None, int | None]


def enqueue(client: redis.Redis, keys: Keys, scripts, session: str, stage: str, items: Iterable[ItemLike], *,
            progress: Callable[[int], None] | None = None, batch: int = BATCH_ITEMS, sealer=None) -> EnqueueResult:
    """Enqueue ``items`` (id, metadata[, ordinal]) for ``stage`` of ``session``; returns counts.
    With a ``sealer`` (:class:`engine.crypto.Sealer`) every message's metadata is encrypted."""
    script = scripts.enqueue
    ensure_loaded(client)
    queued: list = []
    script_keys = [keys.queue(stage, session), keys.live(session), keys.stats(session), keys.session(session),
                   keys.outcomes(session)]
    total = EnqueueResult()
    pending: list[int] = []
    pipe = client.pipeline(transaction=False)

    def flush() -> EnqueueResult:
        nonlocal pipe
        got = EnqueueResult()
        if not pending:
            return got
        if len(queued) == 1:  # one call (a few items): no pipeline's machinery
            q = queued[0]
            replies = [script(client, q.keys, q.args)]
            pipe.reset()
        else:
            replies = execute(client, pipe, queued)
        queued.clear()
        conflict = None
        for count, reply in zip(pending, replies):
            added, second = reply[0], reply[1]
            if added == -1:
                conflict = SessionConflict(f"session {session!r} is {second}; nothing was enqueued from this batch on")
                break
            got += EnqueueResult(int(added), int(second))
            if progress:
                progress(count)
        pending.clear()
        pipe = client.pipeline(transaction=False)
        if got.added:  # the fleet side, after the queue has the work: its ready set, its bell
            fleet = FleetOps()
            fleet.work(keys, stage, session, ring=got.added, bell_max=BELL_MAX)
            fleet.call(client)
        if conflict is not None:
            raise conflict
        return got

    args: list[str] = [stage, session]
    count = 0
    for entry in items:
        item, meta = entry[0], entry[1]
        args.append(item)
        if not isinstance(meta, Sealed):
            meta = dict(meta) if meta else None
        args.append(encode_task(session, stage, item, 0, meta, sealer=sealer,
                                ordinal=entry[2] if len(entry) > 2 else None))
        count += 1
        if count >= batch:
            queued.append(script.queue(pipe, script_keys, args))
            pending.append(count)
            args, count = [stage, session], 0
            if len(pending) >= CALLS_PER_ROUND_TRIP:
                total += flush()
    if count:
        queued.append(script.queue(pipe, script_keys, args))
        pending.append(count)
    total += flush()
    return total
