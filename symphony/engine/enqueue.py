"""Putting items into a stage's queue: pipelined, deduplicated, atomic per batch.

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
    script_keys = [keys.queue(stage, session), keys.live(session), keys.stats(session), keys.ready(stage),
                   keys.bell(stage), keys.session(session), keys.outcomes(session)]
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
        for count, reply in zip(pending, replies):
            added, second = reply[0], reply[1]
            if added == -1:
                raise SessionConflict(f"session {session!r} is {second}; nothing was enqueued from this batch on")
            got += EnqueueResult(int(added), int(second))
            if progress:
                progress(count)
        pending.clear()
        pipe = client.pipeline(transaction=False)
        return got

    args: list[str] = [stage, session, str(BELL_MAX)]
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
            args, count = [stage, session, str(BELL_MAX)], 0
            if len(pending) >= CALLS_PER_ROUND_TRIP:
                total += flush()
    if count:
        queued.append(script.queue(pipe, script_keys, args))
        pending.append(count)
    total += flush()
    return total
