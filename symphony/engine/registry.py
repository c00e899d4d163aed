"""The registry of sessions and pools, so nobody needs ``KEYS`` to find a queue.

``symphony:sessions`` maps each session to a small summary; ``symphony:session:<name>`` holds
its full definition (pipeline, data root, parameters) so any worker can run its stages;
``symphony:pools`` maps each pool to the roles it serves. ``symphony:epoch`` is bumped on every
change, after an entry naming the session in a capped change log (``Keys.registry_changes``), so
a worker re-reads only the sessions that changed (:mod:`.following`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any, Iterable

import redis

from symphony.spec import SessionRecord

from .errors import SessionConflict, UnknownSession
from .keys import Keys
from .messages import decode_task, dumps
from .outcomes import SessionState

EVENTS_MAXLEN = 2000
CHANGES_MAXLEN = 1000  # registry changes kept; a worker further behind re-reads everything


@dataclass(frozen=True)
class SessionSummary:
    """A session's entry in ``symphony:sessions``: what listing sessions needs, in one HGETALL."""

    name: str
    state: SessionState | str  # the stored state (ACTIVE or CANCELLED), or what an unknown value said
    pipeline: str
    stages: tuple[str, ...]
    pools: tuple[str, ...]
    created: float
    file: str
    items: int

    @classmethod
    def from_json(cls, name: str, raw: str) -> "SessionSummary":
        """The one parser of a summary; a value that is not one is an empty summary in state ``?``."""
        try:
            data = json.loads(raw)
        except (TypeError, ValueError):
            data = None
        if not isinstance(data, dict):
            data = {}
        return cls(name=name, state=SessionState.of(data.get("state", "?")), pipeline=str(data.get("pipeline", "?")),
                   stages=tuple(data.get("stages", ())), pools=tuple(data.get("pools", ())),
                   created=float(data.get("created", 0) or 0), file=str(data.get("file", "") or ""),
                   items=int(data.get("items", 0) or 0))

    @classmethod
    def of(cls, record: SessionRecord, state: SessionState, created: float, items: int) -> "SessionSummary":
        return cls(name=record.name, state=state, pipeline=record.pipeline.name, stages=record.pipeline.stage_names,
                   pools=tuple(s.pool for s in record.pipeline.stages), created=created, file=record.file, items=items)

    def with_state(self, state: SessionState) -> "SessionSummary":
        return replace(self, state=state)

    def to_json(self) -> str:
        return dumps({"state": str(self.state), "pipeline": self.pipeline, "stages": list(self.stages),
                      "pools": list(self.pools), "created": round(self.created, 3), "file": self.file,
                      "items": self.items})


def add_event(client: redis.Redis | redis.client.Pipeline, keys: Keys, kind: str, message: str, **fields: Any) -> None:
    data = {"kind": kind, "msg": message, **{k: str(v) for k, v in fields.items() if v is not None}}
    client.xadd(keys.events, data, maxlen=EVENTS_MAXLEN, approximate=True)


def _registration(existing: dict[str, str], record: SessionRecord, fingerprint: str, resume: bool) -> str:
    """How a session file meets what Redis holds under its name: ``new``, ``same`` or
    ``resumed``; a :class:`SessionConflict` for a different definition or a cancelled session."""
    if not existing:
        return "new"
    if existing.get("fingerprint") != fingerprint:
        raise SessionConflict(
            f"session {record.name!r} is already registered from {existing.get('file') or 'another file'} "
            f"with a different definition (pipeline, root or params); pick another session name, "
            f"or remove the old one with 'symphony purge {record.name}'")
    if existing.get("state") == SessionState.CANCELLED:
        if not resume:
            raise SessionConflict(f"session {record.name!r} was cancelled; use --resume to run it again")
        return "resumed"
    return "same"


def _symphonys(raw: str | None, session: str, stage: str) -> bool:
    try:
        task = decode_task(raw or "")
    except Exception:  # noqa: BLE001 - not a task message: not ours
        return False
    return task.session == session and task.stage == stage


def foreign_queue(client: redis.Redis | redis.client.Pipeline, keys: Keys, session: str, stage: str,
                  adopt: bool = False) -> str | None:
    """The type of the key named like ``session``'s queue for ``stage`` when it is another
    tool's, or None when it is free or provably Symphony's: a list whose first and last messages
    are this session's tasks at this stage (what is left when Redis lost the session's
    registration but kept a queue; repair and ``initialize --resume`` take it back). With
    ``adopt``, any list is taken over."""
    qkey = keys.queue(stage, session)
    kind = client.type(qkey)
    if kind == "none" or (kind == "list" and adopt):
        return None
    if kind == "list" and _symphonys(client.lindex(qkey, 0), session, stage) \
            and _symphonys(client.lindex(qkey, -1), session, stage):
        return None
    return kind


