"""Chaos scenarios: a real 3-stage pipeline on a private Redis, with faults injected while it runs.

Used by ``tests/test_chaos.py`` (small, in every test run) and by ``bench/chaos.py`` (any size).
Every scenario ends with the same audit, from the files on disk and the accounting in Redis:

* **lost**: items whose final output does not exist once the run settled (must be 0);
* **duplicates**: executions beyond one per (stage, item), counted from the marker file every
  execution leaves (``ran-<stage>-<item>-<attempt>-<pid>``); at-least-once allows them, but
  each must trace to a fault that explains it (a worker process we killed); ``untraced`` counts
  the rest (must be 0);
* **double completions**: a stage counted completed more than once per item (must be 0);
* **done**: the items each stage counts done, once each (``<stage>|done``): every item once
  at the end, however many executions, kills, losses and repairs happened.

No sleep is used to wait for a state: the harness polls (``wait_until``). The only sleeps are
the faults themselves (how long Redis stays down) and the pace of the kill driver.
"""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import json
import os
import random
import signal
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import psutil
import redis

from symphony.engine import EmbeddedRedis, Engine, initialize_session, load_session, resolve_redis
from symphony.engine.scripts import load_all
from tests.helpers import WorkerRun, wait_until, worker_env, write_pipeline, write_session, held, dead_letters

STAGES = ("s1", "s2", "s3")
SESSION = "chaos"
HEARTBEAT = 0.5


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


@dataclass
class Figures:
    """What a scenario measured; printed as one line and recorded in docs/reliability.md."""

    scenario: str
    items: int
    processes: int
    tasks: int = 0  # items x stages
    faults: int = 0  # kills, restarts, pauses, client kills
    lost: int = 0
    duplicates: int = 0
    untraced: int = 0
    double_completions: int = 0
    failed: int = 0
    reclaimed: int = 0
    worker_restarts: int = 0
    recover_s: float | None = None  # worst time from a fault to recovery (see each scenario)
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict, repr=False)

    def line(self) -> str:
        recover = "-" if self.recover_s is None else f"{self.recover_s:.2f}s"
        return (f"[chaos] {self.scenario}: items={self.items} tasks={self.tasks} processes={self.processes} "
                f"faults={self.faults} lost={self.lost} duplicates={self.duplicates} untraced={self.untraced} "
                f"double_completions={self.double_completions} failed={self.failed} reclaimed={self.reclaimed} "
                f"worker_restarts={self.worker_restarts} recover={recover} elapsed={self.elapsed_s:.1f}s"
                + (f" ({'; '.join(self.notes)})" if self.notes else ""))

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("details", None)
        return data


