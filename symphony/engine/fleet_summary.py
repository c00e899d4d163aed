"""The fleet's aggregates: workers by state, per pool and per host, with CPU and memory figures.

``summarize`` counts a list of workers at once (the full snapshot's); ``_Counts`` keeps the counts
of a :class:`~symphony.engine.fleet_view.FleetReader`'s cache up to date one worker at a time, and
``_figures`` computes the CPU and memory figures over that cache (once per sweep).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

TROUBLE = ("dead", "stale")


@dataclass(frozen=True)
class GroupSummary:
    """The workers of one pool or one host."""

    name: str
    workers: int
    states: tuple[tuple[str, int], ...]  # (state, count), most urgent first
    cpu_mean: float | None = None  # of the workers' own CPU percent
    cpu_max: float | None = None
    memory_mean: float | None = None
    memory_max: float | None = None
    host_cpu: float | None = None  # mean over the group's hosts of each host's CPU percent
    hosts: int = 0

    def count(self, state: str) -> int:
        return dict(self.states).get(state, 0)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "workers": self.workers, "states": dict(self.states),
                "cpu_mean": self.cpu_mean, "cpu_max": self.cpu_max, "memory_mean": self.memory_mean,
                "memory_max": self.memory_max, "host_cpu": self.host_cpu, "hosts": self.hosts}


@dataclass(frozen=True)
class FleetSummary:
    """Every registered worker, counted: by state, per pool and per host; and which page of the
    worker table the snapshot's ``workers`` are (all of them: ``offset`` 0, ``limit`` None)."""

    registered: int
    states: tuple[tuple[str, int], ...] = ()
    pools: tuple[GroupSummary, ...] = ()
    hosts: tuple[GroupSummary, ...] = ()
    offset: int = 0
    limit: int | None = None
    known: int = 0  # workers whose description the reader has (registered ones not yet read: the rest)

    def count(self, state: str) -> int:
        return dict(self.states).get(state, 0)

    @property
    def alive(self) -> int:
        return self.registered - self.count("dead") - self.count("stale")

    def to_dict(self) -> dict[str, Any]:
        return {"registered": self.registered, "states": dict(self.states), "offset": self.offset,
                "limit": self.limit, "pools": [p.to_dict() for p in self.pools],
                "hosts": [h.to_dict() for h in self.hosts]}


STATE_ORDER = {"dead": 0, "stale": 1, "quarantined": 2, "stopping": 3, "draining": 3, "drained": 3, "busy": 4,
               "idle": 5}


def _ordered_states(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items(), key=lambda i: (STATE_ORDER.get(i[0], 9), i[0])))


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return round(sum(values) / len(values), 2), max(values)


class _Group:
    __slots__ = ("states", "cpu", "mem", "host_cpu")

    def __init__(self) -> None:
        self.states: dict[str, int] = {}
        self.cpu: list[float] = []
        self.mem: list[float] = []
        self.host_cpu: dict[str, float] = {}

    def add(self, state: str, host: str, cpu: float | None, mem: float | None, host_cpu: float | None) -> None:
        self.states[state] = self.states.get(state, 0) + 1
        if state == "dead":
            return
        if cpu is not None:
            self.cpu.append(cpu)
        if mem is not None:
            self.mem.append(mem)
        if host_cpu is not None:
            previous = self.host_cpu.get(host)
            self.host_cpu[host] = host_cpu if previous is None else max(previous, host_cpu)

    def summary(self, name: str, hosts: int) -> GroupSummary:
        cpu_mean, cpu_max = _stats(self.cpu)
        mem_mean, mem_max = _stats(self.mem)
        host_values = list(self.host_cpu.values())
        return GroupSummary(name, sum(self.states.values()), _ordered_states(self.states), cpu_mean, cpu_max,
                            mem_mean, mem_max, round(sum(host_values) / len(host_values), 2) if host_values else None,
                            hosts)


