"""Helpers shared by the ``symphony`` verbs: Redis options, tables, JSON, errors."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable, Sequence

from symphony.engine import Engine, add_shared_options, redact, shared_options


def add_verb_options(parser: argparse.ArgumentParser, *, url_file: bool = True) -> None:
    """The shared Redis, encryption and logging options on a verb's parser (they may come before
    the verb too: ``symphony --redis URL status``); ``url_file=False``: the verb's own
    ``--redis-url-file`` means something else (``symphony deploy``: a file on the VMs)."""
    add_shared_options(parser, nested=True, url_file=url_file)


def engine_from_args(args: argparse.Namespace, client_name: str = "symphony-cli") -> Engine:
    options = shared_options(args, client_name=client_name)
    return Engine(options.redis, socket_timeout=10.0, sealer=options.sealer())


def print_json(data: Any, stream=None) -> None:
    stream = stream or sys.stdout
    stream.write(redact(json.dumps(data, indent=2, default=str)) + "\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Sequence[int] = (),
          stream=None) -> None:
    """Print a plain, aligned table (works in any terminal and in logs)."""
    stream = stream or sys.stdout
    rows = [["" if c is None else str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def fmt(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    stream.write(fmt(headers) + "\n")
    for row in rows:
        stream.write(redact(fmt(row)) + "\n")


def fail(message: str, code: int = 1) -> int:
    sys.stderr.write(f"symphony: {redact(message)}\n")
    return code



class Progress:
    """A progress bar on stderr for long work (a TTY gets a live bar; logs get a few lines)."""

    def __init__(self, total: int, label: str, *, stream=None, minimum: int = 5000):
        import time

        self.total, self.label, self.done = max(1, total), label, 0
        self.stream = stream or sys.stderr
        self.enabled = total >= minimum
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._time = time.monotonic
        self._started = self._time()
        self._last_draw = 0.0
        self._last_quarter = -1

    def __call__(self, count: int) -> None:
        self.done += count
        if not self.enabled:
            return
        now = self._time()
        if self.tty:
            if now - self._last_draw >= 0.1 or self.done >= self.total:
                self._last_draw = now
                width = 30
                filled = int(width * min(1.0, self.done / self.total))
                rate = self.done / max(1e-6, now - self._started)
                self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                                  f"{self.done:,}/{self.total:,} ({rate:,.0f}/s)")
                self.stream.flush()
        else:
            quarter = int(4 * min(1.0, self.done / self.total))
            if quarter != self._last_quarter:
                self._last_quarter = quarter
                self.stream.write(f"{self.label}: {self.done:,}/{self.total:,}\n")

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on a terminal; without one, only ``--yes`` proceeds (scripts must say so explicitly)."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        sys.stderr.write(f"symphony: {question} Refusing without --yes (no terminal to ask on).\n")
        return False
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def print_problems(problems, warnings=(), stream=None) -> None:
    stream = stream or sys.stderr
    for problem in problems:
        stream.write(f"error: {redact(problem)}\n")
    for warning in warnings:
        stream.write(f"warning: {redact(warning)}\n")