class ChaosRun:
    """A private Redis, a 3-stage session of ``items`` items and a supervisor of ``processes``."""

    def __init__(self, workdir: Path, items: int, processes: int, *, seconds: float = 0.01,
                 max_attempts: int = 10, redis_args: tuple[str, ...] = (), appendonly: bool = True,
                 handler: str = "tests.handlers:chaos", timeout: float = 60.0, extra_items: list[str] = ()):
        self.workdir = workdir
        self.items = [f"it{n:05d}" for n in range(items)] + list(extra_items)
        self.processes = processes
        self.data = workdir / "data"
        self.markers = self.data / "markers"
        (workdir / "redis").mkdir(parents=True, exist_ok=True)
        self.server = EmbeddedRedis(directory=str(workdir / "redis"), appendonly=appendonly, args=redis_args)
        stages = [{"name": s, "pool": "chaos", "handler": handler, "output": "{root}/{session}/{stage}/{item}.json",
                   "timeout": timeout, "max_attempts": max_attempts, "retry_backoff": 0.05,
                   "params": {"seconds": seconds}} for s in STAGES]
        write_pipeline(workdir / "pipe.yaml", stages, name="chaos")
        self.session_file = write_session(workdir / "chaos.yaml", SESSION, "pipe.yaml", self.items,
                                          root=str(self.data))
        self.spec = load_session(self.session_file)
        self.worker: WorkerRun | None = None
        self.engine: Engine | None = None
        self.killed: dict[int, float] = {}  # pid -> when we killed it
        self.killed_with: dict[int, float] = {}  # the handler executors of those: they died with them
        self.killed_at_ms: dict[int, int] = {}  # pid -> server time just before the kill
        self.count_on_disk = False  # settled() counts final outputs instead of completions
        self.started = time.monotonic()

    # --- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> "ChaosRun":
        self.server.start()
        self.engine = Engine(resolve_redis(self.server.url))
        load_all(self.engine.client)
        initialize_session(self.engine, self.spec)
        return self

    def __exit__(self, *exc) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.engine is not None:
            self.engine.close()
        self.server.close()

    def client(self) -> redis.Redis:
        return self.server.client()

    def start_workers(self, *extra: str, env: dict[str, str] | None = None) -> WorkerRun:
        self.started = time.monotonic()
        self.worker = WorkerRun(self.server.url, "--pool", "chaos", "--processes", str(self.processes),
                                "--name", "chaos", *extra, log_dir=self.workdir, heartbeat=HEARTBEAT,
                                env=env or worker_env(self.server.url))
        wait_until(lambda: len(self.children()) == self.processes, timeout=60, message="every worker process to start")
        return self.worker

    def children(self) -> list[psutil.Process]:
        """The supervisor's worker processes (not multiprocessing's resource tracker, if any; a
        worker's handler executor is its own child, not the supervisor's)."""
        if self.worker is None:
            return []
        try:
            procs = psutil.Process(self.worker.process.pid).children()
        except psutil.NoSuchProcess:
            return []
        out = []
        for proc in procs:
            try:
                if "resource_tracker" not in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(proc)
            except psutil.Error:
                continue
        return out

    # --- progress -----------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        with self.client() as c:
            return {k: int(v) for k, v in c.hgetall(K.stats(SESSION)).items()}

    def completed(self, stage: str = STAGES[-1]) -> int:
        return self.stats().get(f"{stage}|completed", 0)

    def final_outputs(self) -> int:
        stage = self.spec.pipeline.stage(STAGES[-1])
        return sum(1 for i in self.items if os.path.exists(stage.output_path(self.spec.root, SESSION, i)))

    def settled(self) -> bool:
        """Every item finished the last stage or stopped (failed / timed out), nothing in flight.
        After Redis lost everything the counters start again: count the outputs on disk then."""
        s = self.stats()
        done = self.final_outputs() if self.count_on_disk else s.get(f"{STAGES[-1]}|completed", 0)
        stopped = sum(s.get(f"{st}|{k}", 0) for st in STAGES for k in ("failed", "timed_out", "cancelled"))
        running = sum(s.get(f"{st}|running", 0) for st in STAGES)
        return done + stopped >= len(self.items) and running == 0

    def wait_settled(self, timeout: float = 240.0) -> None:
        try:
            wait_until(self.settled, timeout=timeout, interval=0.1, message="the session to settle")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; stats now {self.stats()}, {self.final_outputs()} final outputs; "
                                 f"worker log tail:\n{self.worker.output()[-3000:] if self.worker else ''}") from None

    def registered_pids(self) -> set[int]:
        """Pids of the worker processes that have registered (beaten at least once): only those
        have a lease for the supervisor to reclaim and a ``worker_lost`` event to show for it."""
        with self.client() as c:
            ids = c.zrange(K.workers, 0, -1)
            with c.pipeline(transaction=False) as pipe:
                for worker_id in ids:
                    pipe.hget(K.worker(worker_id), "pid")
                pids = pipe.execute()
        return {int(p) for p in pids if p}

    # --- faults -------------------------------------------------------------------------------
    def kill_random_worker(self, rng: random.Random) -> int | None:
        """SIGKILL one worker process that has registered, waiting (with a deadline) for one:
        a process killed while it is still starting (under load, spawning and importing take
        seconds) holds no lease, so nothing is reclaimed and no kill could be traced."""
        def registered() -> list[psutil.Process]:
            pids = self.registered_pids()
            return [p for p in self.children() if p.pid in pids and p.pid not in self.killed]

        candidates = wait_until(registered, timeout=60, interval=0.05, message="a registered worker process to kill")
        victim = rng.choice(candidates)
        at = self.server_ms()
        try:
            executors = victim.children(recursive=True)  # they die with it (and ran its handlers)
            victim.send_signal(signal.SIGKILL)
        except psutil.Error:
            return None
        now = time.time()
        self.killed[victim.pid] = now
        self.killed_at_ms[victim.pid] = at
        for child in executors:
            self.killed_with[child.pid] = now
        return victim.pid

    # --- audit --------------------------------------------------------------------------------
    def audit(self, figures: Figures, explained: Callable[[int, float], bool] | None = None) -> Figures:
        """Fill ``figures`` from the outputs on disk, the execution markers and Redis.
        ``explained(pid, started)`` says whether a losing execution (one whose output is not the
        one on disk) is explained by a fault; by default: its process was killed."""
        explained = explained or (lambda pid, started: pid in self.killed or pid in self.killed_with)
        final = STAGES[-1]
        figures.tasks = len(self.items) * len(STAGES)
        s = self.stats()
        figures.failed = sum(s.get(f"{st}|{k}", 0) for st in STAGES for k in ("failed", "timed_out"))
        figures.reclaimed = sum(s.get(f"{st}|reclaimed", 0) for st in STAGES)
        figures.double_completions = sum(max(0, s.get(f"{st}|completed", 0) - len(self.items)) for st in STAGES)
        figures.details["done"] = {st: s.get(f"{st}|done", 0) for st in STAGES}
        with self.client() as c:
            outcomes = c.hgetall(K.outcomes(SESSION))
        stopped = set(outcomes)
        winners: dict[tuple[str, str], int] = {}
        lost = 0
        for item in self.items:
            for stage in STAGES:
                path = Path(self.spec.pipeline.stage(stage).output_path(self.spec.root, SESSION, item))
                if path.is_file():
                    winners[(stage, item)] = json.loads(path.read_text())["pid"]
                elif stage == final and item not in stopped:
                    lost += 1
        figures.lost = lost
        runs: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        if self.markers.is_dir():
            for marker in os.scandir(self.markers):
                kind, stage, rest = marker.name.split("-", 2)
                if kind != "ran":
                    continue
                item, _attempt, pid = rest.rsplit("-", 2)
                runs[(stage, item)].append((int(pid), marker.stat().st_mtime))
        duplicates = untraced = 0
        for key, executions in runs.items():
            if len(executions) < 2:
                continue
            duplicates += len(executions) - 1
            extra = sorted(executions, key=lambda e: e[1])
            won = [e for e in extra if e[0] == winners.get(key)]
            if won:
                extra.remove(won[-1])  # the execution whose output is on disk
            else:
                extra = extra[1:]
            untraced += sum(1 for pid, started in extra if not explained(pid, started))
        figures.duplicates, figures.untraced = duplicates, untraced
        figures.elapsed_s = round(time.monotonic() - self.started, 2)
        return figures

    def inflight_total(self) -> int:
        with self.client() as c:
            return sum(len(held(c, w)) for w in c.zrange(K.workers, 0, -1))

    def results_after(self, ms: int) -> int:
        """Completions recorded after server time ``ms``."""
        with self.client() as c:
            return len(c.xrange(K.results, min=f"{ms}-0", count=10_000))

    def server_ms(self) -> int:
        with self.client() as c:
            sec, usec = c.time()
            return sec * 1000 + usec // 1000