def summarize(rows: Iterable[tuple[str, str, str, float | None, float | None, float | None]], registered: int,
              offset: int = 0, limit: int | None = None, by_host: bool = True) -> FleetSummary:
    """The aggregates of ``rows`` (pool, host, state, cpu, memory, host cpu: one per worker);
    without ``by_host`` the per-host ones are left out (a reader computes those once per sweep)."""
    totals: dict[str, int] = {}
    pools: dict[str, _Group] = {}
    hosts: dict[str, _Group] = {}
    pool_hosts: dict[str, set[str]] = {}
    known = 0
    for pool, host, state, cpu, mem, host_cpu in rows:
        known += 1
        totals[state] = totals.get(state, 0) + 1
        pool = pool or "(no pool)"
        group = pools.get(pool)
        if group is None:
            group = pools[pool] = _Group()
            pool_hosts[pool] = set()
        group.add(state, host, cpu, mem, host_cpu)
        if state != "dead":
            pool_hosts[pool].add(host)
        if not by_host:
            continue
        group = hosts.get(host)
        if group is None:
            group = hosts[host] = _Group()
        group.add(state, host, cpu, mem, host_cpu)
    if registered > known:  # registered but not read yet (a reader's first sweep is under way)
        totals["unknown"] = totals.get("unknown", 0) + registered - known
    return FleetSummary(registered=registered, states=_ordered_states(totals),
                        pools=tuple(g.summary(p, len(pool_hosts[p])) for p, g in sorted(pools.items())),
                        hosts=tuple(g.summary(h, 1) for h, g in sorted(hosts.items())),
                        offset=offset, limit=limit, known=known)


class _Counts:
    """Every cached worker's state, counted in total, per pool and per host, kept up to date as
    single workers change (so a poll costs what it touched, not the fleet's size)."""

    def __init__(self) -> None:
        self.of: dict[str, tuple[str, str, str]] = {}  # worker -> (pool, host, state) counted
        self.totals: dict[str, int] = {}
        self.pools: dict[str, dict[str, int]] = {}
        self.hosts: dict[str, dict[str, int]] = {}
        self.troubled: set[str] = set()  # counted dead or stale
        self.dirty_hosts: set[str] = set()
        self.hosts_changed = True  # a host appeared or went

    def set(self, w: str, pool: str, host: str, state: str) -> None:
        key = (pool or "(no pool)", host, state)
        old = self.of.get(w)
        if old == key:
            return
        if old is not None:
            self._add(old, -1)
        self.of[w] = key
        self._add(key, 1)
        if state in TROUBLE:
            self.troubled.add(w)
        else:
            self.troubled.discard(w)

    def drop(self, w: str) -> None:
        old = self.of.pop(w, None)
        if old is not None:
            self._add(old, -1)
        self.troubled.discard(w)

    def _add(self, key: tuple[str, str, str], n: int) -> None:
        pool, host, state = key
        self.dirty_hosts.add(host)
        for table, name in ((self.totals, None), (self.pools, pool), (self.hosts, host)):
            states = table if name is None else table.setdefault(name, {})
            if name is not None and not states and table is self.hosts:
                self.hosts_changed = True
            count = states.get(state, 0) + n
            if count:
                states[state] = count
            else:
                states.pop(state, None)
            if name is not None and not states:
                del table[name]
                if table is self.hosts:
                    self.hosts_changed = True


Figures = tuple  # (cpu mean, cpu max, memory mean, memory max, host cpu, hosts) of a group


def _figures(entries: dict[str, Any]) -> tuple[dict[str, Figures], dict[str, Figures]]:
    """CPU and memory per pool and per host (live workers), over the whole cache: once per sweep."""
    pools: dict[str, _Group] = {}
    hosts: dict[str, _Group] = {}
    pool_hosts: dict[str, set[str]] = {}
    for e in entries.values():
        if e.derived == "dead":
            continue
        pool = e.pool or "(no pool)"
        group = pools.get(pool)
        if group is None:
            group = pools[pool] = _Group()
            pool_hosts[pool] = set()
        group.add("", e.host, e.cpu, e.mem, e.host_cpu)
        pool_hosts[pool].add(e.host)
        group = hosts.get(e.host)
        if group is None:
            group = hosts[e.host] = _Group()
        group.add("", e.host, e.cpu, e.mem, e.host_cpu)

    def figures(group: _Group, n_hosts: int) -> Figures:
        summary = group.summary("", n_hosts)
        return (summary.cpu_mean, summary.cpu_max, summary.memory_mean, summary.memory_max, summary.host_cpu,
                n_hosts)

    return ({p: figures(g, len(pool_hosts[p])) for p, g in pools.items()},
            {h: figures(g, 1) for h, g in hosts.items()})
