"""Cooldowns that outlive a process: the last action's time on a target, kept in Redis.

``symphony scale vmss --once`` run from cron is a new process each time; the time of its last
scale action must still hold back the next one. :func:`start_cooldown` writes the Redis server's
time (ms) under the target's key with the cooldown as its TTL; the target cools while the key
lives (:func:`cooldown_left`). Server time: the clocks of the machines running it do not matter.
"""
from __future__ import annotations

import redis

from .keys import Keys


def start_cooldown(client: redis.Redis, keys: Keys, target: str, seconds: float) -> None:
    """Record an action on ``target`` now; nothing is recorded for a cooldown of 0."""
    ttl_ms = int(round(seconds * 1000))
    if ttl_ms <= 0:
        return
    now_s, micros = client.time()
    client.set(keys.scale_cooldown(target), int(now_s) * 1000 + int(micros) // 1000, px=ttl_ms)


def cooldown_left(client: redis.Redis, keys: Keys, target: str) -> float:
    """Seconds until ``target`` may act again (0: now)."""
    ttl_ms = client.pttl(keys.scale_cooldown(target))
    return max(0, int(ttl_ms or 0)) / 1000.0
