"""Each job's own key/values (a namespace of its own), scoped to one session, stage and item.

A handler gets a :class:`JobStore` as ``ctx.kv``. Values live in the hash
``symphony:job:<session>:<stage>:<item>`` with a TTL (7 days by default); the job's id is added
to ``symphony:jobs:<session>`` (for ``purge --keys``) and recorded as the session's last job
(for ``symphony jobs SESSION --last``). A job run inside a batch job (a SLURM job) is also listed
under that batch job's *origin* (``symphony:origin:<origin>``, e.g. ``slurm-<cluster>-1234_0``),
so its key/values can be found by SLURM job id (``symphony slurm jobs 1234_0``). The job's own keys
are in its session's hash slot and change in one transaction; the origin's list is the fleet's
(docs/keys.md, *Hash slots*) and is written right after.

With a :class:`engine.crypto.Sealer`, every value is stored encrypted (AES-GCM), bound to its
job and field name, and opened on read; a wrong key or a changed value raises
:class:`engine.crypto.CryptoError`. Field names stay readable. ``incr`` then becomes a
read-modify-write under ``WATCH`` (a sealed counter cannot be incremented in place).
"""
from __future__ import annotations

import json
import time
from typing import Any

import redis

from .crypto import CryptoError, kv_aad
from .keys import Keys

DEFAULT_TTL_S = 7 * 24 * 3600
ORIGIN_MAX = 10_000  # jobs listed per origin (the newest are kept)


def _encode(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _seal(sealer, key: str, name: str, value: Any) -> str:
    text = _encode(value)
    return text if sealer is None else sealer.seal(text.encode("utf-8"), kv_aad(key, name))


def _open(sealer, key: str, name: str, stored: str | None) -> str | None:
    if stored is None or sealer is None:
        return stored
    try:
        return sealer.open(stored, kv_aad(key, name)).decode("utf-8")
    except CryptoError as exc:
        raise CryptoError(f"job value {key} [{name}]: {exc}") from None


class JobStore:
    def __init__(self, client: redis.Redis, keys: Keys, session: str, stage: str, item: str,
                 ttl_s: int = DEFAULT_TTL_S, sealer=None, origin: str | None = None):
        self.client, self.keys = client, keys
        self.origin = origin  # the batch job this runs in (see the module's docstring), or None
        self.session, self.stage, self.item = session, stage, item
        self.key = keys.job(session, stage, item)
        self.job_id = f"{stage}:{item}"
        self.ttl_s = ttl_s
        self.sealer = sealer

    def _touch(self, pipe) -> None:
        pipe.expire(self.key, self.ttl_s)
        pipe.sadd(self.keys.jobs(self.session), self.job_id)
        pipe.set(self.keys.last_job(self.session), self.job_id)

    def _listed(self) -> None:
        """List the job under its origin (the fleet's slot), after its own keys changed."""
        if not self.origin:
            return
        key = self.keys.origin_jobs(self.origin)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {f"{self.session}/{self.job_id}": int(time.time() * 1000)})
            pipe.zremrangebyrank(key, 0, -(ORIGIN_MAX + 1))
            pipe.expire(key, self.ttl_s)
            pipe.execute()

    def set(self, name: str, value: Any) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, name, _seal(self.sealer, self.key, name, value))
            self._touch(pipe)
            pipe.execute()
        self._listed()

    def update(self, values: dict[str, Any]) -> None:
        if not values:
            return
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, mapping={k: _seal(self.sealer, self.key, k, v) for k, v in values.items()})
            self._touch(pipe)
            pipe.execute()
        self._listed()

    def incr(self, name: str, amount: int = 1) -> int:
        if self.sealer is None:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hincrby(self.key, name, amount)
                self._touch(pipe)
                got = int(pipe.execute()[0])
            self._listed()
            return got
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(self.key)
                    current = _open(self.sealer, self.key, name, pipe.hget(self.key, name))
                    value = int(current or 0) + amount
                    pipe.multi()
                    pipe.hset(self.key, name, _seal(self.sealer, self.key, name, str(value)))
                    self._touch(pipe)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        self._listed()
        return value

    def get(self, name: str, default: Any = None) -> Any:
        value = _open(self.sealer, self.key, name, self.client.hget(self.key, name))
        return default if value is None else value

    def all(self) -> dict[str, str]:
        return {k: _open(self.sealer, self.key, k, v) for k, v in self.client.hgetall(self.key).items()}


def read_job(client: redis.Redis, keys: Keys, session: str, job_id: str, sealer=None) -> dict[str, str]:
    stage, _, item = job_id.partition(":")
    key = keys.job(session, stage, item)
    return {k: _open(sealer, key, k, v) for k, v in client.hgetall(key).items()}


def last_job(client: redis.Redis, keys: Keys, session: str, sealer=None) -> tuple[str | None, dict[str, str]]:
    job_id = client.get(keys.last_job(session))
    if not job_id:
        return None, {}
    return job_id, read_job(client, keys, session, job_id, sealer=sealer)


def origin_jobs(client: redis.Redis, keys: Keys, origin: str, limit: int = 100) -> list[tuple[str, str]]:
    """The jobs (session, ``stage:item``) that wrote key/values from batch job ``origin``, newest first."""
    out = []
    for member in client.zrevrange(keys.origin_jobs(origin), 0, max(0, limit - 1)):
        session, _, job_id = member.partition("/")
        out.append((session, job_id))
    return out