# ------------------------------------------------------------------------------------------------
# scenarios


def worker_kills(workdir: Path, *, items: int = 150, processes: int = 3, interval: float = 1.0,
                 duration: float = 8.0, seconds: float | None = None, seed: int = 7) -> Figures:
    """SIGKILL a random worker process every ``interval`` s for ``duration`` s while the
    supervisor restarts them. Recovery time: from a kill to the supervisor having reclaimed the
    dead process's task (the ``worker_lost`` event)."""
    rng = random.Random(seed)
    if seconds is None:  # long enough that the run outlasts the kills
        seconds = min(0.2, max(0.005, duration * processes / (items * len(STAGES))))
    figures = Figures("worker kills", items, processes)
    with ChaosRun(workdir, items, processes, seconds=seconds) as run:
        run.start_workers()
        end = time.monotonic() + duration
        while time.monotonic() < end and not run.settled():
            run.kill_random_worker(rng)
            time.sleep(interval)  # the driver's pace, not a synchronisation
        kill_ms = run.killed_at_ms
        figures.faults = len(run.killed)
        run.wait_settled()
        run.audit(figures)

        # recovery: kill -> worker_lost event naming a worker whose pid we killed
        def reclaimed() -> tuple[list, list[float]]:
            with run.client() as c:
                events = [(int(i.split("-")[0]), f) for i, f in c.xrange(K.events)
                          if f.get("kind") == "worker_lost"]
            found = []
            for pid, at in kill_ms.items():
                after = [ms for ms, f in events if ms >= at and f"process {pid} " in f.get("msg", "")]
                if after:
                    found.append((min(after) - at) / 1000)
            return events, found

        # a process killed while idle near the end may be reclaimed after the session settled
        try:
            wait_until(lambda: len(reclaimed()[1]) == len(kill_ms), timeout=60, interval=0.1,
                       message="the supervisor to reclaim every killed process")
        except AssertionError:
            pass  # reported below as "n of m kills reclaimed"
        lost_events, delays = reclaimed()
        figures.worker_restarts = len(lost_events)
        figures.recover_s = max(delays) if delays else None
        figures.details["kills_reclaimed"] = len(delays)
        figures.notes.append(f"{len(delays)} of {len(kill_ms)} kills reclaimed by the supervisor")
        assert run.inflight_total() == 0
    return figures


