"""``symphony slurm``: workers as SLURM jobs, their states tracked (docs/slurm.md).

    symphony slurm script --pool linux --time 04:00:00       # print the batch script
    symphony slurm submit --pool linux --jobs 8              # submit it (a job array), record the ids
    symphony slurm track                                     # move each job id as SLURM reports it
    symphony slurm status                                    # every tag's jobs, per state set
    symphony slurm adapt --pool linux --min 0 --max 20       # as many jobs as the pool's work needs
    symphony slurm jobs 1234_0 --last                        # key/values written from one SLURM job
    symphony slurm cleanup --tag linux                       # forget a tag's job ids (--keys: and their key/values)
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from symphony.engine import ConfigError, JobSet, SlurmJob, shared_options, slurm_origin

from .. import fmt
from ..servicelog import service_log
from .common import add_verb_options, confirm, engine_from_args, fail, print_json, table

HELP = "workers as SLURM jobs: batch script, submit, track their states, status, adapt, cleanup"
SETS = [s.value for s in JobSet]


def _script_args(p: argparse.ArgumentParser, *, adapt: bool = False) -> None:
    g = p.add_argument_group("the batch script")
    g.add_argument("--pool", required=True, help="the pool whose stages the workers serve (e.g. linux)")
    g.add_argument("--tag", help="record the jobs under this tag (default: the pool)")
    if not adapt:
        g.add_argument("--processes", "-n", type=int, default=1, help="worker processes per job (default %(default)s)")
        g.add_argument("--burst", action="store_true", help="workers exit (and the job ends) when the pool's work is done")
    g.add_argument("--time", help="the job's time limit (sbatch --time, e.g. 04:00:00; default: the partition's)")
    g.add_argument("--partition", help="sbatch --partition")
    g.add_argument("--account", help="sbatch --account")
    g.add_argument("--mem", help="sbatch --mem (e.g. 8G)")
    g.add_argument("--cpus", type=int, help="sbatch --cpus-per-task (default: one per worker process)")
    g.add_argument("--job-name", help="sbatch --job-name (default: symphony-<tag>)")
    g.add_argument("--output", default="%x-%j.out", help="sbatch --output (default %(default)s, in the working directory)")
    g.add_argument("--chdir", help="sbatch --chdir (default: the directory you submit from)")
    g.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="another sbatch option for the script, e.g. --sbatch=--qos=high (repeatable)")
    g.add_argument("--python-env", metavar="DIR", help="the Python environment with Symphony (default: this one)")
    g.add_argument("--prologue", action="append", default=[], metavar="LINE",
                   help="a shell line run before the environment is activated, e.g. 'module load python' (repeatable)")
    g.add_argument("--worker-arg", action="append", default=[], metavar="ARG",
                   help="an argument for symphony-worker, e.g. --worker-arg=--nice=10 (repeatable)")
    g.add_argument("--warning", type=int, default=300, metavar="SECONDS",
                   help="SLURM signals the worker this long before the time limit; it stops claiming (default %(default)s)")
    g.add_argument("--margin", type=int, default=30, metavar="SECONDS",
                   help="running tasks not finished this long before the end are handed back (default %(default)s)")
    g.add_argument("--term-grace", type=int, default=20, metavar="SECONDS",
                   help="after SIGTERM (scancel, preemption) running tasks are handed back after this; keep it "
                        "below the cluster's KillWait (default %(default)s)")
    add_verb_options(p)


def _options(args: argparse.Namespace, *, processes: int | None = None, burst: bool | None = None):
    from symphony.slurm import ScriptOptions

    return ScriptOptions(pool=args.pool, tag=args.tag or "", processes=processes or args.processes,
                         time=args.time, partition=args.partition, account=args.account, mem=args.mem, cpus=args.cpus,
                         sbatch=tuple(args.sbatch), job_name=args.job_name, output=args.output, chdir=args.chdir,
                         python_env=args.python_env or sys.prefix, prologue=tuple(args.prologue),
                         burst=args.burst if burst is None else burst, warning_s=args.warning, margin_s=args.margin,
                         term_grace_s=args.term_grace, worker_args=tuple(args.worker_arg))


def _render(args: argparse.Namespace, options) -> str:
    from symphony.slurm import render

    return render(options, _config(args), password_file=args.redis_password_file, key_file=args.encryption_key_file)


def _config(args: argparse.Namespace):
    return shared_options(args).redis


def _slurm_client(args: argparse.Namespace):
    """SLURM's tools, with the Redis server in the environment sbatch copies into each job (so a
    script that takes its Redis settings from the job's environment finds the one named here)."""
    import os

    from symphony.slurm import SlurmClient

    return SlurmClient(env={**os.environ, "SYMPHONY_REDIS_URL": _config(args).url})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("slurm", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="slurm_verb", metavar="VERB")
    verbs.required = True

    h = "print the batch script of a worker job (nothing is submitted)"
    s = verbs.add_parser("script", help=h, description=h)
    _script_args(s)
    s.set_defaults(func=run_script)

    h = "submit N worker jobs (a job array where it can) and record their ids under a tag"
    s = verbs.add_parser("submit", help=h, description=h)
    s.add_argument("--jobs", type=int, default=1, help="how many jobs (default %(default)s)")
    s.add_argument("--no-array", action="store_true", help="single jobs, not a job array")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    _script_args(s)
    s.set_defaults(func=run_submit)

    h = "track the recorded jobs: move each id into the state set SLURM reports (a daemon; --once: one poll)"
    s = verbs.add_parser("track", help=h, description=h)
    s.add_argument("--interval", type=float, default=10.0, metavar="SECONDS", help="between polls (default %(default)s)")
    s.add_argument("--tag", action="append", default=[], help="only these tags (default: every tag of this cluster)")
    s.add_argument("--once", action="store_true", help="poll once, print what happened, exit")
    s.add_argument("--json", action="store_true", help="with --once: the report as JSON")
    add_verb_options(s)
    s.set_defaults(func=run_track)

    h = "show the recorded jobs of every tag: state sets, SLURM's state and reason, workers"
    s = verbs.add_parser("status", help=h, description=h)
    s.add_argument("--tag", help="only this tag")
    s.add_argument("--state", choices=SETS, help="only jobs in this set")
    s.add_argument("--limit", type=int, default=50, help="newest jobs shown per tag (default %(default)s)")
    s.add_argument("--ids", action="store_true", help="list every set's ids (one line per set, for job lists kept in files)")
    s.add_argument("--json", action="store_true", help="print as JSON")
    add_verb_options(s)
    s.set_defaults(func=run_status)

    h = "forget the job ids recorded under a tag (--keys: also the key/values their tasks wrote)"
    s = verbs.add_parser("cleanup", help=h, description=h)
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--tag", help="the tag to clean up")
    which.add_argument("--all", action="store_true", help="every tag")
    s.add_argument("--keys", action="store_true", help="also delete the key/values the tasks of those jobs wrote")
    s.add_argument("--force", action="store_true", help="even if jobs are still pending or running (they are no longer tracked)")
    s.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    add_verb_options(s)
    s.set_defaults(func=run_cleanup)

    h = "keep pending+running jobs proportional to the pool's queued work (submit, cancel pending, burst workers)"
    s = verbs.add_parser("adapt", help=h, description=h)
    s.add_argument("--min", type=int, default=0, help="fewest jobs (default %(default)s)")
    s.add_argument("--max", type=int, default=20, help="most jobs, pending and running together (default %(default)s)")
    s.add_argument("--per-job", type=int, default=1, help="worker processes per job (default %(default)s)")
    s.add_argument("--max-pending", type=int, default=4,
                   help="most jobs waiting in SLURM's queue at once (default %(default)s)")
    s.add_argument("--interval", type=float, default=10.0, metavar="SECONDS", help="between rounds (default %(default)s)")
    s.add_argument("--once", action="store_true", help="one round, then exit")
    _script_args(s, adapt=True)
    s.set_defaults(func=run_adapt)

    h = "record SLURM jobs submitted some other way (e.g. by hand) under a tag"
    s = verbs.add_parser("adopt", help=h, description=h)
    s.add_argument("ids", nargs="+", metavar="JOBID", help="job ids (1234, 1234_0, or an array range 1234_[0-7])")
    s.add_argument("--tag", required=True)
    s.add_argument("--pool", required=True)
    add_verb_options(s)
    s.set_defaults(func=run_adopt)

    h = "the key/values written by the tasks one SLURM job ran (--last: the most recent)"
    s = verbs.add_parser("jobs", help=h, description=h)
    s.add_argument("job", metavar="JOBID", help="the SLURM job id (1234, or 1234_0 for an array task)")
    s.add_argument("--last", action="store_true", help="the key/values of the most recent one")
    s.add_argument("--cluster", help="the SLURM cluster (default: the job's tag's, else this machine's)")
    s.add_argument("--limit", type=int, default=100)
    s.add_argument("--json", action="store_true", help="print as JSON")
    add_verb_options(s)
    s.set_defaults(func=run_jobs)