def _check_queue_names(pipe: redis.client.Pipeline, keys: Keys, record: SessionRecord, adopt_queues: bool) -> None:
    """A new session's queue names must be free: a key of that name is another tool's."""
    for stage in record.pipeline.stage_names:
        qkey = keys.queue(stage, record.name)
        kind = foreign_queue(pipe, keys, record.name, stage, adopt_queues)
        if kind is not None:
            raise SessionConflict(
                f"queue name clash: key {qkey!r} already exists ({kind}) but no Symphony session "
                f"{record.name!r} is registered; another tool uses this name. Rename the session"
                + (", or pass --adopt to take over the list" if kind == "list" else ""))


def _merged_pools(pools_raw: dict[str, str], record: SessionRecord) -> dict[str, list[str]]:
    """Every pool's roles with this session's added."""
    merged: dict[str, list[str]] = {p: json.loads(v) for p, v in pools_raw.items()}
    for pool, roles in record.pipeline.pools().items():
        merged[pool] = sorted(set(merged.get(pool, [])) | set(roles))
    return merged


def _publish(pipe: redis.client.Pipeline, keys: Keys, session: str, change: str) -> None:
    """Queue the fleet-slot record of a registry change: an entry in the capped change log, then
    the epoch bump that tells every worker at its next heartbeat (both in the caller's MULTI)."""
    pipe.xadd(keys.registry_changes, {"s": session, "c": change}, maxlen=CHANGES_MAXLEN, approximate=True)
    pipe.incr(keys.epoch)


def note_change(client: redis.Redis, keys: Keys, session: str, change: str) -> None:
    """Tell the workers that ``session``'s registration changed (``purged``, ...): one fleet-slot MULTI."""
    with client.pipeline(transaction=True) as pipe:
        _publish(pipe, keys, session, change)
        pipe.execute()


def register_session(client: redis.Redis, keys: Keys, record: SessionRecord, *, items: int = 0,
                     resume: bool = False, adopt_queues: bool = False) -> str:
    """Register (or confirm) a session. Returns ``"new"``, ``"same"`` or ``"resumed"``.

    A session name already registered with a different definition is a
    :class:`SessionConflict`; so is a queue key of this session that exists but was not made
    by Symphony (another tool's key of the same name), unless ``adopt_queues``.

    Two ordered steps, each atomic within one hash slot (so it holds on a Redis Cluster too):
    the session's own hash (its slot), then the fleet's index (summary, pools, change log,
    epoch). Both are idempotent: a crash between them leaves a session that is defined but not
    listed, which registering it again (``initialize``, ``repair``) completes.
    """
    outcome, created, items_total = _write_definition(client, keys, record, items=items, resume=resume,
                                                      adopt_queues=adopt_queues)
    _index_session(client, keys, record, outcome, created, items_total)
    return outcome


def _write_definition(client: redis.Redis, keys: Keys, record: SessionRecord, *, items: int, resume: bool,
                      adopt_queues: bool) -> tuple[str, float, int]:
    """The session-slot step of registering: (outcome, created, items)."""
    fingerprint = record.fingerprint()
    session_key = keys.session(record.name)
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(session_key)
                existing = pipe.hgetall(session_key)
                outcome = _registration(existing, record, fingerprint, resume)
                if outcome == "new":
                    _check_queue_names(pipe, keys, record, adopt_queues)
                created = float(existing.get("created", 0) or 0) or time.time()
                items_total = max(items, int(existing.get("items", 0) or 0))
                pipe.multi()
                pipe.hset(session_key, mapping={
                    "state": SessionState.ACTIVE, "spec": dumps(record.to_dict()), "fingerprint": fingerprint,
                    "file": record.file, "created": f"{created:.3f}", "items": items_total})
                pipe.execute()
                return outcome, created, items_total
            except redis.WatchError:
                continue


def _index_session(client: redis.Redis, keys: Keys, record: SessionRecord, outcome: str, created: float,
                   items: int) -> None:
    """The fleet-slot step of registering: the summary, the pools, the event, the change, the epoch."""
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(keys.pools)
                merged = _merged_pools(pipe.hgetall(keys.pools), record)
                listed = pipe.hexists(keys.sessions, record.name)
                pipe.multi()
                pipe.hset(keys.sessions, record.name,
                          SessionSummary.of(record, SessionState.ACTIVE, created, items).to_json())
                pipe.hset(keys.pools, mapping={p: dumps(r) for p, r in merged.items()})
                if outcome != "same" or not listed:  # not listed: completing a registration a crash cut short
                    add_event(pipe, keys, "session", f"session {record.name} {'resumed' if outcome == 'resumed' else 'registered'}",
                              session=record.name)
                _publish(pipe, keys, record.name, "resumed" if outcome == "resumed" else "registered")
                pipe.execute()
                return
            except redis.WatchError:
                continue


