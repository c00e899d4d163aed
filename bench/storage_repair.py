"""Repair planning on Blob Storage (Azurite) against a bare listing of the same prefixes.

``python -m bench.storage_repair --items 100000``: starts Azurite (tests/azurite.py) and an
embedded Redis, makes the outputs of a session of N items x 4 stages as empty blobs (item n
has the outputs of its first ``n % 5`` stages, as in the local-disk case 5: every kind of repair
occurs), then, alternately, three times: lists the four prefixes once with the SDK (one paged
List Blobs walk each, names only: the floor; and the SDK's own ``list_blobs``, for reference) and runs ``Engine.plan_repair`` (read Redis, one
listing per stage through the store, decide per item). Prints one JSON object. The blobs are
written into Azurite's own database file before it starts (``--fixture seed``, the default:
200,000 in seconds); ``--fixture upload`` uploads them instead (Put Blob each, concurrently, into
an in-memory Azurite), which does not scale: each upload costs time in proportion to the blobs
already there.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("r1", "r2", "r3", "r4")


def uploaded(azurite, names: list[str], threads: int):
    """Put Blob each, ``threads`` at a time over one pool of keep-alive connections."""
    import requests
    from azure.storage.blob import ContainerClient

    azurite.container("bench")
    http = requests.Session()
    http.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=threads))
    container = ContainerClient.from_connection_string(azurite.connection_string, "bench", session=http)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda name: container.upload_blob(name, b"", overwrite=True), names, chunksize=256))
    return container


def seeded_azurite(directory: Path, names: list[str]):
    """An Azurite (on disk) whose container ``bench`` holds ``names`` as empty blobs, written into
    its database file while it is stopped: Azurite itself uploads one blob (the template, so every
    field is its own), then the file gets one copy per name, with the collection's sorted indices,
    and Azurite starts again and loads it. Uploading instead costs each Put Blob time in
    proportion to the blobs already there (its LokiJS store scans the collection), about 700 a
    second at first and 40 a second past 50,000."""
    from tests.azurite import Azurite

    first = Azurite(directory)
    first.start()
    try:
        first.container("bench").upload_blob("template", b"", overwrite=True)
    finally:
        first.close()
    path = directory / "data" / "__azurite_db_blob__.json"
    db = json.loads(path.read_text())
    blobs = next(c for c in db["collections"] if c["name"] == "$BLOBS_COLLECTION$")
    (template,) = [b for b in blobs["data"] if b["name"] == "template"]
    data = []
    for number, name in enumerate(names, 1):
        blob = dict(template, name=name, meta=dict(template["meta"]))
        blob["$loki"] = number
        data.append(blob)
    blobs["data"], blobs["maxId"], blobs["idIndex"] = data, len(data), None
    order = sorted(range(len(data)), key=lambda i: data[i]["name"])
    for field, index in blobs["binaryIndices"].items():
        index["values"] = order if field == "name" else list(range(len(data)))
        index["dirty"] = False
    path.write_text(json.dumps(db))
    azurite = Azurite(directory)
    azurite.start(timeout=300)
    return azurite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="concurrent uploads (--fixture upload)")
    parser.add_argument("--no-sdk", action="store_true", help="skip the SDK's own list_blobs (slowest)")
    parser.add_argument("--fixture", choices=("seed", "upload"), default="seed",
                        help="seed: write the blobs into Azurite's own database file before it starts (seconds); "
                             "upload: Put Blob each (Azurite slows as the container grows: hours for 200,000)")
    args = parser.parse_args(argv)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop Azurite and Redis on the way out

    from tests.azurite import Azurite, why_unavailable

    reason = why_unavailable()
    if reason:
        print(json.dumps({"skipped": reason}))
        return 0
    from symphony.engine import EmbeddedRedis, Engine, forget_stores, resolve_redis

    base = Path(tempfile.mkdtemp(prefix="symphony-bench-blob-repair-"))
    session = "bench-blob-repair"
    names = [f"data/{session}/{STAGES[k]}/i{n:07d}.json" for n in range(args.items) for k in range(n % 5)
             if k < len(STAGES)]
    redis_server = EmbeddedRedis()
    redis_server.start()
    azurite = None
    try:
        started = time.perf_counter()
        if args.fixture == "seed":
            azurite = seeded_azurite(base / "azurite", names)
            container = azurite.container("bench", empty=False)
        else:
            azurite = Azurite(base / "azurite", in_memory=True)
            azurite.start()
            container = uploaded(azurite, names, args.threads)
        upload_s = time.perf_counter() - started
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
        forget_stores()
        (base / "pipelines").mkdir()
        (base / "pipelines" / "p.yaml").write_text(yaml.safe_dump({"pipeline": "blobrepair", "stages": [
            {"name": s, "pool": "bench", "handler": "bench.noop:symphony_task",
             "output": "{root}/{session}/{stage}/{item}.json"} for s in STAGES]}, sort_keys=False))
        file = base / "s.yaml"
        file.write_text(yaml.safe_dump({"session": session, "pipeline": "pipelines/p.yaml", "root": "az://bench/data",
                                        "items_from": {"range": {"prefix": "i", "start": 0, "count": args.items,
                                                                 "width": 7}}}, sort_keys=False))

        from symphony.engine import open_store

        store = open_store("az://bench/data")

        def sdk() -> tuple[float, int]:
            """The SDK's own listing (what a script would write): names and every blob's properties."""
            t = time.perf_counter()
            count = 0
            for stage in STAGES:
                for page in container.list_blobs(name_starts_with=f"data/{session}/{stage}/",
                                                 results_per_page=5000).by_page():
                    count += sum(1 for _ in page)
            return time.perf_counter() - t, count

        def bare() -> tuple[float, int]:
            """The floor: the same List Blobs pages, names only, nothing else."""
            t = time.perf_counter()
            count = sum(len(store._list_fast(f"data/{session}/{stage}/")) for stage in STAGES)
            return time.perf_counter() - t, count

        engine = Engine(resolve_redis(redis_server.url))
        listings, plans, listed_in_plan, totals, sdks = [], [], [], [], []
        for _ in range(args.rounds):
            if not args.no_sdk:
                seconds, count = sdk()
                assert count == len(names), (count, len(names))
                sdks.append(seconds)
            seconds, count = bare()
            assert count == len(names), (count, len(names))
            listings.append(seconds)
            t = time.perf_counter()
            plan = engine.plan_repair(session, file=str(file))
            totals.append(time.perf_counter() - t)
            plans.append(plan.planning_s)
            listed_in_plan.append(plan.listing_s)
            expected = {s: sum(1 for n in range(args.items) if n % 5 == k) for k, s in enumerate(STAGES)}
            assert {s.stage: s.count for s in plan.stages} == expected, plan.to_dict()
        engine.close()
        listing, planning = statistics.median(listings), statistics.median(plans)
        print(json.dumps({"items": args.items, "stages": len(STAGES), "blobs": len(names),
                          "fixture": args.fixture, "fixture_s": round(upload_s, 1),
                          "fixture_blobs_per_s": round(len(names) / upload_s),
                          "sdk_listing_s": round(statistics.median(sdks), 3) if sdks else None,
                          "bare_listing_s": round(listing, 3), "plan_s": round(planning, 3),
                          "plan_listing_s": round(statistics.median(listed_in_plan), 3),
                          "end_to_end_s": round(statistics.median(totals), 3),
                          "plan_over_listing": round(planning / listing, 2),
                          "rounds": {"sdk": [round(x, 3) for x in sdks], "bare": [round(x, 3) for x in listings],
                                     "plan": [round(x, 3) for x in plans]}}))
    finally:
        redis_server.close()
        if azurite is not None:
            azurite.close()
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
