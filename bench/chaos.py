"""Run Symphony's chaos scenarios at any size and print the figures.

    python bench/chaos.py                       # every scenario at full size (5,000 items, a minute of kills)
    python bench/chaos.py kills --items 500 --seconds 20
    python bench/chaos.py --small               # the sizes the test suite uses
    python bench/chaos.py --json results.jsonl  # also append the figures as JSON lines

Each scenario starts its own redis-server on a free port (stopped by its PID), a supervisor of
worker processes, and a 3-stage session; see tests/chaos.py for what is audited. The same
scenarios run small in every test run (tests/test_chaos.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import chaos  # noqa: E402

SCENARIOS = ("kills", "restart", "network", "poison", "hostile", "broken", "flush")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"{', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--items", type=int, help="items per session (default 5000, --small: the tests' sizes)")
    p.add_argument("--processes", type=int, default=4, help="worker processes (default %(default)s)")
    p.add_argument("--seconds", type=float, help="how long the kill driver runs (default 60)")
    p.add_argument("--interval", type=float, default=3.0, help="seconds between kills (default %(default)s)")
    p.add_argument("--pause", type=float, default=4.0, help="how long Redis stays frozen (default %(default)s)")
    p.add_argument("--small", action="store_true", help="the small sizes of the test suite")
    p.add_argument("--json", metavar="FILE", help="append the figures to FILE as JSON lines")
    p.add_argument("--keep", action="store_true", help="keep the working directory")
    args = p.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    wanted = args.scenarios or list(SCENARIOS)
    items = args.items or (None if args.small else 5000)
    seconds = args.seconds or (8.0 if args.small else 60.0)
    interval = 1.0 if args.small and args.interval == 3.0 else args.interval
    failures = 0
    for name in wanted:
        workdir = Path(tempfile.mkdtemp(prefix=f"symphony-chaos-{name}-"))
        started = time.monotonic()
        try:
            if name == "kills":
                figures = chaos.worker_kills(workdir, items=items or 150, processes=args.processes,
                                             duration=seconds, interval=interval)
            elif name == "restart":
                figures = chaos.redis_restart(workdir, items=items or 120, processes=args.processes)
            elif name == "network":
                figures = chaos.network_trouble(workdir, items=min(items or 90, 2000), processes=args.processes,
                                                pause_s=args.pause)
            elif name == "poison":
                figures = chaos.poison(workdir, items=items or 40, processes=min(args.processes, 2))
            elif name == "hostile":
                figures = chaos.hostile_handlers(workdir, items=items or 40, processes=args.processes)
            elif name == "broken":
                figures = chaos.broken_host(workdir, items=items or 120, processes=max(1, args.processes // 2),
                                            broken_processes=max(1, args.processes // 2))
            else:  # both ways of losing everything: FLUSHALL, and a restart without the AOF
                figures = chaos.redis_flush(workdir, items=items or 120, processes=args.processes, mode="flushall")
                print(figures.line(), flush=True)
                failures += 1 if (figures.lost or figures.untraced or figures.double_completions) else 0
                if args.json:
                    with open(args.json, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(figures.to_dict()) + "\n")
                restart_dir = workdir / "restart"
                restart_dir.mkdir()
                figures = chaos.redis_flush(restart_dir, items=items or 120, processes=args.processes, mode="restart")
        except Exception as exc:  # report and go on with the next scenario
            failures += 1
            print(f"[chaos] {name}: FAILED after {time.monotonic() - started:.1f}s: {exc}")
            continue
        finally:
            if not args.keep:
                import shutil

                shutil.rmtree(workdir, ignore_errors=True)
        print(figures.line(), flush=True)
        bad = figures.lost or figures.untraced or figures.double_completions
        failures += 1 if bad else 0
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(figures.to_dict()) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