# --- script, submit, adopt --------------------------------------------------------------------------
def run_script(args: argparse.Namespace) -> int:
    sys.stdout.write(_render(args, _options(args)))
    return 0


def run_submit(args: argparse.Namespace) -> int:
    from symphony.slurm import submit

    options = _options(args)
    script = _render(args, options)
    with engine_from_args(args) as engine:
        result = submit(engine, _slurm_client(args), script, tag=options.tag_name, pool=options.pool, jobs=args.jobs,
                        use_array=not args.no_array)
    if args.json:
        print_json({**result.__dict__, "ids": list(result.ids), "arrays": list(result.arrays)})
        return 0
    how = f"job array {', '.join(result.arrays)}" if result.arrays else f"{result.sbatch_calls} single job(s)"
    print(f"submitted {len(result.ids)} job(s) for pool {result.pool} on cluster {result.cluster} as {how}; "
          f"recorded under tag {result.tag}: {' '.join(result.ids)}")
    print("track them with: symphony slurm track   (and see them: symphony slurm status)")
    return 0


def run_adopt(args: argparse.Namespace) -> int:
    from symphony.slurm import SlurmClient, expand_ids, record_jobs

    ids = [job for raw in args.ids for job in expand_ids(raw)]
    bad = [j for j in ids if not j.replace("_", "").isdigit()]
    if bad:
        raise ConfigError(f"not a SLURM job id: {bad[0]!r}")
    try:
        cluster = SlurmClient().cluster()
    except Exception:  # adopting from a machine without SLURM's tools: the tracker's cluster accepts it
        cluster = ""
    with engine_from_args(args) as engine:
        added = record_jobs(engine, args.tag, args.pool, cluster, ids)
    print(f"{added} job(s) recorded under tag {args.tag}" + (f" ({len(ids) - added} were already)" if added < len(ids) else ""))
    return 0


