"""Each job's own key/values (seed 004's ``<prefix>:<key>``), scoped to one session, stage and item.

A handler gets a :class:`JobStore` as ``ctx.kv``. Values live in the hash
``symphony:job:<session>:<stage>:<item>`` with a TTL (7 days by default); the job's id is added
to ``symphony:jobs:<session>`` (for ``purge --keys``) and recorded as the session's last job
(for ``symphony jobs SESSION --last``).
"""
from __future__ import annotations

import json
from typing import Any

import redis

from .keys import Keys

DEFAULT_TTL_S = 7 * 24 * 3600


def _encode(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


class JobStore:
    def __init__(self, client: redis.Redis, keys: Keys, session: str, stage: str, item: str,
                 ttl_s: int = DEFAULT_TTL_S):
        self.client, self.keys = client, keys
        self.session, self.stage, self.item = session, stage, item
        self.key = keys.job(session, stage, item)
        self.job_id = f"{stage}:{item}"
        self.ttl_s = ttl_s

    def _touch(self, pipe) -> None:
        pipe.expire(self.key, self.ttl_s)
        pipe.sadd(self.keys.jobs(self.session), self.job_id)
        pipe.set(self.keys.last_job(self.session), self.job_id)

    def set(self, name: str, value: Any) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, name, _encode(value))
            self._touch(pipe)
            pipe.execute()

    def update(self, values: dict[str, Any]) -> None:
        if not values:
            return
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, mapping={k: _encode(v) for k, v in values.items()})
            self._touch(pipe)
            pipe.execute()

    def incr(self, name: str, amount: int = 1) -> int:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hincrby(self.key, name, amount)
            self._touch(pipe)
            return int(pipe.execute()[0])

    def get(self, name: str, default: Any = None) -> Any:
        value = self.client.hget(self.key, name)
        return default if value is None else value

    def all(self) -> dict[str, str]:
        return self.client.hgetall(self.key)


def read_job(client: redis.Redis, keys: Keys, session: str, job_id: str) -> dict[str, str]:
    stage, _, item = job_id.partition(":")
    return client.hgetall(keys.job(session, stage, item))


def last_job(client: redis.Redis, keys: Keys, session: str) -> tuple[str | None, dict[str, str]]:
    job_id = client.get(keys.last_job(session))
    if not job_id:
        return None, {}
    return job_id, read_job(client, keys, session, job_id)
