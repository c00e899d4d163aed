"""How a worker stops: the request (SIGTERM, Ctrl-C, the supervisor), the drain window, and what
happens to the task that is running when it closes.

A stop request lets every worker process finish the task it is running, then exit. If that task
is still running ``drain_timeout_s`` after the request (or at once, after a second Ctrl-C: the
``urgent`` request), it is handed back to the head of its queue, its attempt not charged. Tasks a
worker claimed ahead (prefetch) and never started go back at once. Anything that must stop
workers (a signal, a batch system's walltime warning) sets ``stop_event``, and ``urgent_event``
to hand back at once.

A drain (``symphony drain``, :mod:`symphony.engine.drain`) is this process's own stop request,
seen by its heart: it stops claiming and hands back what it claimed ahead, like a stop; it
finishes the running task (or, ``now``, hands it back at once) and then exits, or, ``idle``,
stays up claiming nothing until the drain is removed. Its siblings are not affected.
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
        self.drain = None  # the Drain that applies to this process (symphony.engine.Drain), set by the heart
        self._wake = threading.Event()

    @property
    def requested(self) -> bool:
        """Stop claiming: a stop was requested, or this process is drained."""
        return self.stop_event.is_set() or self.drain is not None

    @property
    def exiting(self) -> bool:
        """Exit once nothing is held (a drained process that must stay idle does not)."""
        return self.stop_event.is_set() or (self.drain is not None and not self.drain.idle)

    @property
    def drained(self) -> bool:
        return self.drain is not None and not self.stop_event.is_set()

    def set_drain(self, drain) -> None:
        """The drain that applies now (None: undrained); wakes a process resting while drained."""
        if drain != self.drain:
            self.drain = drain
            self._wake.set()

    def rest(self, seconds: float) -> None:
        """A drained idle process's wait: until the drain changes, a stop, or ``seconds``."""
        self._wake.clear()
        end = time.monotonic() + seconds
        while not self.stop_event.is_set() and not self._wake.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(min(left, 0.1))

    def request(self) -> None:
        """Ask this process to stop (from a signal handler too)."""
        set_from_signal_handler(self.stop_event)

    def handback_due(self) -> bool:
        """True once the running task must be handed back: the drain window is over, or the stop is urgent."""
        drain = self.drain
        if drain is not None and drain.now:
            return True
        if not self.stop_event.is_set():
            return False
        now = time.monotonic()
        if self._seen_at is None:
            self._seen_at = now
        return self.urgent_event.is_set() or now - self._seen_at >= self.drain_timeout_s

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) if a stop was requested."""
        return bool(self.stop_event.wait(seconds))