# --- track -----------------------------------------------------------------------------------
def _report_line(report) -> str:
    if not report.active:
        return f"standing by: another tracker is active ({report.holder or report.error})"
    if report.error:
        return f"poll failed: {report.error}"
    return (f"{report.jobs} live job(s) in {report.tags} tag(s) asked with {report.source or 'nothing'} "
            f"in {report.slurm_s:.3f}s ({report.pending} pending, {report.running} running); {report.moved} moved; "
            f"poll {report.seconds:.3f}s")


def run_track(args: argparse.Namespace) -> int:
    from symphony.slurm import SlurmClient, Tracker

    if args.interval <= 0:
        raise ConfigError("--interval must be positive")
    with engine_from_args(args, client_name="symphony-slurm-tracker") as engine:
        tracker = Tracker(engine, SlurmClient(), interval_s=args.interval, tags=args.tag)
        if args.once:
            try:
                report = tracker.poll()
            finally:
                tracker.close()
            if args.json:
                print_json(report.__dict__)
            else:
                print(_report_line(report))
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        say = service_log(args, "symphony-slurm-tracker", "symphony.slurm.tracker")
        stamp = (lambda: "") if getattr(args, "log_format", "text") == "json" else (lambda: time.strftime("%H:%M:%S "))
        say(f"tracking SLURM jobs of cluster {tracker.cluster} every {args.interval:g}s (Ctrl-C stops)")
        last = [""]

        def show(report) -> None:
            line = _report_line(report)
            if report.moved or report.error or line.split(" ")[0] != last[0].split(" ")[0]:
                say(stamp() + line)
            last[0] = line

        try:
            tracker.run(stop, show)
        except KeyboardInterrupt:
            pass
        say("tracker stopped (the job ids stay recorded; start it again any time)")
    return 0


# --- status ----------------------------------------------------------------------------------
def _stamp(at: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(at)) if at else "-"