def update_definition(client: redis.Redis, keys: Keys, record: SessionRecord, *, expected_fingerprint: str) -> None:
    """Replace the registered definition of ``record.name`` by ``record``, keeping its state,
    creation time and item count, and bump the epoch so that workers read it again.

    The caller checked that the change is compatible (:func:`engine.definition.compare_definitions`).
    Raises :class:`UnknownSession` if the session is not registered, and :class:`SessionConflict`
    if its definition is no longer ``expected_fingerprint`` (someone changed it meanwhile).
    Like registering: the session's hash first, then the fleet's index; a crash between is
    completed by initializing the updated file again.
    """
    session_key = keys.session(record.name)
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(session_key)
                existing = pipe.hgetall(session_key)
                if not existing:
                    raise UnknownSession(f"no session named {record.name!r} is registered")
                if existing.get("fingerprint") != expected_fingerprint:
                    raise SessionConflict(f"the definition of session {record.name!r} changed while this command "
                                          "ran; nothing was updated: run it again to see the new differences")
                state = existing.get("state") or SessionState.ACTIVE
                created = float(existing.get("created") or time.time())
                items = int(existing.get("items") or 0)
                pipe.multi()
                pipe.hset(session_key, mapping={"spec": dumps(record.to_dict()), "fingerprint": record.fingerprint(),
                                                "file": record.file})
                pipe.execute()
                break
            except redis.WatchError:
                continue
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(keys.sessions, record.name, SessionSummary.of(record, state, created, items).to_json())
        add_event(pipe, keys, "session", f"session {record.name}: definition updated from {record.file}",
                  session=record.name)
        _publish(pipe, keys, record.name, "updated")
        pipe.execute()


def set_session_state(client: redis.Redis, keys: Keys, name: str, state: SessionState) -> None:
    """The session's own hash first (what claims read), then the fleet's summary and change; setting
    the same state again completes a change a crash cut short."""
    raw = client.hget(keys.sessions, name)
    if raw is None:
        raise UnknownSession(f"no session named {name!r} is registered")
    summary = SessionSummary.from_json(name, raw).with_state(state)
    client.hset(keys.session(name), "state", str(state))
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(keys.sessions, name, summary.to_json())
        _publish(pipe, keys, name, str(state))
        pipe.execute()


def load_record(client: redis.Redis, keys: Keys, name: str) -> tuple[SessionRecord, SessionState | str]:
    """The stored definition of session ``name`` and its state."""
    spec, state = client.hmget(keys.session(name), "spec", "state")
    if spec is None:
        raise UnknownSession(f"no session named {name!r} is registered")
    return _record_of(spec), SessionState.of(state or "?")


def _record_of(spec: str) -> SessionRecord:
    """A session's definition from its stored ``spec`` field."""
    return SessionRecord.from_dict(json.loads(spec))


def list_sessions(client: redis.Redis, keys: Keys) -> list[SessionSummary]:
    raw = client.hgetall(keys.sessions)
    return sorted((SessionSummary.from_json(n, v) for n, v in raw.items()), key=lambda s: s.name)


def pools(client: redis.Redis, keys: Keys) -> dict[str, list[str]]:
    return {p: json.loads(v) for p, v in client.hgetall(keys.pools).items()}


def roles_for(pools_map: dict[str, list[str]], pool: str | None = None,
              roles: Iterable[str] | None = None, aliases: dict[str, str] | None = None) -> list[str]:
    """The roles a worker serves: explicit roles (aliases resolved), a pool's roles, or all."""
    if roles:
        aliases = aliases or {}
        return sorted({aliases.get(r, r) for r in roles})
    if pool:
        return sorted(pools_map.get(pool, []))
    return sorted({r for rs in pools_map.values() for r in rs})


def aliases(client: redis.Redis, keys: Keys) -> dict[str, str]:
    """Alias -> canonical stage name, over every registered session's pipeline (read only when
    needed): each pipeline resolves its own aliases (``Pipeline.canonical``)."""
    out: dict[str, str] = {}
    names = client.hkeys(keys.sessions)
    if not names:
        return out
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hget(keys.session(name), "spec")
        specs = pipe.execute()
    for spec in specs:
        if not spec:
            continue
        pipeline = _record_of(spec).pipeline
        out.update({alias: pipeline.canonical(alias) for stage in pipeline.stages for alias in stage.aliases})
    return out
