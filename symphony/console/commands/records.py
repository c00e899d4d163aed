"""``symphony records forward``: hand every completed and failed task record on, at least once.

Reads the results stream through a consumer group (one per sink, ``--group``), sends each record
to the sink, and acknowledges it only once the sink has it: a forwarder that crashed resumes
where it stopped and never skips a record. ``--jsonl FILE`` appends one JSON line per record
(and, after a crash, leaves out the records the file already holds: each exactly once);
``--azure-queue NAME`` sends one message per record to an Azure Storage queue (the storage
extra; credentials as for outputs in Blob Storage, docs/storage.md), where a record being sent
when the forwarder was killed may arrive twice. The results stream is capped (about 10,000
records): a forwarder that fell further behind says how many it never saw.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any, Sequence

from symphony.engine import ConfigError

from .common import add_verb_options, engine_from_args

HELP = "hand the completed and failed task records on (an Azure Storage queue, a JSON Lines file)"
log = logging.getLogger("symphony.records")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("records", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="records_verb", metavar="VERB")
    verbs.required = True
    f = verbs.add_parser("forward", help="forward every record of the results stream to a sink, at least once",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sink = f.add_mutually_exclusive_group(required=True)
    sink.add_argument("--azure-queue", metavar="NAME", help="an Azure Storage queue (created if missing)")
    sink.add_argument("--jsonl", metavar="FILE", help="a JSON Lines file (appended to)")
    f.add_argument("--group", default=None,
                   help="the consumer group (default: one per sink, e.g. forward:azure-queue:NAME)")
    f.add_argument("--from", dest="start", choices=("start", "now"), default="start",
                   help="a new group reads every record the stream holds (start, the default) or only new ones (now)")
    f.add_argument("--batch", type=int, default=100, metavar="N", help="records read and delivered at once")
    f.add_argument("--once", action="store_true", help="forward what is there, then exit (default: run until stopped)")
    add_verb_options(f)
    f.set_defaults(func=run)


class JsonlSink:
    """Appends one JSON line per record; flushed and synced before the records are acknowledged."""

    TAIL = 1 << 16

    def __init__(self, path: str):
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            self.fh = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot append to {path}: {exc.strerror or exc}") from None

    def __str__(self) -> str:
        return self.path

    def delivered(self) -> str | None:
        """The id of the last record the file holds (records up to it are not written again)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - self.TAIL))
                lines = fh.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            try:
                return str(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a crash
        return None

    def deliver(self, records: Sequence[dict[str, Any]]) -> None:
        self.fh.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def _sink(args: argparse.Namespace):
    if args.jsonl:
        return JsonlSink(args.jsonl), f"forward:jsonl:{os.path.abspath(args.jsonl)}"
    try:
        from symphony.storage.queues import AzureQueueSink
    except ImportError:
        raise ConfigError("--azure-queue needs the storage extra (pip install 'redis-symphony[storage]')") from None
    return AzureQueueSink(args.azure_queue), f"forward:azure-queue:{args.azure_queue}"


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def forward(engine, sink, group: str, *, start: str = "0", batch: int = 100, once: bool = False,
            stop: threading.Event | None = None, out=sys.stdout) -> int:
    """Forward until stopped (or, ``once``, until nothing is left); the number of records delivered."""
    stop = stop or threading.Event()
    reader = engine.results_reader(group)
    reader.ensure_group(start)
    done = sink.delivered()
    total = 0
    warned_at = 0

    def hand_on(records) -> None:
        nonlocal total
        fresh = [r for r in records if done is None or _key(r.id) > _key(done)]
        if fresh:
            sink.deliver([r.to_dict() for r in fresh])
            total += len(fresh)
        reader.ack([r.id for r in records])

    while True:  # first what was read and never acknowledged (a crash while delivering)
        records = reader.pending(batch)
        if not records:
            break
        hand_on(records)
    done = None  # only the records pending at the start can already be in the sink
    while not stop.is_set():
        lost = reader.trimmed_unread()
        if lost and lost != warned_at:
            warned_at = lost
            sys.stderr.write(f"symphony: the forwarder fell behind: {lost:,} record(s) were trimmed from the results "
                             "stream (it keeps about 10,000) before they could be forwarded\n")
        records = reader.new(batch, block_ms=None if once else 1000)
        if not records:
            if once:
                break
            continue
        hand_on(records)
    out.write(f"forwarded {total:,} record(s) to {sink}\n")
    return total


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise ConfigError("--batch must be at least 1")
    sink, group = _sink(args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with engine_from_args(args, client_name="symphony-records") as engine:
            forward(engine, sink, args.group or group, start="0" if args.start == "start" else "$",
                    batch=args.batch, once=args.once, stop=stop)
    finally:
        sink.close()
    return 0
