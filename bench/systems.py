"""The systems compared in the throughput case: how to fill each one's queue and start its workers.

Every system gets the same number of worker processes, each running one task at a time, and
the same task (``bench.noop.bump``: one INCR). Peers run with their documented defaults
otherwise; what each default means for reliability is noted in ``docs/benchmarks.md``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from .common import tool

STAGE_NAMES = ("b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8")


@dataclass(frozen=True)
class System:
    name: str
    requires: tuple[str, ...]
    prefill: Callable[[str, int, int, str], None]  # url, items, stages, work dir
    commands: Callable[[str, int, int, float], list[list[str]]]  # url, processes, stages, heartbeat -> argv list
    prior_rate: float  # tasks/s guess, to size the first round's queue (later rounds use the measurement)
    note: str = ""

    def missing(self) -> str | None:
        if self.name == "symphony-base" and not os.path.isdir(os.environ.get("BENCH_BASELINE", "")):
            return "BENCH_BASELINE is not a checkout of Symphony to compare with"
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install -e '.[bench]')"
        return None


# --- Symphony ------------------------------------------------------------------------------------
def write_session(workdir: str, name: str, items: int, stages: int, *, handler: str = "bench.noop:symphony_task",
                  timeout: float = 60.0, isolation: str | None = None) -> Path:
    base = Path(workdir)
    (base / "pipelines").mkdir(parents=True, exist_ok=True)
    defaults: dict = {"timeout": timeout, "max_attempts": 3}
    if isolation:
        defaults["isolation"] = isolation
    pipeline = {"pipeline": f"bench{stages}", "defaults": defaults,
                "stages": [{"name": STAGE_NAMES[i], "pool": "bench", "handler": handler} for i in range(stages)]}
    (base / "pipelines" / f"bench{stages}.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    session = {"session": name, "pipeline": f"pipelines/bench{stages}.yaml", "root": "data",
               "items_from": {"range": {"prefix": "i", "start": 0, "count": items, "width": 7}}}
    path = base / f"{name}.yaml"
    path.write_text(yaml.safe_dump(session, sort_keys=False))
    return path


def symphony_prefill(url: str, items: int, stages: int, workdir: str) -> None:
    from symphony.engine import Engine, initialize_session, load_session

    spec = load_session(write_session(workdir, "bench", items, stages))
    with Engine.from_url(url) as engine:
        initialize_session(engine, spec)


def symphony_inline_prefill(url: str, items: int, stages: int, workdir: str) -> None:
    from symphony.engine import Engine, initialize_session, load_session

    spec = load_session(write_session(workdir, "bench", items, stages, isolation="inline"))
    with Engine.from_url(url) as engine:
        initialize_session(engine, spec)


def symphony_commands(url: str, processes: int, stages: int, heartbeat: float) -> list[list[str]]:
    return [[sys.executable, "-m", "symphony.workers", "--roles", ",".join(STAGE_NAMES[:stages]), "-n", str(processes),
             "--heartbeat", str(heartbeat), "--log-level", "WARNING", "--name", "bench"]]


def symphony_prefetch_off_commands(url: str, processes: int, stages: int, heartbeat: float) -> list[list[str]]:
    return [[*symphony_commands(url, processes, stages, heartbeat)[0], "--prefetch", "1"]]


def baseline_prefix() -> list[str]:
    """Run a command with another checkout of Symphony first on the path (``$BENCH_BASELINE``)."""
    return ["env", f"PYTHONPATH={os.environ.get('BENCH_BASELINE', '')}"]


def symphony_base_commands(url: str, processes: int, stages: int, heartbeat: float) -> list[list[str]]:
    return [[*baseline_prefix(), *symphony_commands(url, processes, stages, heartbeat)[0]]]


# --- Symphony steered: many sessions at mixed priorities, a concurrency limit on one stage ---------
STEERED_SESSIONS = 1000
STEERED_PRIORITIES = (0, 5, 10)
STEERED_MIN_PER_SESSION = 200  # items per session at least (docs/benchmarks.md: why)


def steered_limit(stages: int) -> tuple[str, int]:
    """The stage with a fleet-wide max_running, and the limit: the last stage, 64 tasks (above
    what the benchmark's workers hold at once, so it is counted and checked in every claim
    without being the bottleneck; the tests show it holding when it binds)."""
    return STAGE_NAMES[stages - 1], 64


def steered_prefill(url: str, items: int, stages: int, workdir: str) -> None:
    """``items`` tasks per stage (at least 200 a session) spread over 1,000 sessions, priorities 0,
    5 and 10 in turn; a smoke run's few items fill fewer sessions."""
    import dataclasses

    from symphony.engine import Engine, initialize_session, load_session

    limited, limit = steered_limit(stages)
    base = Path(workdir)
    (base / "pipelines").mkdir(parents=True, exist_ok=True)
    pipeline = {"pipeline": f"steered{stages}", "defaults": {"timeout": 60.0, "max_attempts": 3},
                "stages": [{"name": STAGE_NAMES[i], "pool": "bench", "handler": "bench.noop:symphony_task",
                            **({"max_running": limit} if STAGE_NAMES[i] == limited else {})} for i in range(stages)]}
    (base / "pipelines" / f"steered{stages}.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    smoke = items < STEERED_SESSIONS
    per = max(1 if smoke else STEERED_MIN_PER_SESSION, -(-items // STEERED_SESSIONS))
    left = items if smoke else per * STEERED_SESSIONS
    with Engine.from_url(url) as engine:
        for n in range(STEERED_SESSIONS):
            count = min(per, left)
            if count <= 0:
                break
            left -= count
            name = f"steered{n:04d}"
            session = {"session": name, "pipeline": f"pipelines/steered{stages}.yaml", "root": "data",
                       "priority": STEERED_PRIORITIES[n % len(STEERED_PRIORITIES)],
                       "items_from": {"range": {"prefix": "i", "start": 0, "count": count, "width": 7}}}
            path = base / f"{name}.yaml"
            path.write_text(yaml.safe_dump(session, sort_keys=False))
            initialize_session(engine, load_session(path))


# --- the minimal reliable loop ----------------------------------------------------------------------
def minimal_prefill(url: str, items: int, stages: int, workdir: str) -> None:
    import redis

    from .peers import minimal

    with redis.Redis.from_url(url) as client:
        minimal.prefill(client, items, stages)


def minimal_commands(url: str, processes: int, stages: int, heartbeat: float) -> list[list[str]]:
    return [[sys.executable, "-m", "bench.peers.minimal", "--url", url, "--stages", str(stages)]
            for _ in range(processes)]


def minimal_batched_commands(url: str, processes: int, stages: int, heartbeat: float) -> list[list[str]]:
    return [[sys.executable, "-m", "bench.peers.minimal_batched", "--url", url, "--stages", str(stages)]
            for _ in range(processes)]


# --- peers --------------------------------------------------------------------------------------------
def _prefill(module: str) -> Callable[[str, int, int, str], None]:
    def run(url: str, items: int, stages: int, workdir: str) -> None:
        importlib.import_module(f"bench.peers.{module}").prefill(url, items, stages)

    return run



def rq_commands(url: str, processes: int, stages: int, heartbeat: float) -> list[list[str]]:
    return [[tool("rq"), "worker", "--url", url, "-w", "rq.worker.SimpleWorker", "--logging_level", "WARNING",
             "--disable-job-desc-logging", "-q", "bench"] for _ in range(processes)]


def celery_commands(url: str, processes: int, stages: int, heartbeat: float) -> list[list[str]]:
    return [[tool("celery"), "-A", "bench.peers.celery_app", "worker", "-c", str(processes), "-P", "prefork",
             "-l", "WARNING"]]


def dramatiq_commands(url: str, processes: int, stages: int, heartbeat: float) -> list[list[str]]:
    return [[tool("dramatiq"), "bench.peers.dramatiq_app", "--processes", str(processes), "--threads", "8"]]


def huey_commands(url: str, processes: int, stages: int, heartbeat: float) -> list[list[str]]:
    return [[tool("huey_consumer"), "bench.peers.huey_app.huey", "-w", str(processes), "-k", "process", "-q"]]


SYMPHONY = System("symphony", ("symphony",), symphony_prefill, symphony_commands, 8000.0,
                  "symphony-worker, full accounting, heartbeats on")
SYMPHONY1 = System("symphony-p1", ("symphony",), symphony_prefill, symphony_prefetch_off_commands, 3000.0,
                   "symphony-worker --prefetch 1 (one task per claim)")
SYMPHONY_INLINE = System("symphony-inline", ("symphony",), symphony_inline_prefill, symphony_commands, 10000.0,
                         "symphony-worker, the stages' Python handlers run inline (isolation: inline)")
SYMPHONY_BASE = System("symphony-base", ("symphony",), symphony_prefill, symphony_base_commands, 8000.0,
                       "symphony-worker of the checkout in $BENCH_BASELINE (before/after in the same rounds)")
STEERED = System("steered", ("symphony",), steered_prefill, symphony_commands, 8000.0,
                 "symphony-worker over 1,000 sessions at priorities 0/5/10, max_running 64 on the last stage")
MINIMAL = System("minimal", ("redis",), minimal_prefill, minimal_commands, 6000.0,
                 "BLMOVE + INCR + LREM, hand-written")
MINIMAL32 = System("minimal32", ("redis",), minimal_prefill, minimal_batched_commands, 10000.0,
                   "Lua claim of 32 + INCR each + LREM/next claim in one MULTI, hand-written")
RQ = System("rq", ("rq",), _prefill("rq_app"), rq_commands, 800.0, "rq worker -w SimpleWorker, one per process")
CELERY = System("celery", ("celery",), _prefill("celery_app"), celery_commands, 1500.0,
                "celery worker -P prefork -c N, defaults")
DRAMATIQ = System("dramatiq", ("dramatiq",), _prefill("dramatiq_app"), dramatiq_commands, 1500.0,
                  "dramatiq --processes N (its default 8 threads each)")
HUEY = System("huey", ("huey",), _prefill("huey_app"), huey_commands, 1500.0, "huey_consumer -k process -w N")

ALL = (SYMPHONY, SYMPHONY1, SYMPHONY_INLINE, SYMPHONY_BASE, STEERED, MINIMAL, MINIMAL32, RQ, CELERY, DRAMATIQ, HUEY)
BY_NAME = {s.name: s for s in ALL}