def _workers_by_job(snap) -> dict[str, int]:
    """Live workers per SLURM job (by its numeric id and by its array id)."""
    workers: dict[str, int] = {}
    for w in snap.workers:
        if w.slurm_job_id and w.state != "dead":
            for key in {w.slurm_job_id, w.slurm_array_id} - {""}:
                workers[key] = workers.get(key, 0) + 1
    return workers


def _tag_jobs(engine, tag: str, args: argparse.Namespace) -> tuple[SlurmJob, ...]:
    if not args.state:
        return engine.slurm.jobs(tag, limit=max(args.limit, 1))
    return tuple(j for j in engine.slurm.jobs(tag, limit=10_000) if j.set.value == args.state)[: args.limit]


def _print_tag(tag, jobs, sets, workers: dict[str, int], now: float) -> None:
    polled = f"tracked {fmt.age(now - tag.polled)} ago" if tag.polled else "not tracked yet (symphony slurm track)"
    counts = ", ".join(f"{v} {k}" for k, v in tag.counts.items() if v and k != "PENDING_AND_RUNNING")
    print(f"tag {tag.tag}: pool {tag.pool or '-'}, cluster {tag.cluster or '-'}; {tag.pending} pending, "
          f"{tag.running} running, {tag.finished} finished" + (f" ({counts})" if counts else "") + f"; {polled}")
    if sets is not None:
        for name in ["ALL", *SETS]:
            print(f"  {name}: {' '.join(sorted(sets.get(name, ()))) or '(empty)'}")
        return
    table(["JOB", "SET", "SLURM STATE", "REASON", "EXIT", "NODE", "SUBMITTED", "ENDED", "WORKERS"],
          [_job_row(j, workers) for j in jobs], right=(8,))