def redis_restart(workdir: Path, *, items: int = 120, processes: int = 3, down_s: float = 2.0,
                  seconds: float = 0.02) -> Figures:
    """SIGKILL Redis (AOF, fsync always) mid-run, keep it down ``down_s`` (longer than a lease),
    start it again on the same port. Workers must reconnect on their own: no worker process is
    restarted. Recovery time: from Redis being back to the next completed task."""
    figures = Figures("redis restart (AOF)", items, processes)
    with ChaosRun(workdir, items, processes, seconds=seconds) as run:
        run.start_workers()
        before = {p.pid for p in run.children()}
        wait_until(lambda: run.completed("s1") >= items // 3, timeout=120, message="progress before the restart")
        run.server.kill()
        time.sleep(down_s)  # the outage itself
        run.server.start()
        back = run.server_ms()
        figures.faults = 1
        wait_until(lambda: run.results_after(back) > 0, timeout=60, message="the first completion after the restart")
        with run.client() as c:
            first = min(int(i.split("-")[0]) for i, _ in c.xrange(K.results, min=f"{back}-0", count=1))
        figures.recover_s = (first - back) / 1000
        run.wait_settled()
        run.audit(figures, explained=lambda pid, started: False)
        after = {p.pid for p in run.children()}
        figures.worker_restarts = len(before - after)
        log = run.worker.output()
        figures.notes.append(f"'Redis unavailable' logged {log.count('Redis unavailable')}x, "
                             f"'Redis is back' {log.count('Redis is back')}x")
        assert run.inflight_total() == 0
    return figures


def redis_flush(workdir: Path, *, items: int = 120, processes: int = 3, mode: str = "flushall",
                seconds: float = 0.03) -> Figures:
    """Redis loses everything mid-run (``FLUSHALL``, or ``restart``: SIGKILL and start again with
    its AOF gone), then the operator runs ``symphony repair``, which re-registers the session from
    its file and enqueues what the outputs on disk say each item is missing. Every item must end
    with its final output. A duplicate execution is explained only if the losing one had started
    before repair restored Redis's memory of the task. Recovery: from the end of the repair
    to the next completed task."""
    import shutil
    import subprocess
    import sys

    figures = Figures(f"redis loses everything ({mode})", items, processes)
    with ChaosRun(workdir, items, processes, seconds=seconds) as run:
        run.start_workers()
        wait_until(lambda: run.completed("s1") >= items // 3, timeout=120, message="progress before the loss")
        if mode == "flushall":
            with run.client() as c:
                c.flushall()
        else:
            run.server.kill()
            shutil.rmtree(run.server.directory, ignore_errors=True)
            os.makedirs(run.server.directory)
            run.server.start()
        figures.faults = 1
        run.count_on_disk = True
        with run.client() as c:
            lost_at = c.time()
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "symphony.console.commands", "repair", SESSION, "--tasks", str(workdir),
                              "--json"], env=worker_env(run.server.url), capture_output=True, text=True, timeout=300)
        repaired_at = time.time()
        if out.returncode != 0:
            raise AssertionError(f"repair failed: {out.stderr}")
        plan = json.loads(out.stdout)
        back = run.server_ms()
        wait_until(lambda: run.results_after(back) > 0, timeout=60, message="the first completion after repair")
        with run.client() as c:
            first = min(int(i.split("-")[0]) for i, _ in c.xrange(K.results, min=f"{back}-0", count=1))
        figures.recover_s = (first - back) / 1000
        figures.notes.append(f"repair enqueued {plan.get('to_enqueue')} task(s) in {time.monotonic() - started:.2f}s "
                             f"(redis time at loss {lost_at[0]})")
        run.wait_settled()
        run.audit(figures, explained=lambda pid, when: when <= repaired_at)
        figures.details["plan"] = plan
    return figures


