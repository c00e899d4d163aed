"""Task messages: the compact JSON that sits in the queues (never pickle).

A message in queue ``rvm:block7`` looks like ``{"i":"row-0001","s":"block7","t":"rvm","a":0}``:

* ``i`` item id, ``s`` session, ``t`` stage (the queue's role), ``a`` attempts already made;
* ``o`` the item's ordinal: its place in the session file (0 for the first item), set at enqueue
  and carried unchanged through every stage, so a completion is counted once per item and stage
  (the stage's done bitmap, see docs/keys.md); messages queued by older versions have none;
* ``m`` (optional) the item's metadata from the session file, e.g. ``{"vines": 12}``;
* ``e`` instead of ``m`` when task data is encrypted: the metadata sealed with AES-GCM
  (:mod:`engine.crypto`), made once at enqueue and carried unchanged through every stage;
* ``h`` (optional, retries only) the host its last attempt failed on: another host runs it when
  one is completing tasks (see ``run_here`` in :mod:`engine.outcomes`).

The fields are short because a million queued tasks must fit in a small Redis; they are
still readable with ``LRANGE``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from symphony.spec import is_name, role_problem

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=False).encode


class InvalidMessage(ValueError):
    """A queue held something that is not a Symphony task message."""


@dataclass(frozen=True)
class Task:
    session: str
    stage: str
    item: str
    attempt: int = 0  # attempts already made before this one
    meta: dict[str, Any] | None = field(default=None, compare=False)
    sealed: str | None = field(default=None, compare=False)  # the metadata, encrypted (engine.crypto)
    ordinal: int | None = None  # the item's place in the session file (None: queued by an older version)
    failed_on: str | None = field(default=None, compare=False)  # the host its last attempt failed on

    def encode(self) -> str:
        data: dict[str, Any] = {"i": self.item, "s": self.session, "t": self.stage, "a": self.attempt}
        if self.ordinal is not None:
            data["o"] = self.ordinal
        if self.failed_on:
            data["h"] = self.failed_on
        if self.sealed is not None:
            data["e"] = self.sealed
        elif self.meta:
            data["m"] = self.meta
        return _dumps(data)

    def next_attempt(self, failed_on: str | None = None) -> "Task":
        """The message of its next attempt (``failed_on``: the host this one failed on)."""
        return Task(self.session, self.stage, self.item, self.attempt + 1, self.meta, self.sealed, self.ordinal,
                    failed_on or None)

    def at_stage(self, stage: str) -> "Task":
        return Task(self.session, stage, self.item, 0, self.meta, self.sealed, self.ordinal)

    @property
    def job_id(self) -> str:
        return f"{self.stage}:{self.item}"


@dataclass(frozen=True)
class Sealed:
    """Metadata that is already sealed (the ``e`` token of an earlier message of the same item):
    given as an item's metadata to :func:`engine.enqueue.enqueue`, it is carried over unchanged
    (``retry`` puts a failed task back without needing, or losing, its encrypted data)."""

    token: str


def encode_task(session: str, stage: str, item: str, attempt: int = 0, meta: dict | Sealed | None = None,
                sealer=None, ordinal: int | None = None) -> str:
    """The message for a task. Names are validated (no quotes, backslashes or control characters:
    see symphony.spec.names), so they are written without escaping; metadata goes through JSON. With a
    ``sealer`` (:class:`engine.crypto.Sealer`) the metadata, even none, is sealed into ``e`` and
    bound to the session and item. ``ordinal``: the item's place in the session file."""
    head = '{"i":"' + item + '","s":"' + session + '","t":"' + stage + '","a":' + str(int(attempt))
    if ordinal is not None:
        head += ',"o":' + str(int(ordinal))
    if isinstance(meta, Sealed):
        return head + ',"e":' + _dumps(meta.token) + "}"
    if sealer is not None:
        from .crypto import task_aad

        return head + ',"e":"' + sealer.seal_json(meta or {}, task_aad(session, item)) + '"}'
    if meta:
        return head + ',"m":' + _dumps(meta) + "}"
    return head + "}"


def decode_task(raw: str | bytes) -> Task:
    """Parse a queue message; raise :class:`InvalidMessage` with the reason if it is not one.

    Nothing a message holds makes this raise anything else: bytes that are not UTF-8 (as read
    from Redis they are lone surrogates, see engine.connection), nesting deeper than the parser
    goes, or any other JSON are each a reason."""
    data = _parse(raw)
    if not isinstance(data, dict):
        raise InvalidMessage("not a JSON object")
    item, session, stage, attempt = data.get("i"), data.get("s"), data.get("t"), data.get("a", 0)
    _check_names(item, session, stage)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise InvalidMessage("field 'a' (attempts) must be a non-negative integer")
    ordinal = data.get("o")
    if ordinal is not None and (not isinstance(ordinal, int) or isinstance(ordinal, bool) or ordinal < 0):
        raise InvalidMessage("field 'o' (ordinal) must be a non-negative integer")
    meta, sealed, host = data.get("m"), data.get("e"), data.get("h")
    _check_payload(meta, sealed, host)
    return Task(session, stage, item, attempt, meta, sealed, ordinal, host or None)


def _parse(raw: str | bytes) -> Any:
    """The JSON of a message; :class:`InvalidMessage` for anything that is not UTF-8 JSON."""
    if isinstance(raw, str) and not raw.isascii():
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = raw[exc.start].encode("utf-8", "surrogateescape")
            raise InvalidMessage(f"not valid UTF-8 (byte 0x{bad.hex()} at position {exc.start})") from None
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidMessage("nested too deeply to be a task message") from None
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at position {exc.start})") from None
    except (ValueError, TypeError) as exc:
        raise InvalidMessage(f"not valid JSON ({exc.__class__.__name__}: {exc})") from None


def _check_names(item: Any, session: Any, stage: Any) -> None:
    if not is_name(item):
        raise InvalidMessage("field 'i' (item) is missing or not a valid name")
    if not is_name(session):
        raise InvalidMessage("field 's' (session) is missing or not a valid name")
    if role_problem(stage):
        raise InvalidMessage("field 't' (stage) is missing or not a valid stage name")


def _check_payload(meta: Any, sealed: Any, host: Any) -> None:
    if meta is not None and not isinstance(meta, dict):
        raise InvalidMessage("field 'm' (metadata) must be an object")
    if sealed is not None and (not isinstance(sealed, str) or meta is not None):
        raise InvalidMessage("field 'e' (encrypted metadata) must be a string, and comes without 'm'")
    if host is not None and (not isinstance(host, str) or len(host) > 255):
        raise InvalidMessage("field 'h' (the host it failed on) must be a string of at most 255 characters")


def wire(raw: str) -> str | bytes:
    """A message as read from Redis, ready to be sent back (LREM, LPOS) byte for byte: as it is,
    unless it holds bytes that were not UTF-8 (lone surrogates), which go back as those bytes."""
    if raw.isascii():
        return raw
    try:
        raw.encode("utf-8")
        return raw
    except UnicodeEncodeError:
        return raw.encode("utf-8", "surrogateescape")


def printable(raw: str | bytes, limit: int = 2000) -> str:
    """A message as text that is safe to store and show: bytes that are not UTF-8 as ``\\xNN``,
    cut to ``limit`` characters (a planted message may be huge)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    text = raw[:limit * 4].decode("utf-8", "backslashreplace")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(raw)} bytes)"


def dumps(data: Any) -> str:
    """Compact JSON used for every record Symphony stores."""
    return _dumps(data)
