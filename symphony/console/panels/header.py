"""The header: which Redis (never its password), whether it answers, and how old the data is."""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from symphony.engine import redact

from .. import fmt


@dataclass
class Connection:
    state: str = "connecting"  # connecting | connected | reconnecting | error
    error: str = ""
    data_at: float | None = None  # console clock when the shown data arrived
    retry_at: float | None = None  # console clock of the next attempt
    poll_s: float | None = None


class HeaderBar(Static):
    def __init__(self, redis_display: str, *, note: str = "", id: str | None = None):
        super().__init__(id=id)
        self.redis_display = redact(redis_display)
        self.note = note
        self.connection = Connection()
        self.counts = ""
        self.stale_after = 5.0

    def show(self, now: float) -> None:
        c = self.connection
        text = Text()
        text.append(" Symphony ", style="bold reverse")
        text.append(f"  {self.redis_display}  ")
        if c.state == "connected":
            text.append("● connected", style="bold green")
        elif c.state == "connecting":
            text.append("◌ connecting…", style="bold yellow")
        elif c.state == "reconnecting":
            text.append("▲ reconnecting", style="bold white on red")
        else:
            text.append("▲ error", style="bold white on red")
        age = None if c.data_at is None else max(0.0, now - c.data_at)
        stale = c.state != "connected" or (age is not None and age > self.stale_after)
        self.set_class(stale and c.data_at is not None, "-stale")
        if age is None:
            text.append("   no data yet", style="dim")
        else:
            text.append(f"   data {fmt.age(age)} old", style="bold yellow" if stale else "")
            if stale:
                text.append(" (stale)", style="bold yellow")
        if self.counts:
            text.append(f"   {self.counts}", style="dim")
        if self.note:
            text.append(f"   {self.note}", style="italic")
        if c.state in ("reconnecting", "error"):
            line = f"\n {c.error}" if c.error else "\n"
            if c.retry_at is not None:
                line += f" · next try in {max(0.0, c.retry_at - now):.1f}s"
            line += " · actions that need Redis are disabled until it answers"
            text.append(redact(line), style="yellow")
        elif c.state == "connected" and age is not None and age > self.stale_after:
            text.append(f"\n Redis has not answered for {fmt.age(age)} (waiting on a slow poll)", style="yellow")
        self.update(text)
