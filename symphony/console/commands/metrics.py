"""``symphony metrics``: collect VM scale-set metrics from Azure Monitor; show machine CPU; serve
Symphony's figures to Prometheus."""
from __future__ import annotations

import argparse
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

from symphony.engine import Engine, redact

from .. import fmt
from ..servicelog import service_log
from .common import add_verb_options, engine_from_args, fail, print_json, table

if TYPE_CHECKING:  # the collector is imported when it runs: 'metrics show' needs no Azure extra
    from symphony.azure.monitor import AzureMonitorConfig, CollectResult

SPARK_WIDTH = 30  # characters of history in `symphony metrics show`
HELP = ("collect VM scale-set metrics from Azure Monitor (collect), show machine CPU (show), or serve every "
        "figure to Prometheus (serve)")

COLLECT_EPILOG = """\
Reads "Percentage CPU" (per scale set and per instance, dimension VMName), Disk Read/Write Bytes
and Network In/Out Total of VM scale sets from Azure Monitor (no VM extension), one point a
minute, into Redis (the last --retention hours, read by the console) and optionally into JSON
Lines / CSV files for analysis.

configuration (flags override the environment):
  SYMPHONY_AZURE_SUBSCRIPTION (or AZURE_SUBSCRIPTION_ID), SYMPHONY_AZURE_RESOURCE_GROUP,
  SYMPHONY_AZURE_SCALE_SETS (comma-separated; default: every scale set of the resource group),
  SYMPHONY_AZURE_REGION, SYMPHONY_AZURE_INTERVAL, SYMPHONY_AZURE_RETENTION
credentials (azure-identity's DefaultAzureCredential): AZURE_TENANT_ID + AZURE_CLIENT_ID +
  AZURE_CLIENT_SECRET (service principal), a managed identity on the VM, or 'az login'.
  The identity needs 'Monitoring Reader' and 'Reader' on the resource group.

examples:
  symphony metrics collect --subscription SUB --resource-group scan-rg
  symphony metrics collect --scale-set win-vmss --scale-set linux-vmss --jsonl vm-metrics.jsonl
  symphony metrics collect --once --no-redis --csv vm-metrics.csv     # from cron, files only
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help=HELP, description=HELP,
                       epilog="Run 'symphony metrics ACTION --help' for the options of each action.")
    add_verb_options(p)  # here (symphony metrics --redis URL show), before it, or after the action
    verbs = p.add_subparsers(dest="metrics_verb", metavar="ACTION")
    verbs.required = True

    c = verbs.add_parser("collect", help="poll Azure Monitor for VM scale-set metrics",
                         description="Poll Azure Monitor for VM scale-set metrics.", epilog=COLLECT_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    a = c.add_argument_group("Azure")
    a.add_argument("--subscription", metavar="ID", help="subscription id")
    a.add_argument("--resource-group", "-g", metavar="NAME", help="resource group of the scale sets")
    a.add_argument("--scale-set", "-s", dest="scale_sets", action="append", metavar="NAME",
                   help="a scale set to watch (repeat, or comma-separate; default: every scale set of the group)")
    a.add_argument("--region", metavar="NAME", help="the scale sets' region, e.g. westeurope "
                                                    "(default: each scale set's location, from Azure)")
    w = c.add_argument_group("when and where")
    w.add_argument("--once", action="store_true", help="poll once and exit (1 if anything went wrong)")
    w.add_argument("--interval", metavar="DURATION", help="time between polls (default 60s; e.g. 30s, 2m)")
    w.add_argument("--lookback", metavar="DURATION", default="15m",
                   help="window re-read by each poll (Azure revises its latest minutes; default %(default)s)")
    w.add_argument("--retention", metavar="DURATION", help="history kept in Redis (default 6h)")
    w.add_argument("--max-instances", type=int, default=1000, metavar="N",
                   help="instances per scale set in the per-instance query (default %(default)s)")
    w.add_argument("--jsonl", metavar="FILE", help="append settled minutes to FILE as JSON Lines (or, for "
                   "az://CONTAINER/PREFIX, to one append blob per day, PREFIX/YYYY-MM-DD.jsonl)")
    w.add_argument("--csv", metavar="FILE", help="append settled minutes to FILE as CSV (or, for "
                   "az://CONTAINER/PREFIX, to one append blob per day, PREFIX/YYYY-MM-DD.csv)")
    w.add_argument("--no-redis", action="store_true", help="write only the files, not Redis")
    add_verb_options(c)
    c.set_defaults(func=run_collect)

    s = verbs.add_parser("show", help="show CPU per scale set (Azure) or per worker pool (heartbeats)",
                         description="Show CPU per VM scale set (from Azure Monitor, when fresh) or per worker "
                                     "pool (from the workers' heartbeats), with a sparkline of the window.")
    s.add_argument("--window", metavar="DURATION", default="1h", help="history to show (default %(default)s)")
    s.add_argument("--hosts", action="store_true", help="also show every host (from the heartbeats)")
    s.add_argument("--json", action="store_true", help="print JSON")
    add_verb_options(s)
    s.set_defaults(func=run_show)

    e = verbs.add_parser("serve", help="serve Symphony's figures to Prometheus (/metrics, /healthz)",
                         description="Serve Symphony's figures to Prometheus: per session and stage, queued, in\n"
                                     "flight, completed, failed, retried and reclaimed tasks; workers by pool and\n"
                                     "state; heartbeat ages; machine, scale-set and SLURM figures; Redis memory and\n"
                                     "its eviction policy; task durations per stage.",
                         epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--port", type=int, default=9464, help="TCP port (default %(default)s)")
    e.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                   help="address to listen on (default %(default)s; 0.0.0.0 or :: for every interface)")
    e.add_argument("--cache", default="2s", metavar="DURATION",
                   help="reuse one read of Redis for this long, however many scrapers ask (default %(default)s)")
    e.add_argument("--stale-after", default="30s", metavar="DURATION",
                   help="/healthz answers 503 when the figures are older than this (default %(default)s)")
    add_verb_options(e)
    e.set_defaults(func=run_serve)


SERVE_EPILOG = """\
endpoints:
  /metrics   Prometheus text format (OpenMetrics when asked); docs/metrics.md lists every metric
  /healthz   200 {"ok": true, ...} when Redis answered the latest read and the figures are fresh,
             else 503 with the reason
