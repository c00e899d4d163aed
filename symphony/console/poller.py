"""Polling without ever freezing the screen, and without polls piling up.

The fetch half runs in a thread (it may block on Redis, and it also prepares what to draw, from
the view settings taken on the UI thread when the poll started); the draw half runs on the UI
thread (it may be a coroutine that yields to the event loop as it goes);
the next poll is armed only once the previous one has been drawn (Dolphie's way), so a slow
Redis slows the refresh down instead of stacking requests. After a failure the poller keeps
the last data (the app marks it stale) and retries with an exponential backoff; the first
success resumes the normal rhythm, no restart needed.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Awaitable, Callable, Generic, TypeVar

from textual.message_pump import MessagePump
from textual.timer import Timer

from symphony.engine import Backoff

T = TypeVar("T")
log = logging.getLogger("symphony.console")


class Poller(Generic[T]):
    def __init__(self, owner: MessagePump, fetch: Callable[..., T], draw: Callable[[T], None | Awaitable[None]],
                 failed: Callable[[BaseException], None], *, interval: float = 1.0,
                 backoff: Backoff | None = None, name: str = "poll", view: Callable[[], Any] | None = None,
                 active: Callable[[], bool] | None = None):
        """``fetch(view())`` runs in a thread (``fetch()`` without ``view``); ``view`` runs on the
        UI thread as the poll starts, so the thread never reads a widget. ``active()`` (UI thread)
        False: the panels are hidden (another screen covers them), the poll is skipped until
        :meth:`poll_now` or the next interval finds them shown again."""
        self.owner = owner
        self.fetch = fetch
        self.view = view
        self.draw = draw
        self.failed = failed
        self.interval = interval
        self.backoff = backoff or Backoff(initial=0.5, maximum=5.0)
        self.name = name
        self.running = False  # a fetch is under way
        self.polls = 0  # completed cycles (success or failure), for tests and the header
        self.failures = 0  # consecutive failures
        self.next_delay = 0.0
        self._timer: Timer | None = None
        self._stopped = False
        self.active = active
        self.skipped = False  # the last interval was skipped (hidden)

    def start(self) -> None:
        self._stopped = False
        if self._timer is not None:
            self._timer.stop()
        self._arm(0.0)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def poll_now(self) -> None:
        """Poll as soon as possible (e.g. after an action), unless a poll is already under way."""
        if self.running or self._stopped:
            return
        if self._timer is not None:
            self._timer.stop()
        self._arm(0.0)

    def _arm(self, delay: float) -> None:
        if self._stopped:
            return
        self.next_delay = delay
        self._timer = self.owner.set_timer(max(0.01, delay), self._kick, name=f"{self.name}-timer")

    def _kick(self) -> None:
        self._timer = None
        if self.running or self._stopped:
            return
        try:
            hidden = self.active is not None and not self.active()
        except Exception:  # noqa: BLE001 - the screen is going away
            hidden = False
        if hidden:
            self.skipped = True
            self._arm(self.interval)
            return
        self.skipped = False
        self.running = True
        try:
            args = () if self.view is None else (self.view(),)
        except Exception:  # noqa: BLE001 - the screen is going away
            self.running = False
            return
        self.owner.run_worker(self._cycle(args), name=self.name, group=self.name, exit_on_error=False)

    async def _cycle(self, args: tuple[Any, ...] = ()) -> None:
        delay = self.interval
        try:
            try:
                result: Any = await asyncio.to_thread(self.fetch, *args)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the last data, back off
                self.failures += 1
                delay = self.next_delay = self.backoff.next_delay()
                self.failed(exc)
            else:
                self.failures = 0
                self.backoff.reset()
                try:
                    drawn = self.draw(result)
                    if inspect.isawaitable(drawn):  # a draw that yields to the event loop as it goes
                        await drawn
                except Exception as exc:  # noqa: BLE001 - a drawing bug must not stop the polls
                    log.exception("drawing the %s result failed", self.name)
                    delay = self.next_delay = self.backoff.next_delay()
                    self.failed(exc)
        finally:
            self.running = False
            self.polls += 1
        self._arm(delay)
