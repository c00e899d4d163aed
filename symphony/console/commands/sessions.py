"""``symphony sessions``, ``cancel``, ``retry`` and ``purge``: the operator's verbs on sessions."""
from __future__ import annotations

import argparse
import time
from typing import Sequence

from symphony.engine import SessionState, SessionStatus

from symphony.engine import CANCEL_EFFECT, SymphonyError, compare_definitions

from .common import add_verb_options, confirm, engine_from_args, fail, print_json, print_problems, table


def register(sub: argparse._SubParsersAction) -> None:
    h = "list sessions with their progress"
    p = sub.add_parser("sessions", help=h, description=h)
    p.add_argument("--json", action="store_true", help="print as JSON")
    add_verb_options(p)
    p.set_defaults(func=run_sessions)

    h = "cancel a session: its waiting and running tasks end as cancelled (asks first)"
    p = sub.add_parser("cancel", help=h, description=f"Cancel a session. {CANCEL_EFFECT}")
    p.add_argument("session")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verb_options(p)
    p.set_defaults(func=run_cancel)

    h = "put a session's failed (and timed-out) tasks back in their queues"
    p = sub.add_parser("retry", help=h, description=h + ". They run with the definition the session was registered "
                       "with (or last updated to); a warning says so when its file on disk differs: "
                       "'symphony update SESSION' applies the file first.")
    p.add_argument("session")
    p.add_argument("--stage", help="only this stage")
    p.add_argument("--failed-only", action="store_true", help="leave timed-out tasks alone")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verb_options(p)
    p.set_defaults(func=run_retry)

    h = "forget a session's queues, accounting and records (cleanup of finished work); outputs stay on disk"
    p = sub.add_parser("purge", help=h, description=h)
    p.add_argument("session")
    p.add_argument("--keys", action="store_true", help="also delete the jobs' own key/values")
    p.add_argument("--force", action="store_true", help="even if tasks are still queued or running")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verb_options(p)
    p.set_defaults(func=run_purge)


def print_sessions(sessions: Sequence[SessionStatus]) -> None:
    """One row per session (DONE counts each item once, through the last stage), then what an
    operator may do with the sessions that need it (complete, cancelled, stopped)."""
    rows = []
    for s in sessions:
        age = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created)) if s.created else "-"
        state = "paused" if s.paused and s.state == SessionState.ACTIVE else s.state
        state = f"{state} (paused: {','.join(s.paused_stages)})" if s.paused_stages and not s.paused else state
        state = f"{state} (prio {s.priority})" if s.priority else state
        rows.append((s.name, state, s.pipeline, f"{s.items:,}", f"{s.completed:,}", f"{s.queued:,}",
                     f"{s.in_flight:,}", f"{s.failed + s.timed_out:,}", f"{100 * s.progress:.0f}%", age))
    table(["SESSION", "STATE", "PIPELINE", "ITEMS", "DONE", "QUEUED", "RUNNING", "FAILED", "PROGRESS", "CREATED"], rows,
          right=(3, 4, 5, 6, 7, 8))
    advice = [(s.name, s.advice) for s in sessions if s.advice]
    if advice:
        print()
        for name, text in advice:
            print(f"{name}: {text}")


def run_sessions(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        snap = engine.snapshot(events=1)
    if args.json:
        print_json([s.to_dict() for s in snap.sessions])
    else:
        print_sessions(snap.sessions)
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        engine.session(args.session)  # unknown session: a clear error before asking anything
        if not confirm(f"Cancel session {args.session}? {CANCEL_EFFECT}", args.yes):
            return 1
        result = engine.cancel(args.session)
    if args.json:
        print_json(result.__dict__)
    else:
        print(f"session {result.session} cancelled: {result.cancelled:,} waiting task(s) cancelled"
              + (f"; {result.in_flight} running task(s) stop and are recorded as cancelled" if result.in_flight else ""))
    return 0


def run_retry(args: argparse.Namespace) -> int:
    states = ("failed",) if args.failed_only else ("failed", "timed_out")
    with engine_from_args(args) as engine:
        warn_if_file_differs(engine, args.session)
        result = engine.retry(args.session, args.stage, states)
    if args.json:
        print_json({**result.__dict__, "by_stage": dict(result.by_stage)})
    elif result.requeued:
        print(f"{result.requeued:,} task(s) back in their queues: "
              + ", ".join(f"{k} {v:,}" for k, v in result.by_stage.items()))
    else:
        print(f"session {args.session} has no failed tasks to retry")
    return 0


def warn_if_file_differs(engine, session: str) -> None:
    """Warn (on stderr) when the file a session was registered from no longer says what is
    registered: tasks keep running the registered definition until 'symphony update'."""
    registered, _ = engine.session(session)  # an unknown session: the usual error, before anything else
    if not registered.file:
        return
    try:
        current = engine.session_spec(session, file=registered.file).record()
    except (SymphonyError, OSError) as exc:
        print_problems([], [f"cannot compare session {session} with its file {registered.file}: {exc}"])
        return
    comparison = compare_definitions(registered, current)
    if not comparison.same:
        print_problems([], [f"{registered.file} differs from the definition session {session} runs "
                            f"({comparison.summary()}); the tasks retried now run the registered one. To run "
                            f"them with the file: symphony update {session}, then retry"])


def run_purge(args: argparse.Namespace) -> int:
    with engine_from_args(args) as engine:
        engine.session(args.session)
        what = "its queues, accounting and records" + (", and its jobs' key/values" if args.keys else "")
        if not confirm(f"Purge session {args.session} ({what})? Outputs on disk stay.", args.yes):
            return 1
        result = engine.purge(args.session, job_keys=args.keys, force=args.force)
    if args.json:
        print_json(result.__dict__)
    else:
        print(f"session {result.session} purged ({result.keys_deleted} key(s) deleted"
              + (f", {result.job_keys_deleted} job key/value hash(es)" if args.keys else "") + ")")
    return 0


__all__ = ["register", "fail"]
