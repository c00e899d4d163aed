"""How a worker stops: the request (SIGTERM, Ctrl-C, the supervisor), the drain window, and what
happens to the task that is running when it closes.

A stop request lets every worker process finish the task it is running, then exit. If that task
is still running ``drain_timeout_s`` after the request (or at once, after a second Ctrl-C: the
``urgent`` request), it is handed back to the head of its queue, its attempt not charged. Tasks a
worker claimed ahead (prefetch) and never started go back at once. Anything that must stop
workers (a signal, a batch system's walltime warning) sets ``stop_event``, and ``urgent_event``
to hand back at once.
"""
from __future__ import annotations

import threading
import time


def set_from_signal_handler(event) -> None:
    """Set a multiprocessing Event from a signal handler without deadlocking.

    The handler runs in the main thread, which may be inside ``event.wait()`` at that moment;
    multiprocessing's ``Condition.notify`` waits for the sleeper to wake up, and the sleeper is
    the interrupted thread itself, so calling ``event.set()`` there never returns. A short-lived
    thread sets it instead, once the handler has returned and the wait can be woken."""
    threading.Thread(target=event.set, name="signal", daemon=True).start()


class Stopping:
    """One worker process's view of the stop request (Events shared with its supervisor)."""

    def __init__(self, stop_event=None, urgent_event=None, drain_timeout_s: float = 30.0):
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.urgent_event = urgent_event if urgent_event is not None else threading.Event()
        self.drain_timeout_s = drain_timeout_s
        self._seen_at: float | None = None

    @property
    def requested(self) -> bool:
        return self.stop_event.is_set()

    def request(self) -> None:
        """Ask this process to stop (from a signal handler too)."""
        set_from_signal_handler(self.stop_event)

    def handback_due(self) -> bool:
        """True once the running task must be handed back: the drain window is over, or the stop is urgent."""
        if not self.stop_event.is_set():
            return False
        now = time.monotonic()
        if self._seen_at is None:
            self._seen_at = now
        return self.urgent_event.is_set() or now - self._seen_at >= self.drain_timeout_s

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) if a stop was requested."""
        return bool(self.stop_event.wait(seconds))
