"""Hosts that fail everything: each worker process reports its host's failed attempts and
completions (``host_health.lua``); a host whose attempts keep failing while other hosts complete
tasks is quarantined for a while. The policy (how many failures, for how long, when a retry goes
elsewhere) is in :mod:`engine.outcomes`; this module only keeps the record in Redis.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis

from .keys import Keys
from .outcomes import HEALTHY_RATIO, HOST_FAILURE_STREAK, HOST_PEER_WINDOW_S, QUARANTINE_S
from .registry import EVENTS_MAXLEN
from .scripts import scripts


@dataclass(frozen=True)
class HostHealth:
    host: str
    streak: int  # failed attempts since its last completion
    quarantined_until_ms: int  # server ms; 0 when it is not quarantined
    healthy_peers: int  # other hosts that completed tasks recently and are not quarantined
    now_ms: int

    @property
    def quarantined_s(self) -> float:
        """Seconds of quarantine left (0: none)."""
        return max(0.0, (self.quarantined_until_ms - self.now_ms) / 1000) if self.quarantined_until_ms else 0.0


def report_host(client: redis.Redis, keys: Keys, host: str, stage: str, failed: int = 0, completed: int = 0, *,
                peers: bool = True) -> HostHealth:
    """Record ``failed`` attempts and ``completed`` tasks of ``host`` at ``stage`` (both may be 0:
    just read). ``peers``: count the other hosts healthy at that stage (always after failures; a
    report of completions alone need not). Its ``healthy_peers`` is 0 when not counted."""
    streak, until, count, now = scripts().host_health(
        client, (keys.host_fails(host), keys.host_rates, keys.hosts_quarantined, keys.events),
        (host, stage, int(failed), int(completed), HOST_FAILURE_STREAK, int(QUARANTINE_S * 1000),
         int(HOST_PEER_WINDOW_S * 1000), EVENTS_MAXLEN, HEALTHY_RATIO, "1" if peers or failed else "0"))
    peers_counted = count
    return HostHealth(host, int(streak), int(until), int(peers_counted), int(now))


def quarantined_hosts(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Hosts in quarantine now: host -> server ms it ends."""
    sec, usec = client.time()
    now = sec * 1000 + usec // 1000
    return {h: int(s) for h, s in client.zrangebyscore(keys.hosts_quarantined, now, "+inf", withscores=True)}