Each scrape reuses the latest read of Redis while it is younger than --cache: ten scrapers cost
Redis what one does. Counters never go backwards, even across a Redis restart (docs/metrics.md).
Run it as the read-only Redis user ('symphony acl reader'): it only reads.

examples:
  symphony metrics serve                                  # http://127.0.0.1:9464/metrics
  symphony metrics serve --bind 0.0.0.0 --redis-password-file reader.pw
"""


def _split(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def config_from_args(args: argparse.Namespace) -> "AzureMonitorConfig":
    from symphony.azure.monitor import AzureMonitorConfig

    overrides = {
        "subscription": args.subscription, "resource_group": args.resource_group, "scale_sets": _split(args.scale_sets),
        "region": args.region, "interval_s": fmt.parse_duration(args.interval),
        "lookback_s": fmt.parse_duration(args.lookback), "retention_s": fmt.parse_duration(args.retention),
        "max_instances": args.max_instances, "jsonl": args.jsonl, "csv": args.csv, "redis": not args.no_redis,
    }
    return AzureMonitorConfig.from_env(**overrides)




def _poll_line(result: "CollectResult") -> str:
    stamp = datetime.now().strftime("%H:%M:%S")
    latest = result.latest()
    if not latest:
        return f"{stamp}  no data" + (f" ({len(result.problems)} problem(s))" if result.problems else "")
    parts = [f"{name} {s.cpu:.1f}%" + (f" ({s.instances} vm)" if s.instances else "")
             for name, s in sorted(latest.items())]
    extra = f"  +{result.rows} row(s) to files" if result.rows else ""
    return f"{stamp}  " + "  ".join(parts) + extra


def run_collect(args: argparse.Namespace) -> int:
    from symphony.azure.monitor import AzureCollector

    config = config_from_args(args)
    if config.missing:
        return fail(config.off_reason, 2)
    if not config.redis and not (config.jsonl or config.csv):
        return fail("--no-redis needs --jsonl or --csv (otherwise the samples go nowhere)", 2)
    say = service_log(args, "symphony-metrics", "symphony.metrics")
    engine: Engine | None = engine_from_args(args, client_name="symphony-metrics") if config.redis else None
    try:
        collector = AzureCollector(engine, config, say_policy=True)
        where = [f"Redis {engine.display}"] if engine is not None else []
        where += [path for path in (config.jsonl, config.csv) if path]
        every = "once" if args.once else f"every {config.interval_s:g}s"
        say(f"Azure Monitor: {config.describe()}, {every}, into {', '.join(where)}"
            + ("" if args.once else "; Ctrl-C stops"))

        def show(result: "CollectResult") -> None:
            say(_poll_line(result))

        try:
            result = collector.run(once=args.once, on_poll=show)
        except KeyboardInterrupt:
            return 0
        finally:
            collector.clients.close()
        return 0 if (result.ok or not args.once) else 1
    finally:
        if engine is not None:
            engine.close()


def run_show(args: argparse.Namespace) -> int:
    window = fmt.parse_duration(args.window, 3600.0) or 3600.0

    def spark(points) -> str:
        return fmt.sparkline(points, start=now - window, end=now, width=SPARK_WIDTH)

    with engine_from_args(args) as engine:
        rows = engine.scale_set_cpu(window)
        status = engine.metrics_status()
        hosts = engine.host_cpu(window) if args.hosts else ()
    now = time.time()
    if args.json:
        print_json({
            "collector": None if status is None else {**status.__dict__, "scale_sets": list(status.scale_sets)},
            "scale_sets": [{"name": r.name, "source": r.source, "current": r.current, "instances": r.instances,
                            "points": [list(p) for p in r.points]} for r in rows],
            "hosts": [{"host": h.host, "pool": h.pool, "current": h.current, "memory": h.memory, "cpus": h.cpus,
                       "last_seen": h.last_seen, "points": [list(p) for p in h.points]} for h in hosts]})
        return 0
    if status is None:
        print("Azure Monitor collector: not running (CPU below is from the workers' heartbeats)")
    else:
        print(redact(f"Azure Monitor collector: {status.state}, {fmt.age(now - status.at)} ago: {status.message}"))
    if rows and rows[0].source != "azure monitor" and status is not None:
        print("no fresh Azure Monitor data: CPU below is from the workers' heartbeats")
    print()
    if not rows:
        print("no machine metrics yet (workers record their host's CPU with each heartbeat)")
    else:
        table(["NAME", "SOURCE", "CPU", "INSTANCES", f"LAST {args.window}"],
              [(r.name, r.source, fmt.percent(r.current), r.instances, spark(r.points)) for r in rows], right=(2, 3))
    if hosts:
        print()
        table(["HOST", "POOL", "CPU", "MEM", "CPUS", "SEEN", f"LAST {args.window}"],
              [(h.host, h.pool, fmt.percent(h.current), fmt.percent(h.memory), h.cpus or "-",
                fmt.age(now - h.last_seen) if h.last_seen else "-", spark(h.points)) for h in hosts],
              right=(2, 3, 4, 5))
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import signal

    cache_s = fmt.parse_duration(args.cache, 2.0)
    stale_s = fmt.parse_duration(args.stale_after, 30.0)
    if not 0 < args.port < 65536:
        return fail(f"--port {args.port}: not a TCP port (1-65535)", 2)
    if cache_s is None or cache_s < 0 or stale_s is None or stale_s <= 0:
        return fail("--cache must be 0 or more and --stale-after more than 0", 2)
    from ..exporter import Exporter

    service_log(args, "symphony-exporter", "symphony.exporter")
    log = logging.getLogger("symphony.exporter")
    with engine_from_args(args, client_name="symphony-exporter") as engine:
        try:
            exporter = Exporter(engine, bind=args.bind, port=args.port, cache_s=cache_s, stale_after_s=stale_s)
        except OSError as exc:
            return fail(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}", 1)

        def stop(signum, frame):  # SIGTERM: stop serving, close the connection, exit 0
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        log.info("serving Symphony's figures from Redis %s on %s/metrics (health: %s/healthz)", engine.display,
                 exporter.url, exporter.url)
        exporter.cache.get()  # the first read now: Redis' eviction policy is said at start
        try:
            exporter.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            exporter.server.server_close()
        log.info("stopped")
    return 0