class Reaper(threading.Thread):
    """What the console does while it watches: reap lapsed leases every ``every`` seconds."""

    def __init__(self, url: str, every: float = 0.1):
        super().__init__(daemon=True)
        self.engine = Engine(resolve_redis(url), socket_timeout=30)
        self.every = every
        self.stop = threading.Event()
        self.reclaimed = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.reclaimed += sum(r.tasks for r in self.engine.reap())
            except Exception:
                pass  # Redis paused or gone: the console keeps going
            self.stop.wait(self.every)

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=40)
        self.engine.close()


def network_trouble(workdir: Path, *, items: int = 90, processes: int = 3, pause_s: float = 4.0,
                    kills: int = 8, seconds: float = 0.15) -> Figures:
    """Clients cut by ``CLIENT KILL``, then Redis frozen by SIGSTOP and by ``DEBUG SLEEP``, each
    for ``pause_s`` (longer than a lease: 2.5 heartbeats), while a console-like reaper polls.
    Nobody may lose a lease (reclaimed = 0, no worker_lost event), nothing may run twice, and
    no worker process may crash (no restarts). Recovery: from the end of a freeze to the next
    completion."""
    figures = Figures("network trouble", items, processes)
    with ChaosRun(workdir, items, processes, seconds=seconds,
                  redis_args=("--enable-debug-command", "yes")) as run:
        run.start_workers()
        before = {p.pid for p in run.children()}
        reaper = Reaper(run.server.url)
        reaper.start()
        try:
            with run.client() as admin:
                wait_until(lambda: run.completed("s1") >= 10, timeout=60, message="some progress")
                for _ in range(kills):  # connections cut, including blocked BLPOPs
                    admin.client_kill_filter(_type="normal", skipme=True)
                    figures.faults += 1
                    time.sleep(0.25)
                delays = []
                for freeze in ("sigstop", "debug sleep"):
                    wait_until(lambda: run.stats().get("s1|running", 0) + run.stats().get("s2|running", 0)
                               + run.stats().get("s3|running", 0) > 0, timeout=30, message="tasks in flight")
                    if freeze == "sigstop":
                        run.server.pause()
                        time.sleep(pause_s)  # the outage itself
                        run.server.resume()
                    else:
                        try:
                            with run.server.client(socket_timeout=pause_s + 10) as sleeper:
                                sleeper.execute_command("DEBUG", "SLEEP", pause_s)
                        except redis.ResponseError as exc:
                            figures.notes.append(f"DEBUG SLEEP unavailable: {exc}")
                            continue
                    back = run.server_ms()
                    figures.faults += 1
                    wait_until(lambda: run.results_after(back) > 0, timeout=60, message=f"completions after {freeze}")
                    first = min(int(i.split("-")[0]) for i, _ in admin.xrange(K.results, min=f"{back}-0",
                                                                               count=1))
                    delays.append((first - back) / 1000)
                figures.recover_s = max(delays) if delays else None
            run.wait_settled()
        finally:
            reaper.close()
        run.audit(figures, explained=lambda pid, started: False)
        after = {p.pid for p in run.children()}
        figures.worker_restarts = len(before - after)
        with run.client() as c:
            lost_events = [f for _, f in c.xrange(K.events) if f.get("kind") == "worker_lost"]
        figures.notes.append(f"worker_lost events {len(lost_events)}, console reaper reclaimed {reaper.reclaimed}")
        assert run.inflight_total() == 0
    return figures


# messages planted at the head of the first queue by the poison scenario: not JSON, a 100,000-level
# nested array, byte 0xff, a hostile item id, items the session does not have, and a message of a
# real item found in another stage's queue
PLANTED = [b"this is {not json", ("[" * 100_000 + "]" * 100_000).encode(),
           b'{"i":"it00002","s":"chaos","t":"s1","a":0,"m":{"x":"\xff"}}',
           b'{"i":"../../../etc/passwd","s":"chaos","t":"s1","a":0}', b'{"i":"x1","s":"other","t":"s9","a":0}',
           b'{"i":"it:injected","s":"chaos","t":"s1","a":0}', b'{"i":"ghost","s":"chaos","t":"s1","a":0,"o":3}',
           b'{"i":"it00001","s":"chaos","t":"s2","a":0}']


