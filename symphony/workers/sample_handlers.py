"""Handlers of the sample ``scan`` pipeline (tasks/pipelines/scan.yaml).

Small but real: each reads the previous stage's output, computes something from it and writes
its own output; ``seconds`` makes a stage take a while so the demo is watchable, and
``fail_rate`` makes a deterministic fraction of attempts fail so retries show up.
"""
from __future__ import annotations

import hashlib
import time

from .context import JobContext


def _work(ctx: JobContext) -> None:
    seconds = float(ctx.params.get("seconds", 0) or 0)
    if seconds > 0:
        time.sleep(seconds)
    rate = float(ctx.params.get("fail_rate", 0) or 0)
    if rate > 0:
        digest = hashlib.sha1(f"{ctx.session}/{ctx.stage}/{ctx.item}/{ctx.attempt}".encode()).digest()
        if int.from_bytes(digest[:4], "big") / 2**32 < rate:
            raise RuntimeError(f"simulated {ctx.stage} failure for {ctx.item} (attempt {ctx.attempt})")


def _frames(item: str, vines: int) -> int:
    return vines * 6 + int(hashlib.sha1(item.encode()).hexdigest()[:2], 16) % 7


def rvm(ctx: JobContext) -> None:
    """Register the row's video: one record per frame batch."""
    _work(ctx)
    vines = int(ctx.meta.get("vines", 0) or 0)
    frames = _frames(ctx.item, vines)
    ctx.kv.update({"frames": frames, "vines": vines})
    ctx.write_output_json({"row": ctx.item, "session": ctx.session, "vines": vines, "frames": frames})


def preprocess(ctx: JobContext) -> None:
    """Drop blurred frames (a fixed share, so outputs are reproducible)."""
    _work(ctx)
    data = ctx.read_input_json()
    kept = data["frames"] - data["frames"] // 9
    ctx.kv.set("kept_frames", kept)
    ctx.write_output_json({**data, "kept_frames": kept})


def process(ctx: JobContext) -> None:
    """Summarise the detections of a row into a yield estimate."""
    _work(ctx)
    data = ctx.read_input_json()
    clusters = sum(d["clusters"] for d in data["detections"])
    estimate = round(clusters * float(ctx.params.get("kg_per_cluster", 0.12)), 2)
    ctx.kv.update({"clusters": clusters, "yield_kg": estimate})
    ctx.write_output_json({"row": data["row"], "vines": data["vines"], "clusters": clusters, "yield_kg": estimate})
