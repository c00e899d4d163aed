"""A command-line tool used by the sample pipeline's ``detection`` stage (a command handler).

    python -m symphony.workers.sample_tool detect --input IN.json --output OUT.json [--seconds S]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time


def detect(args: argparse.Namespace) -> int:
    with open(args.input, encoding="utf-8") as fh:
        data = json.load(fh)
    if args.seconds > 0:
        time.sleep(args.seconds)
    detections = []
    for vine in range(int(data.get("vines", 0))):
        digest = hashlib.sha1(f"{data['row']}/{vine}".encode()).digest()
        detections.append({"vine": vine + 1, "clusters": 8 + digest[0] % 12})
    with open(args.output, "w", encoding="utf-8") as fh:
        json.dump({**data, "detections": detections}, fh)
    print(f"detected clusters on {len(detections)} vines of {data['row']}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symphony.workers.sample_tool")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("detect", help="detect grape clusters per vine")
    d.add_argument("--input", required=True)
    d.add_argument("--output", required=True)
    d.add_argument("--seconds", type=float, default=0.0)
    args = parser.parse_args(argv)
    return detect(args)


if __name__ == "__main__":
    sys.exit(main())