def poison(workdir: Path, *, items: int = 40, processes: int = 2) -> Figures:
    """An always-crashing item, an item that hangs past its timeout, and messages planted
    straight into the head of the first queue (:data:`PLANTED`): the two items end failed or
    timed out with their reason; each planted message is set aside once in the dead-letter list
    with its reason (none runs, none is counted, no worker logs a traceback); every other item
    completes."""
    extra = ["crash-1", "hang-1"]
    figures = Figures("poison input", items, processes)
    with ChaosRun(workdir, items, processes, handler="tests.handlers:poison", max_attempts=2, timeout=1.5,
                  extra_items=extra) as run:
        with run.client() as c:
            c.lpush(K.queue("s1", SESSION), *reversed(PLANTED))
        run.start_workers()
        figures.faults = len(extra) + len(PLANTED)

        def all_done() -> bool:
            s = run.stats()
            stopped = sum(s.get(f"{st}|{k}", 0) for st in STAGES for k in ("failed", "timed_out"))
            running = sum(s.get(f"{st}|running", 0) for st in STAGES)
            with run.client() as c:
                dead = len(dead_letters(c))
            return (s.get(f"{STAGES[-1]}|completed", 0) >= items and stopped >= len(extra) and running == 0
                    and dead >= len(PLANTED))

        wait_until(all_done, timeout=120, interval=0.1, message=f"poison to settle ({run.stats()})")
        run.audit(figures, explained=lambda pid, started: False)
        with run.client() as c:
            outcomes = {k: json.loads(v) for k, v in c.hgetall(K.outcomes(SESSION)).items()}
            dead = dead_letters(c)
        figures.notes.append("; ".join(f"{k}: {v['state']}" for k, v in sorted(outcomes.items())))
        figures.notes.append(f"dead-lettered {len(dead)} of {len(PLANTED)} planted")
        figures.details["outcomes"] = outcomes
        figures.details["deadletter"] = dead
        figures.details["tracebacks"] = run.worker.output().count("Traceback")
        figures.details["root"] = str(run.data)
    return figures


def hostile_handlers(workdir: Path, *, items: int = 40, processes: int = 2, timeout: float = 2.0) -> Figures:
    """Handlers that misbehave: one holds the GIL in a catastrophic regex for minutes (past its
    ``timeout``), one raises SystemExit, one KeyboardInterrupt, one ends its own process with
    os._exit. Python handlers run in each worker's executor: the worker keeps beating (no lease
    lapses, nothing is reclaimed or runs twice), ends the regex at its timeout, and records each
    as that task's failure; no worker process is replaced; every other item completes."""
    extra = ["gil-1", "exit-1", "interrupt-1", "die-1"]
    figures = Figures("hostile handlers", items, processes)
    with ChaosRun(workdir, items, processes, handler="tests.handlers:hostile", max_attempts=2, timeout=timeout,
                  extra_items=extra) as run:
        run.start_workers()
        before = {p.pid for p in run.children()}
        figures.faults = len(extra)

        def all_done() -> bool:
            s = run.stats()
            stopped = sum(s.get(f"{st}|{k}", 0) for st in STAGES for k in ("failed", "timed_out"))
            running = sum(s.get(f"{st}|running", 0) for st in STAGES)
            return s.get(f"{STAGES[-1]}|completed", 0) >= items and stopped >= len(extra) and running == 0

        wait_until(all_done, timeout=120, interval=0.1, message=f"the hostile handlers to settle ({run.stats()})")
        run.audit(figures, explained=lambda pid, started: False)
        figures.worker_restarts = len(before - {p.pid for p in run.children()})
        with run.client() as c:
            outcomes = {k: json.loads(v) for k, v in c.hgetall(K.outcomes(SESSION)).items()}
        hostile = defaultdict(int)
        for marker in run.markers.glob("hostile-*"):
            hostile[marker.name.split("-", 2)[2].rsplit("-", 2)[0]] += 1
        figures.notes.append("; ".join(f"{k}: {v['state']} after {v['attempts']}" for k, v in sorted(outcomes.items())))
        figures.details["outcomes"] = outcomes
        figures.details["runs"] = dict(hostile)
        assert run.inflight_total() == 0
    return figures


