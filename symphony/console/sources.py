"""What each screen's poll reads: the typed, immutable sources its panels prepare their data from.

Built in the poll's thread (by :class:`~symphony.console.backend.Backend` and the screens' fetch
halves); nothing here touches Redis or a widget.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from symphony.engine import Event, SessionDetail, Snapshot, WorkerStatus

from .history import QueueFlow


@dataclass(frozen=True)
class MainSource:
    """The main screen's poll: the snapshot, the scale sets' CPU, and the throughput per queue."""

    snapshot: Snapshot
    scale_sets: tuple[Any, ...] = ()  # CpuSeries or the engine's ScaleSetCpu (same fields)
    flows: Mapping[str, QueueFlow] = field(default_factory=dict)  # by queue name (role:session)


@dataclass(frozen=True)
class DetailSource:
    """A session's detail, and the server's time when it was read (failure times are server times)."""

    detail: SessionDetail
    now: float


@dataclass(frozen=True)
class WorkerSource:
    """One worker: its status (None once it is gone), its recent tasks from the results stream,
    its host's CPU and memory history, and the tail of its log (None: this engine keeps no logs)."""

    worker_id: str
    now: float  # server time
    worker: WorkerStatus | None
    tasks: tuple[Event, ...] = ()
    host: Any = None  # the engine's HostCpu, or None before the host's first sample
    log: tuple[Any, ...] | None = None
