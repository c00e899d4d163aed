"""Helpers shared by the ``symphony`` verbs: Redis options, tables, JSON, errors."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable, Sequence

from engine import Engine, load_key, redact, resolve_redis, sealer_from


def add_redis_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Redis")
    group.add_argument("--redis", metavar="URL",
                       help="Redis URL (default: $SYMPHONY_REDIS_URL, $REDIS_URL, or redis://127.0.0.1:6379/0)")
    group.add_argument("--redis-password-file", metavar="FILE", help="read the Redis password from FILE")
    group.add_argument("--redis-ca-file", metavar="FILE", help="CA certificate for rediss:// (TLS)")
    crypto = parser.add_argument_group("encryption")
    crypto.add_argument("--encryption-key-file", metavar="FILE",
                        help="AES key (hex or base64) to encrypt task data (default: $SYMPHONY_KEY_FILE, $SYMPHONY_KEY)")


def engine_from_args(args: argparse.Namespace, client_name: str = "symphony-cli") -> Engine:
    config = resolve_redis(getattr(args, "redis", None), password_file=getattr(args, "redis_password_file", None),
                           ca_file=getattr(args, "redis_ca_file", None)).with_client_name(client_name)
    return Engine(config, socket_timeout=10.0, sealer=sealer_from(load_key(getattr(args, "encryption_key_file", None))))


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


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"