def broken_host(workdir: Path, *, items: int = 120, processes: int = 2, broken_processes: int = 2) -> Figures:
    """A host whose environment breaks every handler joins a fleet whose host completes tasks
    (each task has 2 attempts). Its failures' retries go to the good host, it is set aside
    (quarantined) after a few, and no item fails. Recovery: from the broken host's start to its
    quarantine. Figures: the attempts it charged before it was set aside."""
    figures = Figures("broken host", items, processes + broken_processes)
    with ChaosRun(workdir, items, processes, handler="tests.handlers:chaos_unless_broken", max_attempts=2) as run:
        run.start_workers(env=worker_env(run.server.url, SYMPHONY_HOSTNAME="good"))
        wait_until(lambda: run.completed(STAGES[0]) >= 3, timeout=60, message="the good host to complete tasks")
        (workdir / "broken").mkdir()
        (workdir / "broken" / "BROKEN").write_text("")
        started = time.monotonic()
        broken = WorkerRun(run.server.url, "--pool", "chaos", "--processes", str(broken_processes), "--name", "broken",
                           log_dir=workdir, heartbeat=HEARTBEAT, cwd=workdir / "broken",
                           env=worker_env(run.server.url, SYMPHONY_HOSTNAME="broken"))
        figures.faults = 1
        try:
            wait_until(lambda: "broken" in run.engine.quarantined_hosts(), timeout=120,
                       message="the broken host to be set aside")
            figures.recover_s = round(time.monotonic() - started, 2)
            run.wait_settled()
            log = broken.output()
        finally:
            broken.stop()
        run.audit(figures)
        charged = log.count("retrying in") + log.count("failed after")
        uncharged = log.count("back to its queue for another host, uncharged")
        with run.client() as c:
            quarantines = [f for _, f in c.xrange(K.events) if f.get("kind") == "host_quarantined"]
        figures.details.update(charged=charged, uncharged=uncharged, quarantines=len(quarantines))
        figures.notes.append(f"broken host charged {charged} attempt(s) before it was set aside, {uncharged} "
                             f"uncharged after; {len(quarantines)} quarantine(s)")
    return figures


def _repair(workdir: Path, url: str) -> dict:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "symphony.console.commands", "repair", SESSION, "--tasks", str(workdir),
                          "--json"], env=worker_env(url), capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise AssertionError(f"repair failed: {out.stdout}{out.stderr}")
    return json.loads(out.stdout)


