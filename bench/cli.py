"""``python -m bench``: every case, every system in turn, one Redis this harness starts itself.

    python -m bench                       # all cases, 3 rounds, peers that are installed
    python -m bench --rounds 5 --json out.json
    python -m bench --cases throughput --systems symphony,minimal,minimal32,huey
    python -m bench --cases latency,command,startup   # the costs of a task beyond throughput
    python -m bench --smoke               # tiny sizes, a few seconds a case (CI runs this)

Ratios are taken within a round (systems measured back to back, under the same load) and the
median over rounds is reported; so are the medians of the raw figures, and how much of the
machine other processes used while each was measured (``foreign``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import (enqueue, exporter, fleet, fleet_workers, inline, latency, memory, reclaim, repair, snapshot, startup,
               steering, throughput, worker_costs)
from .common import Server, load_now, machine_info, median, remove_temp_dirs
from .systems import ALL, BY_NAME

CASES = ("throughput", "latency", "command", "startup", "enqueue", "inline", "memory", "snapshot", "repair", "reclaim",
         "exporter", "steering", "fleet", "fleet_workers")


@dataclass(frozen=True)
class Sizes:
    window_s: float = 4.0
    min_tasks: int = 2000
    stages: tuple[int, ...] = (1, 4)
    enqueue_items: int = 100_000
    inline_items: tuple[int, ...] = (100_000, 1_000_000)
    memory_items: int = 100_000
    memory_peer_items: int = 20_000
    snapshot_sessions: int = 1000
    snapshot_workers: int = 500
    snapshot_reps: int = 20
    scaling_queues: tuple[int, ...] = (10, 100, 1000, 10_000)
    scaling_workers: int = 50
    scaling_reps: int = 5
    repair_items: int = 1_000_000
    reclaim_heartbeat: float = 1.0
    finish_tasks: int = 20_000  # the exporter case: finish.lua's cost per task
    latency_samples: int = 100  # per system per round
    latency_interval_s: float = 0.2
    command_tasks: int = 300
    command_seconds: float = 0.035
    startup_tasks: int = 2000
    startup_repeat: int = 3  # launches timed to ready-to-claim, per round
    single_enqueues: int = 2000
    steering_tasks: int = 200_000  # the steering case: tasks claimed by one process (1,000 sessions x 200)
    fleet_workers: tuple[int, ...] = (1000, 10_000)  # the fleet case: emulated workers' heartbeats
    fleet_window_s: float = 10.0
    fleet_reps: int = 15
    registry_sessions: int = 1000  # the fleet_workers case: a registry change at sessions x emulated workers
    registry_workers: int = 1000
    connection_processes: int = 4  # connections per process of one symphony-worker --processes N


SMOKE = Sizes(window_s=0.3, min_tasks=200, enqueue_items=2000, inline_items=(2000,), memory_items=1000,
              memory_peer_items=500,
              snapshot_sessions=20, snapshot_workers=10, snapshot_reps=3, scaling_queues=(10, 100), scaling_workers=5,
              scaling_reps=2, repair_items=2000, reclaim_heartbeat=0.5, finish_tasks=500,
              latency_samples=5, latency_interval_s=0.05, command_tasks=40, command_seconds=0.01, startup_tasks=200,
              startup_repeat=1, single_enqueues=50, steering_tasks=2000, fleet_workers=(200,), fleet_window_s=1.0,
              fleet_reps=3, registry_sessions=20, registry_workers=20, connection_processes=2)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- cases -------------------------------------------------------------------------------------------
def case_throughput(server: Server, args, sizes: Sizes, systems: list[str]) -> dict[str, Any]:
    rates = {name: BY_NAME[name].prior_rate for name in systems}
    out: dict[str, Any] = {}
    for stages in sizes.stages:
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            tries = []
            for attempt in range(1 + max(0, args.retries)):
                row = run_round(server, args, sizes, systems, stages, rates, r)
                tries.append(row)
                if row["foreign_max"] <= args.max_foreign:
                    break
                log(f"  other processes used {row['foreign_max']:.0%} of the machine during this round: repeating it")
            best = min(tries, key=lambda t: t["foreign_max"])
            best["tries"] = len(tries)
            best["discarded"] = [t for t in tries if t is not best]
            rounds.append(best)
        summary = {}
        for name in systems:
            got = [rw[name] for rw in rounds if rw[name].get("rate")]
            summary[name] = {"rate": median(g["rate"] for g in got), "foreign": median(g["cpu"]["foreign"] for g in got),
                             "server_cpu": median(g["cpu"]["server"] for g in got), "rounds": len(got),
                             "note": BY_NAME[name].note}
            if name != "symphony":
                summary[name]["symphony_ratio"] = median(rw.get("ratios", {}).get(name) for rw in rounds)
            for floor in ("minimal", "minimal32"):
                summary[name][f"vs_{floor}"] = median(rw.get("floors", {}).get(name, {}).get(floor) for rw in rounds)
            summary[name]["worker_us_per_task"] = median(_worker_us(g) for g in got)
            summary[name]["server_us_per_task"] = median(sum(g.get("server_us_per_task", {}).values()) for g in got)
        out[f"{stages}_stage" + ("s" if stages > 1 else "")] = {"rounds": rounds, "summary": summary}
    return out


def run_round(server: Server, args, sizes: Sizes, systems: list[str], stages: int, rates: dict[str, float],
              r: int) -> dict[str, Any]:
    row: dict[str, Any] = {"round": r + 1, "load": load_now()}
    for name in systems:
        log(f"  throughput, {stages} stage(s), round {r + 1}: {name}")
        try:
            res = throughput.run_one(server, BY_NAME[name], stages=stages, processes=args.processes,
                                     window_s=sizes.window_s, rate_guess=rates[name], heartbeat=args.heartbeat,
                                     min_tasks=sizes.min_tasks)
            rates[name] = max(rates[name] * 0.5, res["rate"] or rates[name])
        except Exception as exc:  # a peer that fails to run is reported, not fatal
            res = {"system": name, "error": f"{type(exc).__name__}: {str(exc)[-1500:]}"}
        row[name] = res
    floors = {}
    for name in systems:
        if not row[name].get("rate"):
            continue
        floors[name] = {floor: round(row[name]["rate"] / row[floor]["rate"], 3) for floor in ("minimal", "minimal32")
                        if floor in row and row[floor].get("rate")}
    row["floors"] = floors  # every system's rate / each minimal loop's, in this round
    if "symphony" in row and row["symphony"].get("rate"):
        row["ratios"] = {name: round(row["symphony"]["rate"] / row[name]["rate"], 3)
                         for name in systems if name != "symphony" and row[name].get("rate")}
    row["foreign_max"] = max([row[n]["cpu"]["foreign"] for n in systems if "cpu" in row[n]] or [0.0])
    return row


def _worker_us(res: dict[str, Any]) -> float | None:
    """CPU of the worker processes per task in the window (µs)."""
    cpu, n = res.get("cpu", {}), res.get("window_tasks")
    if not n or cpu.get("workers_s") is None:
        return None
    return round(cpu["workers_s"] / n * 1e6, 1)


def case_latency(server: Server, args, sizes: Sizes, systems: list[str]) -> dict[str, Any]:
    names = [n for n in latency.SYSTEMS if n in systems or n in ("minimal", "minimal32")]
    if "symphony" in systems and "symphony-inline" not in names:
        names.insert(1, "symphony-inline")
    names = [n for n in names if n in latency.SYSTEMS]
    names = [n for n in names if n not in BY_NAME or not BY_NAME[n].missing()]
    rounds = []
    for r in range(args.rounds):
        row: dict[str, Any] = {"round": r + 1, "load": load_now()}
        for name in names:
            log(f"  latency, round {r + 1}: {name} ({sizes.latency_samples} tasks, one every "
                f"{sizes.latency_interval_s * 1000:.0f} ms, {args.processes} idle workers)")
            try:
                res = latency.run_one(server, name, samples=sizes.latency_samples, interval_s=sizes.latency_interval_s,
                                      processes=args.processes)
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                res = {"system": name, "error": f"{type(exc).__name__}: {str(exc)[-1500:]}"}
            row[name] = res
        rounds.append(row)
    return {"rounds": rounds, "summary": latency.summarize(rounds, names)}


def case_command(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    runs = []
    for r in range(args.rounds):
        log(f"  command stage (sleep {sizes.command_seconds}) against a bare subprocess.run loop, round {r + 1}")
        runs.append(worker_costs.command_case(server, tasks=sizes.command_tasks, seconds=sizes.command_seconds,
                                              processes=args.processes))
    return {"runs": runs, "summary": {"ratio": median(x["ratio"] for x in runs),
                                      "overhead_ms_per_task": median(x["overhead_ms_per_task"] for x in runs),
                                      "symphony_rate": median(x["symphony_rate"] for x in runs),
                                      "bare_rate": median(x["bare_rate"] for x in runs)}}


def case_startup(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    names = [n for n in ("symphony", "symphony-inline", "symphony-base", "minimal", "minimal32")
             if not BY_NAME[n].missing() and (n in systems or n in ("symphony", "minimal", "minimal32"))]
    rounds, ready, single = [], [], []
    for r in range(args.rounds):
        row: dict[str, Any] = {"round": r + 1, "load": load_now()}
        for name in names:
            log(f"  start-up included, {sizes.startup_tasks} tasks, round {r + 1}: {name}")
            row[name] = startup.run_one(server, BY_NAME[name], tasks=sizes.startup_tasks, processes=args.processes)
        row["ratios"] = {n: round(row["symphony"]["rate"] / row[n]["rate"], 3) for n in names if n != "symphony"}
        rounds.append(row)
        log(f"  launch to ready-to-claim, round {r + 1}")
        ready.append(worker_costs.startup_case(server, repeat=sizes.startup_repeat))
        log(f"  single enqueue against LPUSH, round {r + 1}")
        single.append(enqueue.single(server, calls=sizes.single_enqueues))
    summary = {n: {"rate": median(rw[n]["rate"] for rw in rounds), "seconds": median(rw[n]["seconds"] for rw in rounds)}
               for n in names}
    for n in names[1:]:
        summary[n]["symphony_ratio"] = median(rw["ratios"][n] for rw in rounds)
    summary["ready_to_claim_s"] = median(x["median"]["process_started_s"] for x in ready)
    summary["first_handler_s"] = median(x["median"]["handler_started_s"] for x in ready)
    summary["single_enqueue_ms"] = median(x["enqueue_ms"] for x in single)
    summary["lpush_ms"] = median(x["lpush_ms"] for x in single)
    summary["single_enqueue_vs_lpush"] = median(x["ratio"] for x in single)
    return {"rounds": rounds, "ready": ready, "single_enqueue": single, "summary": summary}


def case_enqueue(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    runs = []
    for r in range(args.rounds):
        log(f"  enqueue {sizes.enqueue_items} items, round {r + 1}")
        runs.append({**enqueue.run_one(server, items=sizes.enqueue_items), "load": load_now()})
    return {"runs": runs, "summary": {"items": sizes.enqueue_items, "rate": median(x["rate"] for x in runs),
                                      "total_s": median(x["total_s"] for x in runs),
                                      "load_verify_s": median(x["load_verify_s"] for x in runs)}}


def case_inline(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    runs = []
    for items in sizes.inline_items:
        for r in range(args.rounds):
            log(f"  initialize of {items} inline items, round {r + 1}")
            runs.append({**inline.run_one(server, items=items), "load": load_now()})
    summary = {}
    for items in sizes.inline_items:
        got = [x for x in runs if x["items"] == items]
        summary[str(items)] = {key: median(x[key] for x in got) for key in
                               ("rate", "total_s", "peak_rss_mb", "verify_rate", "verify_s", "verify_peak_rss_mb",
                                "enqueue_s")}
    return {"runs": runs, "summary": summary}


def case_memory(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    log(f"  memory: {sizes.memory_items} items queued, then drained")
    sym = memory.symphony(server, items=sizes.memory_items, processes=args.processes)
    log(f"  memory: peers' queued tasks ({sizes.memory_peer_items} each)")
    return {"symphony": sym, "peers": memory.peers(server, items=sizes.memory_peer_items, names=systems)}


def case_snapshot(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    log(f"  snapshot: {sizes.snapshot_sessions} sessions x 4 stages, {sizes.snapshot_workers} workers")
    target = snapshot.run_target(server, sessions=sizes.snapshot_sessions, workers=sizes.snapshot_workers,
                                 reps=sizes.snapshot_reps)
    log(f"  snapshot scaling: {', '.join(map(str, sizes.scaling_queues))} queues against SCAN and KEYS")
    scaling = snapshot.run_scaling(server, queue_counts=list(sizes.scaling_queues), workers=sizes.scaling_workers,
                                   reps=sizes.scaling_reps)
    for row in scaling:  # what the round trips cost over a network (1 ms RTT), computed
        for side in ("symphony", "scan", "keys_cmd"):
            row[side]["ms_at_1ms_rtt"] = round(row[side]["ms"] + row[side]["round_trips"] * 1.0, 2)
    return {"target": target, "scaling": scaling}


def case_repair(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    log(f"  repair: making {sizes.repair_items} items x 4 stages of outputs on disk")
    tree = repair.Tree(sizes.repair_items)
    try:
        log(f"  repair: {tree.files} files made in {tree.make_s:.1f}s (written back in {tree.sync_s:.1f}s); planning")
        return repair.run(server, tree, reps=max(3, args.rounds))
    finally:
        tree.close()


def case_reclaim(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    runs = []
    for r in range(args.rounds):
        for mode in ("host", "process"):
            log(f"  reclaim after SIGKILL of the {mode}, round {r + 1}")
            runs.append(reclaim.run_one(server, mode=mode, heartbeat=sizes.reclaim_heartbeat, seed=r))
    summary = {}
    for mode in ("host", "process"):
        got = [x for x in runs if x["mode"] == mode]
        summary[mode] = {"median_s": median(x["latency_s"] for x in got), "max_s": max(x["latency_s"] for x in got),
                         "max_heartbeats": max(x["heartbeats"] for x in got), "heartbeat_s": sizes.reclaim_heartbeat}
    return {"runs": runs, "summary": summary, "peers_default": reclaim.PEER_DEFAULTS}


def case_exporter(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    log(f"  exporter: {sizes.snapshot_sessions} sessions x 4 stages, {sizes.snapshot_workers} workers")
    scrape = exporter.run_exporter(server, sessions=sizes.snapshot_sessions, workers=sizes.snapshot_workers,
                                   reps=max(3, sizes.snapshot_reps // 2))
    finish = []
    for per_call in (1, 32):
        log(f"  finish.lua: {sizes.finish_tasks} tasks reported {per_call} per call")
        finish.append(exporter.run_finish(server, tasks=sizes.finish_tasks, per_call=per_call))
    return {"scrape": scrape, "finish": finish}


def case_steering(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    runs = []
    for r in range(args.rounds):
        log(f"  steering: {sizes.steering_tasks} tasks claimed by one process, one session then 1,000 steered, "
            f"round {r + 1}")
        runs.append({**steering.run_one(server, tasks=sizes.steering_tasks), "load": load_now()})
    return {"runs": runs, "summary": {"script_us_ratio": median(x["script_us_ratio"] for x in runs),
                                      "one_session_us": median(x["one_session"]["redis_script_us_per_task"] for x in runs),
                                      "steered_us": median(x["steered"]["redis_script_us_per_task"] for x in runs)}}


def case_fleet(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    log(f"  fleet: {', '.join(map(str, sizes.fleet_workers))} emulated workers beating every {fleet.HEARTBEAT_S:.0f} s; "
        f"Redis, snapshots and a headless console over {sizes.fleet_window_s:.0f} s windows")
    return {"rows": fleet.run_fleet(server, sizes=sizes.fleet_workers, seconds=sizes.fleet_window_s,
                                    reps=sizes.fleet_reps), "load": load_now()}


def case_fleet_workers(server: Server, args, sizes: Sizes, systems) -> dict[str, Any]:
    log(f"  fleet_workers: a registry change at {sizes.registry_sessions} sessions x {sizes.registry_workers} emulated "
        f"workers; connections of symphony-worker --processes {sizes.connection_processes}; a heartbeat's host sample")
    return {"registry_change": fleet_workers.registry_change(server, sessions=sizes.registry_sessions,
                                                             workers=sizes.registry_workers,
                                                             old_workers=min(10, sizes.registry_workers)),
            "connections": fleet_workers.connections(server, processes=sizes.connection_processes),
            "host_sampling": fleet_workers.host_sampling()}


RUNNERS = {"throughput": case_throughput, "latency": case_latency, "command": case_command, "startup": case_startup,
           "enqueue": case_enqueue, "inline": case_inline, "memory": case_memory,
           "snapshot": case_snapshot, "repair": case_repair, "reclaim": case_reclaim, "exporter": case_exporter,
           "steering": case_steering, "fleet": case_fleet, "fleet_workers": case_fleet_workers}


# --- targets and the table ------------------------------------------------------------------------------
def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []

    def add(case: str, what: str, value, limit, ok) -> None:
        out.append({"case": case, "target": what, "value": value, "limit": limit, "met": bool(ok) if ok is not None else None})

    tp = results.get("throughput", {})
    for key, data in tp.items():
        ratio = data["summary"].get("minimal", {}).get("symphony_ratio")
        add(f"throughput {key.replace('_', ' ')}", "symphony / minimal loop", ratio, ">= 1.0",
            None if ratio is None else ratio >= 1.0)
        floor = data["summary"].get("symphony", {}).get("vs_minimal32")
        need = 1.0 if key == "1_stage" else 0.9
        add(f"throughput {key.replace('_', ' ')}", "symphony / batched minimal loop (32 per round trip)", floor,
            f">= {need}", None if floor is None else floor >= need)
        off = data["summary"].get("symphony-p1", {}).get("vs_minimal")
        if off is not None:
            add(f"throughput {key.replace('_', ' ')}", "symphony --prefetch 1 / minimal loop", off, ">= 1.0", off >= 1.0)
        if key == "1_stage":
            s = data["summary"].get("symphony", {})
            for what, limit in (("worker_us_per_task", 100), ("server_us_per_task", 35)):
                if s.get(what) is not None:
                    add("throughput 1 stage", what.replace("_", " "), s[what], f"<= {limit}", s[what] <= limit)
        steered = median(rw["steered"]["rate"] / rw["minimal"]["rate"] for rw in data["rounds"]
                         if rw.get("steered", {}).get("rate") and rw.get("minimal", {}).get("rate"))
        if steered is not None:
            add(f"throughput {key.replace('_', ' ')}", "steered (1,000 sessions, priorities, a limit) / minimal loop",
                round(steered, 3), ">= 1.0", steered >= 1.0)
    if "latency" in results:
        s = results["latency"]["summary"].get("symphony", {})
        huey = results["latency"]["summary"].get("huey", {}).get("p50_ms") or 1.1
        if s:
            add("latency", "p50 ms enqueue -> handler start", s["p50_ms"], f"<= huey ({huey})", s["p50_ms"] <= huey)
            add("latency", "p99 ms enqueue -> handler start", s["p99_ms"], "< 5", s["p99_ms"] < 5)
    if "command" in results:
        s = results["command"]["summary"]
        add("command", "ms per task beyond a bare subprocess.run loop", s["overhead_ms_per_task"], "<= 1",
            s["overhead_ms_per_task"] <= 1)
    if "startup" in results:
        s = results["startup"]["summary"]
        add("startup", "launch -> worker ready to claim (s)", s["ready_to_claim_s"], "<= 0.5", s["ready_to_claim_s"] <= 0.5)
        add("startup", "single Engine.enqueue / LPUSH round trip", s["single_enqueue_vs_lpush"], "<= 2",
            s["single_enqueue_vs_lpush"] <= 2)
    if "enqueue" in results:
        rate = results["enqueue"]["summary"]["rate"]
        add("enqueue", "initialize items/s (verification included)", rate, ">= 50000", rate >= 50_000)
    if "inline" in results:
        for items, s in results["inline"]["summary"].items():
            add(f"inline {int(items):,}", "initialize items/s, items written inline (verification included)", s["rate"],
                ">= 50000", s["rate"] >= 50_000)
    if "memory" in results:
        per = results["memory"]["symphony"]["queued_bytes_per_task"]
        add("memory", "bytes per queued task", per, "<= 200", per <= 200)
    if "snapshot" in results:
        t = results["snapshot"]["target"]["symphony"]
        add("snapshot", "ms at 1000 sessions x 4 stages + 500 workers", t["ms"], "<= 50", t["ms"] <= 50)
        trips = {row["symphony"]["round_trips"] for row in results["snapshot"]["scaling"]} | {t["round_trips"]}
        add("snapshot", "round trips, whatever the number of queues", sorted(trips), "fixed (2)", trips == {2})
    if "exporter" in results:
        e = results["exporter"]["scrape"]
        add("exporter", "Redis reads for ten scrapers at once", e["ten_scrapers"]["redis_reads"], "1",
            e["ten_scrapers"]["redis_reads"] == 1)
    if "steering" in results:
        ratio = results["steering"]["summary"]["script_us_ratio"]
        add("steering", "Redis script time per task, 1,000 steered sessions / one session", ratio, "<= 1.25",
            ratio <= 1.25)
    if "fleet" in results:
        for row in results["fleet"]["rows"]:
            n = row["workers"]
            if n < 10_000:
                continue
            paged = row["snapshot"]["paged"]["median_ms"]
            add("fleet", f"console snapshot ms at {n:,} workers (median)", paged, "< 100", paged < 100)
            idle = row["console"]["console_cpu_pct"]
            add("fleet", f"idle console, % of a core at {n:,} workers", idle, "< 5", idle < 5)
            redis_cpu = row["console"]["redis_cpu_pct"]
            add("fleet", f"Redis % of a core, {n:,} workers beating + one console", redis_cpu, "< 20", redis_cpu < 20)
    if "fleet_workers" in results:
        rc = results["fleet_workers"]["registry_change"]
        add("fleet_workers", f"Redis CPU per registry change, {rc['sessions']} sessions x {rc['workers']} workers (ms)",
            rc["redis_cpu_ms_per_change"], "< 100", rc["redis_cpu_ms_per_change"] < 100)
        per = results["fleet_workers"]["connections"]["per_worker_process_max"]
        add("fleet_workers", "Redis connections per worker process", per, "1", per == 1)
    if "repair" in results:
        ratio = results["repair"]["ratio"]
        add("repair", "plan time / listing the directories once", ratio, "<= 2.0", ratio <= 2.0)
    if "reclaim" in results:
        worst = results["reclaim"]["summary"]["host"]["max_heartbeats"]
        add("reclaim", "heartbeats until running again (host lost, worst round)", worst, "<= 3", worst <= 3)
    return out


def print_table(results: dict[str, Any]) -> None:
    print()
    if "throughput" in results:
        for key, data in results["throughput"].items():
            print(f"throughput, {key.replace('_', ' ')} (tasks/s, median of rounds; ratio = symphony / system)")
            for name, s in data["summary"].items():
                ratio = s.get("symphony_ratio")
                rate = s["rate"]
                floors = "  ".join(f"{s[k]:.2f}" if s.get(k) is not None else "  - " for k in ("vs_minimal", "vs_minimal32"))
                print(f"  {name:11} {rate if rate is not None else float('nan'):10.0f}"
                      f"   {'x' + format(ratio, '.2f') if ratio else '':>7}   vs minimal/minimal32 {floors}"
                      f"   worker {s.get('worker_us_per_task') or 0:.0f} us, redis {s.get('server_us_per_task') or 0:.0f} us"
                      f" per task   foreign cpu {s['foreign'] or 0:.2f}")
    if "latency" in results:
        print("latency, enqueue -> handler start (ms, all rounds' samples)")
        for name, s in results["latency"]["summary"].items():
            print(f"  {name:9} p50 {s['p50_ms']:7.2f}  p90 {s['p90_ms']:7.2f}  p99 {s['p99_ms']:7.2f}"
                  f"   p50 / minimal's {s['p50_vs_minimal']}  ({s['samples']} samples)")
    if "command" in results:
        s = results["command"]["summary"]
        print(f"command stage: {s['symphony_rate']:.1f} tasks/s against a bare subprocess.run loop's {s['bare_rate']:.1f}: "
              f"x{s['ratio']:.3f}, {s['overhead_ms_per_task']:.2f} ms per task beyond it")
    if "startup" in results:
        s = results["startup"]["summary"]
        for name in ("symphony", "symphony-inline", "symphony-base", "minimal", "minimal32"):
            if name in s:
                print(f"  start-up included, {name:9} {s[name]['rate']:8.0f} tasks/s ({s[name]['seconds']:.2f}s)"
                      + (f"   symphony is x{s[name]['symphony_ratio']:.2f}" if "symphony_ratio" in s[name] else ""))
        print(f"  launch -> ready to claim {s['ready_to_claim_s']}s, -> first Python handler {s['first_handler_s']}s; "
              f"single enqueue {s['single_enqueue_ms']} ms against LPUSH {s['lpush_ms']} ms (x{s['single_enqueue_vs_lpush']})")
    if "enqueue" in results:
        s = results["enqueue"]["summary"]
        print(f"enqueue: {s['items']} items in {s['total_s']:.3f}s = {s['rate']:.0f} items/s "
              f"(load+verify {s['load_verify_s']:.3f}s)")
    if "inline" in results:
        for items, s in results["inline"]["summary"].items():
            print(f"inline: initialize of {int(items):,} items written one per line: {s['rate']:.0f} items/s "
                  f"({s['total_s']:.2f}s, peak RSS {s['peak_rss_mb']:.0f} MB); verification alone "
                  f"{s['verify_rate']:.0f} items/s ({s['verify_s']:.2f}s, {s['verify_peak_rss_mb']:.0f} MB)")
    if "memory" in results:
        m = results["memory"]["symphony"]
        print(f"memory: {m['queued_bytes_per_task']} bytes per queued task (message {m['message_bytes']} bytes); "
              f"after completion {m['after_complete_bytes'] / 1e6:.2f} MB left for {m['items']} items "
              f"({m['results_stream_entries']} results in the capped stream)")
        for name, p in results["memory"]["peers"].items():
            print(f"  {name:9} {p['queued_bytes_per_task']} bytes per queued task")
    if "snapshot" in results:
        t = results["snapshot"]["target"]
        print(f"snapshot: {t['sessions']} sessions x {t['stages']} stages, {t['workers']} workers: "
              f"{t['symphony']['ms']} ms, {t['symphony']['round_trips']} round trips")
        print("  queues    symphony ms/rt     SCAN ms/rt       KEYS ms/rt   (keys in db)")
        for row in results["snapshot"]["scaling"]:
            sy, sc, ke = row["symphony"], row["scan"], row["keys_cmd"]
            print(f"  {row['queues']:>6}   {sy['ms']:8.1f}/{sy['round_trips']:<4} {sc['ms']:8.1f}/{sc['round_trips']:<4}"
                  f"  {ke['ms']:8.1f}/{ke['round_trips']:<4}   ({row['keys']})")
    if "exporter" in results:
        e = results["exporter"]["scrape"]
        print(f"exporter: {e['sessions']} sessions x {e['stages']} stages, {e['workers']} workers: one read "
              f"{e['read_ms']} ms in {e['round_trips']} round trips, /metrics rendered in {e['render_ms']} ms "
              f"({e['series']} series, {e['bytes'] / 1e6:.2f} MB); ten scrapers at once: "
              f"{e['ten_scrapers']['redis_reads']} read, {e['ten_scrapers']['wall_ms']} ms")
        for f in results["exporter"]["finish"]:
            print(f"  finish.lua, {f['per_call']} task(s) per call: {f['usec_per_task']} us of Redis per task")
    if "fleet" in results:
        print("fleet: workers   Redis cmd/s  Redis %core   snapshot full ms (p95)   paged ms (p95)   "
              "console %core  +Redis %core")
        for row in results["fleet"]["rows"]:
            hb, sn, co = row["heartbeats"], row["snapshot"], row["console"]
            paged = sn.get("paged", {"median_ms": float("nan"), "p95_ms": float("nan")})
            print(f"  {row['workers']:>13,}   {hb['commands_per_s']:>10,.0f}  {hb['redis_cpu_pct']:>10.1f}   "
                  f"{sn['full']['median_ms']:>12.1f} ({sn['full']['p95_ms']:.0f})   {paged['median_ms']:>8.1f} "
                  f"({paged['p95_ms']:.0f})   {co['console_cpu_pct']:>12.1f}  {co['redis_cpu_added_pct']:>11.2f}")
    if "fleet_workers" in results:
        rc, cn, hs = (results["fleet_workers"][k] for k in ("registry_change", "connections", "host_sampling"))
        print(f"fleet_workers: a registry change at {rc['sessions']} sessions x {rc['workers']} workers costs Redis "
              f"{rc['redis_cpu_ms_per_change']} ms of CPU (re-reading every definition: {rc['old_redis_cpu_ms_per_change']}"
              f" ms, x{rc['ratio_old_to_new']}); {cn['per_worker_process_max']} connection(s) per worker process, "
              f"{cn['supervisor']} for the supervisor; a heartbeat's host sample {hs['sample_us']} us of CPU "
              f"({hs['processes_on_host']} processes; psutil's recursive walk alone {hs['recursive_walk_us']} us)")
    if "steering" in results:
        st = results["steering"]["summary"]
        print(f"steering: Redis script time per task {st['one_session_us']} us (one session) vs {st['steered_us']} us "
              f"(1,000 sessions, priorities, a limit): x{st['script_us_ratio']}")
    if "repair" in results:
        r = results["repair"]
        print(f"repair: {r['items']} items x {r['stages']} stages ({r['files']} files): plan {r['planning_s']}s, "
              f"listing once {r['list_s']}s: ratio {r['ratio']} (listing into sets {r['list_into_sets_s']}s; "
              f"with loading the session file {r['end_to_end_s']}s, ratio {r['ratio_end_to_end']})")
    if "reclaim" in results:
        for mode, s in results["reclaim"]["summary"].items():
            print(f"reclaim ({mode} killed): median {s['median_s']}s, worst {s['max_s']}s = "
                  f"{s['max_heartbeats']} heartbeats of {s['heartbeat_s']}s")
        for p in results["reclaim"]["peers_default"]:
            print(f"  {p['system']}: {p['reclaim']}")
    print()
    if results.get("run", {}).get("smoke"):
        print("  (smoke sizes: the targets are not judged)")
    for t in results.get("targets", []):
        mark = "MET " if t["met"] else ("MISS" if t["met"] is False else " -- ")
        print(f"  [{mark}] {t['case']}: {t['target']} = {t['value']} (target {t['limit']})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds of every case (default %(default)s)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds a case (CI)")
    p.add_argument("--json", metavar="FILE", help="write every figure as JSON to FILE")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated, from: " + ", ".join(CASES))
    p.add_argument("--systems", default=",".join(s.name for s in ALL),
                   help="throughput systems (default: all; those not installed are skipped)")
    p.add_argument("--processes", type=int, default=2, help="worker processes for every system (default %(default)s)")
    p.add_argument("--window", type=float, default=None, help="seconds measured per throughput run")
    p.add_argument("--heartbeat", type=float, default=5.0, help="Symphony's heartbeat in the throughput case")
    p.add_argument("--max-foreign", type=float, default=0.3,
                   help="a throughput round during which other processes used more than this share of the "
                        "machine is repeated (default %(default)s)")
    p.add_argument("--retries", type=int, default=1, help="how many times such a round is repeated (default 1); "
                                                         "the try with the least foreign load is kept")
    p.add_argument("--stages", default=None, help="throughput: comma-separated stage counts (default 1,4)")
    p.add_argument("--latency-samples", type=int, default=None, help="tasks per system per round in the latency case "
                                                                        "(default 100)")
    args = p.parse_args(argv)
    sizes = SMOKE if args.smoke else Sizes()
    if args.latency_samples:
        sizes = Sizes(**{**sizes.__dict__, "latency_samples": args.latency_samples})
    if args.window:
        sizes = Sizes(**{**sizes.__dict__, "window_s": args.window})
    if args.stages:
        sizes = Sizes(**{**sizes.__dict__, "stages": tuple(int(n) for n in args.stages.split(",") if n.strip())})
    if args.smoke:
        args.rounds, args.retries = 1, 0
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s): {', '.join(unknown)}")
    systems, skipped = [], {}
    for name in (n.strip() for n in args.systems.split(",") if n.strip()):
        if name not in BY_NAME:
            p.error(f"unknown system {name!r}")
        why = BY_NAME[name].missing()
        if why:
            skipped[name] = why
        else:
            systems.append(name)
    for name, why in skipped.items():
        log(f"skipping {name}: {why}")
    server = Server()
    started = time.time()
    results: dict[str, Any] = {}
    try:
        results["machine"] = machine_info(server.client)
        results["run"] = {"started": started, "rounds": args.rounds, "smoke": args.smoke, "processes": args.processes,
                          "systems": systems, "skipped": skipped, "cases": cases, "load_at_start": load_now(),
                          "sizes": sizes.__dict__}
        for case in cases:
            log(f"case {case}")
            t = time.perf_counter()
            results[case] = RUNNERS[case](server, args, sizes, systems)
            results[case + "_s"] = round(time.perf_counter() - t, 1)
        results["run"]["seconds"] = round(time.time() - started, 1)
        results["run"]["load_at_end"] = load_now()
        results["targets"] = targets(results)
        if args.smoke:  # tiny sizes say nothing about the targets: the smoke run only shows the harness works
            for t in results["targets"]:
                t["met"] = None
    finally:
        server.close()
        remove_temp_dirs()
    print_table(results)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str)
        log(f"wrote {args.json}")
    return 0