def run_status(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        tags = [t for t in engine.slurm.tags() if not args.tag or t.tag == args.tag]
        if args.tag and not tags:
            return fail(f"no SLURM jobs are recorded under tag {args.tag}")
        snap = engine.snapshot(events=0)
        shown = [(tag, _tag_jobs(engine, tag.tag, args), engine.slurm.membership(tag.tag) if args.ids else None)
                 for tag in tags]
    workers = _workers_by_job(snap)
    if args.json:
        print_json({"tags": [{**tag.to_dict(), "jobs": [{**j.to_dict(), "workers": workers.get(j.id, 0)} for j in jobs],
                              **({"sets": {k: sorted(v) for k, v in sets.items()}} if sets is not None else {})}
                             for tag, jobs, sets in shown]})
        return 0
    if not shown:
        print("no SLURM jobs are recorded yet (symphony slurm submit --pool POOL --jobs N)")
    for n, (tag, jobs, sets) in enumerate(shown):
        if n:
            print()
        _print_tag(tag, jobs, sets, workers, snap.taken_at)
    return 0


def _job_row(job: SlurmJob, workers: dict[str, int]) -> tuple:
    reason = job.reason or (job.note[:60] + "..." if len(job.note) > 60 else job.note)
    return (job.id, job.set.value, job.state or "-", reason or "-", job.exit_code or "-", job.node or "-",
            _stamp(job.submitted), _stamp(job.ended), workers.get(job.id, 0) or workers.get(job.job_id, 0) or "-")


# --- cleanup ---------------------------------------------------------------------------------
def run_cleanup(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        tags = [t for t in engine.slurm.tags() if args.all or t.tag == args.tag]
        if not tags:
            return fail(f"no SLURM jobs are recorded under tag {args.tag}" if args.tag else "no SLURM jobs are recorded")
        live = sum(t.live for t in tags)
        if live and not args.force:
            return fail(f"{live} job(s) are still pending or running; they would no longer be tracked. Wait for them "
                        "(or scancel them), or pass --force")
        what = "their job ids" + (" and the key/values their tasks wrote" if args.keys else "")
        names = ", ".join(t.tag for t in tags)
        if not confirm(f"Forget the SLURM jobs of tag(s) {names} ({what})?", args.yes):
            return 1
        for tag in tags:
            keys_deleted = _delete_job_keys(engine, tag.tag, tag.cluster) if args.keys else 0
            result = engine.slurm.cleanup(tag.tag, force=args.force)
            if not result.done:  # a job was submitted meanwhile
                return fail(f"tag {tag.tag}: {result.jobs} job(s) became pending meanwhile; nothing more was removed")
            print(f"tag {tag.tag}: {result.jobs} job id(s) forgotten"
                  + (f", {keys_deleted} key/value hash(es) deleted" if args.keys else ""))
    return 0


def _delete_job_keys(engine, tag: str, cluster: str) -> int:
    """Delete the key/values of every task run by a job of ``tag`` (before the ids are forgotten,
    so an interrupted cleanup can simply be run again)."""
    deleted = 0
    for job_id in sorted(engine.slurm.membership(tag)["ALL"]):
        origin = slurm_origin(cluster, job_id)
        jobs = engine.origin_jobs(origin, limit=100_000)
        with engine.client.pipeline(transaction=False) as pipe:
            for session, job in jobs:
                stage, _, item = job.partition(":")
                pipe.delete(engine.keys.job(session, stage, item))
                pipe.srem(engine.keys.jobs(session), job)
            pipe.delete(engine.keys.origin_jobs(origin))
            replies = pipe.execute()
        deleted += sum(int(r) for r in replies[0:-1:2])
    return deleted


# --- adapt -----------------------------------------------------------------------------------
def run_adapt(args: argparse.Namespace) -> int:
    from symphony.slurm import AdaptLimits, Adapter

    limits = AdaptLimits(minimum=args.min, maximum=args.max, per_job=args.per_job, max_pending=args.max_pending,
                         interval_s=args.interval)
    options = _options(args, processes=args.per_job, burst=True)
    with engine_from_args(args, client_name="symphony-slurm-adapt") as engine:
        adapter = Adapter(engine, _slurm_client(args), options, limits, _config(args), password_file=args.redis_password_file,
                          key_file=args.encryption_key_file)

        def show(decision) -> None:
            print(time.strftime("%H:%M:%S ") + f"work {decision.work}: {decision.pending} pending + {decision.running} "
                  f"running, target {decision.target}" + (f"; submit {decision.submit}" if decision.submit else "")
                  + (f"; cancel {decision.cancel} pending" if decision.cancel else ""), flush=True)

        if args.once:
            try:
                decision = adapter.step()
            finally:
                adapter.lease.release()
                adapter.tracker.close()
            if decision is None:
                return fail(f"another adapter runs for tag {adapter.tag} ({adapter.lease.holder()})")
            show(decision)
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(f"adapting pool {adapter.pool} (tag {adapter.tag}) between {args.min} and {args.max} job(s) of "
              f"{args.per_job} process(es), every {args.interval:g}s (Ctrl-C stops; running jobs finish their work)",
              flush=True)
        last = [None]

        def changed(decision) -> None:
            key = (decision.work > 0, decision.pending, decision.running, decision.submit, decision.cancel)
            if key != last[0]:
                show(decision)
            last[0] = key

        try:
            adapter.run(stop, changed)
        except KeyboardInterrupt:
            pass
        print("adapt stopped (running jobs stay and finish their work; pending ones stay queued)", flush=True)
    return 0


# --- jobs ------------------------------------------------------------------------------------
def run_jobs(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        found = engine.slurm.find(args.job)
        job_id = found.id if found else args.job
        cluster = args.cluster
        if cluster is None and found is not None:
            tag = engine.slurm.tag(found.tag)
            cluster = tag.cluster if tag else ""
        if cluster is None:
            try:
                from symphony.slurm import SlurmClient

                cluster = SlurmClient().cluster()
            except Exception:
                cluster = ""
        jobs = engine.origin_jobs(slurm_origin(cluster, job_id), limit=args.limit)
        if not jobs:
            return fail(f"no task run by SLURM job {args.job}{f' on cluster {cluster}' if cluster else ''} "
                        "wrote key/values")
        if args.last:
            session, job = jobs[0]
            values = engine.job(session, job)
    if args.last:
        if args.json:
            print_json({"slurm_job": job_id, "session": session, "job": job, "values": values})
        else:
            print(f"job {job} of session {session} (the last one SLURM job {job_id} ran):")
            table(["KEY", "VALUE"], sorted(values.items()))
        return 0
    if args.json:
        print_json({"slurm_job": job_id, "jobs": [{"session": s, "job": j} for s, j in jobs]})
    else:
        table(["SESSION", "JOB (stage:item)"], jobs)
        print("(symphony jobs SESSION --job STAGE:ITEM shows one job's key/values; --last the newest here)")
    return 0
