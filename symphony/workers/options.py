"""Settings shared by the supervisor and its worker processes (picklable for the spawn start method)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from symphony.engine import RedisConfig

from .stopping import set_from_signal_handler  # noqa: F401  (where it used to live)


@dataclass(frozen=True)
class WorkerOptions:
    redis: RedisConfig = field(default_factory=RedisConfig, repr=False)  # where Redis is and how to log in
    name: str = ""
    pool: str | None = None
    roles: tuple[str, ...] = ()
    processes: int = 1
    burst: bool = False
    nice: int = 0
    heartbeat_s: float = 5.0
    lease_s: float = 12.5  # a worker is dead once it has not beaten for this long
    drain_timeout_s: float = 30.0  # on SIGTERM: finish the current task within this, else hand it back
    idle_wait_s: float = 2.0  # longest block on the bells before looking again
    log_level: str = "INFO"
    log_format: str = "text"  # text | json (engine.logsetup)
    prefetch: int = 32  # most tasks claimed at once when tasks are short (1: one at a time)
    skip_existing: bool = True  # a stage whose output exists is done (Luigi's rule)
    encryption_key: bytes | None = field(default=None, repr=False)  # AES key for task data and job values
    metrics_interval_s: float = 30.0  # one host CPU/memory sample per host per this many seconds (0: off)
    # how long to wait for Redis before giving up (None: forever); burst workers default to 30 s
    give_up_s: float | None = None
    # outputs in object stores (or sealed at rest) are staged through a scratch folder on this machine
    scratch_dir: str | None = None  # default: <temp>/symphony-scratch
    scratch_limit_bytes: int = 0  # the largest input or output a task may stage (0: no limit)
    # the object stores' credentials, captured before the secret variables left the environment
    store_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    scheduled_events_url: str = ""  # Azure Scheduled Events (scheduled_events.py); "" off

    @property
    def give_up_after_s(self) -> float | None:
        """How long Redis may be unavailable before this worker gives up (None: never)."""
        if self.give_up_s is not None:
            return self.give_up_s if self.give_up_s > 0 else None
        return BURST_GIVE_UP_S if self.burst else None

    def but(self, **changes) -> "WorkerOptions":
        return replace(self, **changes)


BURST_GIVE_UP_S = 30.0
