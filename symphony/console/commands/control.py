"""``symphony pause``, ``resume``, ``priority``, ``limit``, ``drain`` and ``undrain``: the
operator steering sessions, stages and the fleet."""
from __future__ import annotations

import argparse
import time

from symphony.engine import PAUSE_EFFECT, Drain, Engine, SymphonyError

from .common import add_verb_options, engine_from_args, print_json

DRAIN_EFFECT = ("The workers it matches stop claiming, finish what they hold (with --now: hand it back to the head "
                "of its queue, the attempt not charged) and exit (with --idle: stay up, claiming nothing, until "
                "'symphony undrain'). Each worker sees the drain at its next heartbeat. This is the step before "
                "deleting or rebooting a machine.")


def _target_options(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("target", nargs="?", help=f"a worker id, a worker name (--name) or a host to {verb}")
    p.add_argument("--worker", help="a worker process id, or the --name of a group of worker processes")
    p.add_argument("--host", help="a host name (as the workers report it)")
    p.add_argument("--pool", help="every worker of this pool")




_KEEP = object()  # no max_running given: show the limits, or change only the rate


def _limit_value(text: str) -> int | None:
    if text.lower() in ("none", "off", "-"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a limit is a number of tasks or 'none', not {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    h = "pause a session (or one stage of it): no new claims, running tasks finish"
    p = sub.add_parser("pause", help=h, description=f"Pause a session, or one stage of it. {PAUSE_EFFECT}")
    p.add_argument("session")
    p.add_argument("--stage", help="only this stage of the session")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verb_options(p)
    p.set_defaults(func=run_pause)

    h = "resume a paused session (every stage of it), or one stage"
    p = sub.add_parser("resume", help=h, description=h)
    p.add_argument("session")
    p.add_argument("--stage", help="only this stage of the session")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verb_options(p)
    p.set_defaults(func=run_resume)

    h = "set a session's priority (0 to 1000, default 0): workers take the highest-priority ready session first"
    p = sub.add_parser("priority", help=h, description=h + "; sessions of equal priority share the workers, "
                       "least recently served first, and a lower one runs whenever the higher ones have nothing ready.")
    p.add_argument("session")
    p.add_argument("priority", type=int)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verb_options(p)
    p.set_defaults(func=run_priority)

    h = "show or set a stage's limits: most tasks running at once over the whole fleet, and a rate"
    p = sub.add_parser("limit", help=h, description=h + ". Set live, they replace what the pipeline declares "
                       "(max_running, rate) until set to 'none'. With --session, the cap is that session's own.")
    p.add_argument("stage")
    p.add_argument("max_running", nargs="?", type=_limit_value, default=_KEEP,
                   help="a number of tasks (0 stops the stage), or 'none' (back to the pipeline's)")
    p.add_argument("--rate", help="e.g. 120/min, 5/s, 1000/hour; 'none': back to the pipeline's")
    p.add_argument("--session", help="set this session's own max_running for the stage instead")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verb_options(p)
    p.set_defaults(func=run_limit)

    h = "drain a worker, a host or a pool: its workers stop claiming, finish what they hold and exit"
    p = sub.add_parser("drain", help=h, description=f"Drain a worker, a host or a pool. {DRAIN_EFFECT}")
    _target_options(p, "drain")
    p.add_argument("--now", action="store_true", help="hand back running tasks at once instead of finishing them")
    p.add_argument("--idle", action="store_true", help="keep the workers up, claiming nothing, instead of exiting")
    p.add_argument("--wait", action="store_true",
                   help="wait until every matching worker has exited (with --idle: holds nothing)")
    p.add_argument("--timeout", type=float, default=0.0, metavar="SECONDS",
                   help="with --wait: give up after this long (exit code 1); 0 waits for ever")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verb_options(p)
    p.set_defaults(func=run_drain)

    h = "remove a drain: its idle workers claim again (workers that exited must be started again)"
    p = sub.add_parser("undrain", help=h, description=h)
    _target_options(p, "undrain")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verb_options(p)
    p.set_defaults(func=run_undrain)


def _resolve(engine: Engine, args: argparse.Namespace) -> dict[str, str]:
    """Which kind of target the operator named: the flags, or the positional name looked up in
    the registry (a worker id or name first, else a host)."""
    given = {k: getattr(args, k) for k in ("worker", "host", "pool") if getattr(args, k)}
    if args.target:
        if given:
            raise SymphonyError("name the target once: either as an argument or with --worker/--host/--pool")
        if args.func is run_undrain:  # what was drained under that name
            for d in engine.drains():
                if d.target == args.target and d.kind != "pool":
                    return {d.kind: d.target}
        workers = engine.snapshot(events=1).workers
        if any(args.target in (w.id, w.name) for w in workers):
            return {"worker": args.target}
        return {"host": args.target}
    if len(given) != 1:
        raise SymphonyError("name exactly one worker, host or pool (e.g. 'symphony drain vm3' or --pool linux)")
    return given


def _holding(engine: Engine, drain: Drain) -> list:
    """The matching workers still alive, and (idle drains) those still holding a task."""
    out = []
    for w in engine.snapshot(events=1).workers:
        if w.state == "dead" or not drain.matches(w):
            continue
        if drain.idle and w.state == "drained" and not w.current:
            continue
        out.append(w)
    return out


def run_drain(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        target = _resolve(engine, args)
        drain = engine.drain(**target, now=args.now, idle=args.idle)
        matched = [w.id for w in engine.snapshot(events=1).workers if w.state != "dead" and drain.matches(w)]
        if not args.json:
            print(f"drained {drain.describe()}; {len(matched)} worker(s) match now")
        left: list = []
        if args.wait:
            deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
            while True:
                left = _holding(engine, drain)
                if not left or (deadline is not None and time.monotonic() >= deadline):
                    break
                time.sleep(0.25)
        if args.json:
            print_json({**drain.to_dict(), "workers": matched, "waiting_for": [w.id for w in left]})
        elif args.wait and left:
            print(f"still waiting for {len(left)} worker(s): " + ", ".join(w.id for w in left))
        elif args.wait:
            print("every matching worker " + ("is idle, holding nothing" if drain.idle else "has exited"))
    return 1 if args.wait and left else 0


def run_undrain(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        target = _resolve(engine, args)
        removed = engine.undrain(**target)
    kind, name = next(iter(target.items()))
    if args.json:
        print_json({"kind": kind, "target": name, "removed": removed})
    else:
        print(f"undrained {kind} {name}" if removed else f"{kind} {name} was not drained")
    return 0


def _print_steering(args: argparse.Namespace, steering, what: str) -> None:
    if args.json:
        print_json({"session": steering.session, **steering.to_dict()})
    else:
        print(what)


def run_pause(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        s = engine.pause(args.session, args.stage)
    _print_steering(args, s, f"session {args.session}" + (f" stage {args.stage}" if args.stage else "")
                    + " paused: nothing more is claimed from it; running tasks finish")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        s = engine.resume(args.session, args.stage)
    still = f" (still paused: {', '.join(s.paused_stages)})" if s.paused_stages and not s.paused else ""
    _print_steering(args, s, f"session {args.session}" + (f" stage {args.stage}" if args.stage else "")
                    + " resumed" + still)
    return 0


def run_priority(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        s = engine.set_priority(args.session, args.priority)
    _print_steering(args, s, f"session {args.session}: priority {s.priority}")
    return 0


def run_limit(args: argparse.Namespace) -> int:
    has_max = args.max_running is not _KEEP
    rate = args.rate
    with engine_from_args(args) as engine:
        if args.session:
            if rate is not None or not has_max:
                raise SymphonyError("with --session, give the session's max_running for the stage (or 'none'); "
                                    "a rate is the stage's, over the whole fleet")
            s = engine.set_session_limit(args.session, args.stage, args.max_running)
            _print_steering(args, s, f"session {args.session}: max_running of {args.stage} "
                            + ("none of its own" if args.max_running is None else str(args.max_running)))
            return 0
        changes = {}
        if has_max:
            changes["max_running"] = args.max_running
        if rate is not None:
            changes["rate"] = None if rate.lower() in ("none", "off", "-") else rate
        control = engine.set_stage_limits(args.stage, **changes) if changes else engine.stage_control([args.stage])[0]
    if args.json:
        print_json(control.to_dict())
    else:
        limit = "no limit" if control.max_running is None else f"max_running {control.max_running}"
        print(f"stage {control.stage}: {control.running} running, {limit}, "
              + (f"rate {control.rate}" if control.rate else "no rate limit"))
    return 0