def eviction(workdir: Path, *, items: int = 120, processes: int = 3, policy: str = "allkeys-lru",
             seconds: float = 0.03, evictions: int = 40, symphony_keys: int = 3) -> Figures:
    """Redis runs with an evicting ``policy``. Workers refuse to start under it (exit 3, one line
    saying which policy and to set noeviction); started again with ``--accept-eviction``, they
    run while ballast keys push Redis over its maxmemory until it has evicted at least
    ``evictions`` keys, ``symphony_keys`` of them Symphony's (of those that existed before: with
    ``*-random`` any of them, the queues, in-flight lists, session, counters, worker
    descriptions; with ``volatile-*`` those with a TTL). Then the pressure stops (the ballast goes)
    and the operator runs ``symphony repair``, as often as it still finds something to heal (at most 5 times). Every
    item must end with its final output, and each stage done once per item; duplicates are
    explained by the loss (any execution that began before the last repair). Recovery: from the
    last repair to every final output on disk."""
    figures = Figures(f"eviction ({policy})", items, processes)
    with ChaosRun(workdir, items, processes, seconds=seconds,
                  redis_args=("--maxmemory", "0", "--maxmemory-policy", policy)) as run:
        c = run.client()
        used = int(c.info("memory")["used_memory"])
        c.config_set("maxmemory", str(used + 4 * 1024 * 1024))
        refused = WorkerRun(run.server.url, "--pool", "chaos", "--processes", "1", log_dir=workdir, heartbeat=HEARTBEAT)
        figures.details["refused_exit"] = refused.wait(60)
        figures.details["refusal"] = [line for line in refused.output().splitlines() if "maxmemory-policy" in line]
        refused.stop()
        run.start_workers("--accept-eviction")
        wait_until(lambda: run.completed("s1") >= items // 4, timeout=120, message="progress before the pressure")
        ours = [k for k in c.scan_iter(count=1000) if not k.startswith("ballast:")]
        if policy.startswith("volatile"):
            ours = [k for k in ours if c.pttl(k) > 0]
        n, gone = 0, []
        while n < 200_000 and (int(c.info("stats")["evicted_keys"]) < evictions or len(gone) < symphony_keys):
            # volatile-* evicts only keys with a TTL: the ballast has one too, so both go
            c.set(f"ballast:{n}", "x" * 20_000, ex=None if policy.startswith("allkeys") else 3600)
            n += 1
            if n % 20 == 0:
                with c.pipeline(transaction=False) as pipe:
                    for key in ours:
                        pipe.exists(key)
                    gone = [k for k, there in zip(ours, pipe.execute()) if not there]
        figures.faults = int(c.info("stats")["evicted_keys"])
        figures.details["evicted"] = sorted(gone)
        survivors = [k for k in c.scan_iter(match="ballast:*", count=1000)]
        if survivors:
            c.delete(*survivors)
        c.config_set("maxmemory", "0")  # the pressure stops
        run.count_on_disk = True
        plans, repaired_at = [], time.time()
        for _ in range(5):
            plan = _repair(workdir, run.server.url)
            repaired_at = time.time()
            plans.append({k: plan[k] for k in ("to_enqueue", "lost", "relisted", "registered", "recount", "unready")})
            if not (plan["to_enqueue"] or plan["lost"] or plan["relisted"] or plan["recount"] or plan["unready"]):
                break
            started = time.monotonic()
            try:
                wait_until(lambda: run.final_outputs() >= len(run.items), timeout=60, interval=0.1,
                           message="every final output after the repair")
                figures.recover_s = round(time.monotonic() - started, 2)
            except AssertionError:
                continue  # something was still missing: the operator repairs again
        wait_until(lambda: run.final_outputs() >= len(run.items), timeout=120, interval=0.1,
                   message=f"every final output (plans {plans}; evicted {sorted(gone)})")
        final = _repair(workdir, run.server.url)  # counts from the disk, nothing left to do
        plans.append({k: final[k] for k in ("to_enqueue", "lost", "relisted", "registered", "recount", "unready")})
        figures.notes.append(f"{figures.faults} key(s) evicted ({n} ballast writes), Symphony's: {sorted(gone)}; "
                             f"repairs: {plans}")
        figures.details["plans"] = plans
        run.audit(figures, explained=lambda pid, when: when <= repaired_at)
        c.close()
    return figures


def out_of_memory(workdir: Path, *, items: int = 120, processes: int = 3, full_s: float = 3.0,
                  seconds: float = 0.03) -> Figures:
    """Redis (noeviction) reaches its maxmemory mid-run and refuses every write for ``full_s``
    (longer than a lease): workers can neither claim nor report. Then memory is freed. Nothing
    may be lost or run twice, no lease may be taken, no worker restarted; each worker process says
    so once in words (no traceback, no "unavailable"/"back" flapping), and ``symphony status``
    exits 3 while it lasts. Recovery: from the memory freed to every worker's next heartbeat."""
    import subprocess
    import sys

    figures = Figures("out of memory (noeviction at its limit)", items, processes)
    with ChaosRun(workdir, items, processes, seconds=seconds, redis_args=("--maxmemory-policy", "noeviction")) as run:
        c = run.client()
        run.start_workers()
        before = {p.pid for p in run.children()}
        wait_until(lambda: run.completed("s1") >= items // 4, timeout=120, message="progress before the limit")
        c.config_set("maxmemory", "1")  # every write refused from now on
        figures.faults = 1
        wait_until(lambda: int(c.info("errorstats").get("errorstat_OOM", {}).get("count", 0)) >= processes,
                   timeout=30, message="the workers to meet the limit")
        status = subprocess.run([sys.executable, "-m", "symphony.console.commands", "status"],
                                env=worker_env(run.server.url), capture_output=True, text=True, timeout=60)
        figures.details["status_exit"] = status.returncode
        time.sleep(full_s)  # the fault: Redis stays full this long
        back = run.server_ms()
        c.config_set("maxmemory", "0")

        def beats() -> list[int]:  # each worker's last heartbeat (server ms)
            ids = c.zrange(K.workers, 0, -1)
            return [int(c.hget(K.worker(w), "beat") or 0) for w in ids]

        # reports and claims may pass while Redis is full (a script whose first write frees memory
        # goes on), the heartbeat's ZADD does not: recovery is every worker beating again
        wait_until(lambda: len(beats()) == processes and min(beats()) >= back, timeout=60,
                   message="every worker to beat again after the limit")
        figures.recover_s = (max(beats()) - back) / 1000
        run.wait_settled()
        run.audit(figures, explained=lambda pid, started: False)
        figures.worker_restarts = len(before - {p.pid for p in run.children()})
        log = run.worker.output()
        figures.details["said"] = sum(1 for line in log.splitlines() if "Redis is out of memory" in line)
        figures.details["tracebacks"] = log.count("Traceback")
        figures.details["flaps"] = log.count("Redis unavailable") + log.count("is back after")
        figures.notes.append(f"said {figures.details['said']} time(s) by {processes} process(es), "
                             f"{figures.details['tracebacks']} traceback(s), status exit {status.returncode}")
        c.close()
    return figures
