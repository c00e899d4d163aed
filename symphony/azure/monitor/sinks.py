"""Where the samples go: Redis (through the engine, for the console) and files for analysis."""
from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from symphony.engine import AzureSample

FILE_FIELDS = ("time", "ts", "scale_set", "instance", "region", "cpu_percent", "disk_read_bytes",
               "disk_write_bytes", "network_in_bytes", "network_out_bytes", "instances")


def sample_row(s: AzureSample) -> dict[str, Any]:
    return {"time": datetime.fromtimestamp(s.time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "ts": int(s.time),
            "scale_set": s.scale_set, "instance": s.instance or None, "region": s.region or None,
            "cpu_percent": s.cpu, "disk_read_bytes": s.disk_read, "disk_write_bytes": s.disk_write,
            "network_in_bytes": s.net_in, "network_out_bytes": s.net_out,
            "instances": None if s.instance else s.instances}


def _is_url(path: str | None) -> bool:
    return bool(path) and "://" in str(path)


class FileSink:
    """Appends settled minutes to JSON Lines and/or CSV files, each minute once.

    Azure revises its latest minutes, so only minutes older than ``settle_s`` are written, and
    only those after the newest one already in the file (read back from its tail at start), so
    restarts and overlapping polls write no duplicates.

    A path that is an ``az://container/prefix`` URL is a series of append blobs in Blob Storage,
    one per day (``prefix/YYYY-MM-DD.jsonl``, ``.csv``; the storage extra), each with the CSV
    header first.
    """

    TAIL_BYTES = 1 << 20

    def __init__(self, jsonl: str | None, csv_path: str | None, settle_s: float):
        self.jsonl, self.csv = jsonl, csv_path
        self.settle_s = settle_s
        self.done: dict[str, float] = {}
        self._blobs: dict[str, Any] = {}
        for kind, path in (("jsonl", jsonl), ("csv", csv_path)):
            if path and _is_url(path):
                from symphony.storage.append import DailyAppendBlobs

                self._blobs[kind] = DailyAppendBlobs(path, "." + kind)
        for kind, path in (("jsonl", jsonl), ("csv", csv_path)):
            if path:
                if kind not in self._blobs:
                    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
                for name, ts in self._tail(path, kind).items():
                    self.done[name] = max(self.done.get(name, 0.0), ts)

    @property
    def enabled(self) -> bool:
        return bool(self.jsonl or self.csv)

    def _tail(self, path: str, kind: str) -> dict[str, float]:
        blobs = self._blobs.get(kind)
        if blobs is not None:
            data, whole = blobs.tail(self.TAIL_BYTES)
        else:
            try:
                with open(path, "rb") as fh:
                    fh.seek(0, os.SEEK_END)
                    size = fh.tell()
                    fh.seek(max(0, size - self.TAIL_BYTES))
                    data = fh.read().decode("utf-8", "replace")
            except FileNotFoundError:
                return {}
            whole = len(data) < self.TAIL_BYTES
        lines = data.splitlines()
        if not whole and lines:
            lines = lines[1:]  # the first line may be cut
        out: dict[str, float] = {}
        if kind == "csv":
            header = None
            if blobs is not None:
                header = list(FILE_FIELDS)  # every day's blob starts with this header
            else:
                try:
                    with open(path, newline="", encoding="utf-8") as fh:
                        header = next(csv.reader(fh), None)
                except OSError:
                    header = None
            if not header or "ts" not in header or "scale_set" not in header:
                return {}
            it, iss = header.index("ts"), header.index("scale_set")
            for row in csv.reader(io.StringIO("\n".join(lines))):
                if len(row) > max(it, iss) and row[it].isdigit():
                    out[row[iss]] = max(out.get(row[iss], 0.0), float(row[it]))
        else:
            for line in lines:
                try:
                    row = json.loads(line)
                    out[row["scale_set"]] = max(out.get(row["scale_set"], 0.0), float(row["ts"]))
                except (ValueError, KeyError, TypeError):
                    continue
        return out

    def write(self, samples: Iterable[AzureSample], now: float) -> int:
        if not self.enabled:
            return 0
        limit = now - self.settle_s
        fresh = [s for s in samples if s.time + 60 <= limit and s.time > self.done.get(s.scale_set, 0.0)]
        if not fresh:
            return 0
        fresh.sort(key=lambda s: (s.time, s.scale_set, s.instance))
        rows = [sample_row(s) for s in fresh]
        if self._blobs:
            self._write_blobs(fresh, rows)
        if self.jsonl and "jsonl" not in self._blobs:
            with open(self.jsonl, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
        if self.csv and "csv" not in self._blobs:
            new = not os.path.exists(self.csv) or os.path.getsize(self.csv) == 0
            with open(self.csv, "a", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=FILE_FIELDS)
                if new:
                    writer.writeheader()
                writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        for s in fresh:
            self.done[s.scale_set] = max(self.done.get(s.scale_set, 0.0), s.time)
        return len(rows)

    def _write_blobs(self, fresh: Sequence[AzureSample], rows: Sequence[dict[str, Any]]) -> None:
        """Each day's rows appended to that day's blob (one Append Block per blob and poll)."""
        from symphony.storage.append import day_of

        by_day: dict[str, list[dict[str, Any]]] = {}
        for sample, row in zip(fresh, rows):
            by_day.setdefault(day_of(sample.time), []).append(row)
        for kind, blobs in self._blobs.items():
            for day, day_rows in sorted(by_day.items()):
                if kind == "jsonl":
                    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in day_rows)
                else:
                    out = io.StringIO()
                    writer = csv.DictWriter(out, fieldnames=FILE_FIELDS)
                    if blobs.size(day) == 0:
                        writer.writeheader()
                    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in day_rows)
                    text = out.getvalue()
                blobs.append(day, text)


class RedisSink:
    """The samples and the collector's status in Redis, through the engine's public API (the
    console reads them with ``Engine.scale_set_cpu`` and ``Engine.metrics_status``)."""

    def __init__(self, engine: Any, retention_s: float, interval_s: float):
        self.engine, self.retention_s, self.interval_s = engine, retention_s, interval_s

    def store(self, scale_set: str, window: tuple[float, float], totals: Sequence[AzureSample] | None,
              instances: Sequence[AzureSample] | None, now: float) -> int:
        """Replace the window of one scale set (None leaves that series alone); members written."""
        return self.engine.store_azure(scale_set, window, totals, instances, retention_s=self.retention_s, now=now)

    def status(self, state: str, message: str, scale_sets: Iterable[str], now: float) -> None:
        self.engine.write_collector_status(state, message, interval_s=self.interval_s, scale_sets=scale_sets, now=now)
