"""Progress that is true: an item is counted done at a stage once, whatever reruns, repairs or
duplicate executions happen.

Every item has an **ordinal**: its place in the session file (0 for the first; a duplicated id
keeps the place where it first appears). It travels in the task message (``"o"``) through every
stage. Per session and stage, Redis keeps a bitmap of the ordinals done there
(``symphony:done:<session>:<stage>``, one bit per item: 125 KB per stage per million items);
``finish.lua`` sets the item's bit and raises the stage's ``done`` counter only when the bit was
clear. Repair, which lists every stage's outputs anyway, writes the bits it can prove from disk
(``recount.lua``) and recounts, so the counts survive Redis losing them and drop again when
outputs are deleted. A stage's ``done`` never exceeds the session's items.
"""
from __future__ import annotations

from itertools import compress
from typing import Callable, Iterable, Sequence

import redis
from redis.client import NEVER_DECODE

from .keys import Keys
from .scripts import ensure_loaded, execute, scripts

_DIGITS = bytes.maketrans(b"\x00\x01", b"01")


def item_ordinals(ids: Sequence[str], distinct: bool = False) -> tuple[list[str], Sequence[int]]:
    """The distinct ids of a session's items in file order, and each one's ordinal (where it
    first appears). ``distinct``: the caller knows the ids are distinct (a generated range)."""
    if distinct:
        return ids if isinstance(ids, list) else list(ids), range(len(ids))
    unique = list(dict.fromkeys(ids))  # one C-level pass; ordinals are positions unless ids repeat
    if len(unique) == len(ids):
        return unique, range(len(ids))
    first: dict[str, int] = {}
    for position, item in enumerate(ids):
        first.setdefault(item, position)
    return list(first), list(first.values())


class Bitmaps:
    """Bitmaps over a session's ordinals, as Python integers (ordinal 0 is the highest bit) until
    they are encoded in Redis's bit order (``SETBIT`` offset 0 is the first byte's high bit)."""

    def __init__(self, ordinals: Sequence[int], size: int):
        self.ordinals, self.size = ordinals, size
        self.dense = isinstance(ordinals, range) and ordinals == range(size)

    def of(self, flags: Iterable[bool]) -> int:
        """The bitmap with the bits of the items whose flag is true (flags in the ordinals' order)."""
        if self.dense:  # one C-level pass: flags -> '0'/'1' digits -> an integer
            digits = bytes(flags).translate(_DIGITS)
            return int(digits, 2) if digits else 0
        cells = bytearray((self.size + 7) // 8)
        for ordinal in compress(self.ordinals, flags):
            cells[ordinal >> 3] |= 0x80 >> (ordinal & 7)
        return int.from_bytes(cells, "big") >> (len(cells) * 8 - self.size)

    def encode(self, value: int) -> bytes:
        """Redis's form of ``value`` (trailing zero bytes dropped)."""
        nbytes = (self.size + 7) // 8
        return (value << (nbytes * 8 - self.size)).to_bytes(nbytes, "big").rstrip(b"\x00")


def restore_done(client: redis.Redis, keys: Keys, session: str, stages: Sequence[str],
                 present: Callable[[int], Iterable[bool]], in_progress: Iterable[bool] | None,
                 ordinals: Sequence[int], size: int) -> dict[str, int]:
    """Write each stage's done bitmap from the disk and recount its ``done`` counter, in one round
    trip. ``present(k)`` gives, per item in the ordinals' order, whether stage ``k``'s output is
    on disk; ``in_progress`` (same order) marks the items queued or running, whose bits are kept
    as Redis has them. Returns each stage's done count."""
    bits = Bitmaps(ordinals, size)
    live = bits.of(in_progress) if in_progress is not None else 0
    live_arg = bits.encode(live) if live else b""
    lua = scripts().recount
    ensure_loaded(client)
    with client.pipeline(transaction=False) as pipe:
        queued = [lua.queue(pipe, (keys.done(session, stage), keys.scratch(session), keys.stats(session)),
                            (stage, bits.encode(bits.of(present(k)) & ~live), live_arg))
                  for k, stage in enumerate(stages)]
        counts = execute(client, pipe, queued)
    return {stage: int(n) for stage, n in zip(stages, counts)}


def done_bits(client: redis.Redis, keys: Keys, session: str, stage: str) -> str:
    """The stage's done bitmap as a string of ``0``/``1``, one character per ordinal (shorter
    than the session when its last items are not done; empty when none is)."""
    raw = client.execute_command("GET", keys.done(session, stage), **{NEVER_DECODE: []})
    if not raw:
        return ""
    return format(int.from_bytes(raw, "big"), f"0{len(raw) * 8}b")
