"""Settings shared by the supervisor and its worker processes (picklable for the spawn start method)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerOptions:
    redis_url: str
    redis_password: str | None = field(default=None, repr=False)
    redis_username: str | None = None
    redis_ca_file: str | None = None
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


def set_from_signal_handler(event) -> None:
    """Set a multiprocessing Event from a signal handler without deadlocking.

    The handler runs in the main thread, which may be inside ``event.wait()`` at that moment;
    multiprocessing's ``Condition.notify`` waits for the sleeper to wake up, and the sleeper is
    the interrupted thread itself, so calling ``event.set()`` there never returns. A short-lived
    thread sets it instead, once the handler has returned and the wait can be woken."""
    import threading

    threading.Thread(target=event.set, name="signal", daemon=True).start()
