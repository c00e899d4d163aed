"""The header: which Redis (never its password), whether it answers, and how old the data is.

One line at any width: its parts have priorities, and those that do not fit are left out (the
least important first); a second line says what is wrong while Redis does not answer.
"""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from symphony.engine import redact

from .. import fmt
from .base import clip


@dataclass
class Connection:
    state: str = "connecting"  # connecting | connected | reconnecting | error
    error: str = ""
    data_at: float | None = None  # console clock when the shown data arrived
    retry_at: float | None = None  # console clock of the next attempt
    poll_s: float | None = None


def fitted(parts: list[tuple[int, Text]], width: int) -> Text:
    """``parts`` (priority, text) in order, without the least important ones that do not fit in
    ``width`` (priority 0 always stays; the line is clipped at a word if even those do not fit)."""
    kept = list(parts)
    while sum(t.cell_len for _, t in kept) > width and any(p > 0 for p, _ in kept):
        worst = max(p for p, _ in kept)
        index = max(i for i, (p, _) in enumerate(kept) if p == worst)
        del kept[index]
    line = Text(no_wrap=True)
    for _, text in kept:
        line.append_text(text)
    return clip(line, width) if width > 0 else line


class HeaderBar(Static):
    def __init__(self, redis_display: str, *, note: str = "", id: str | None = None):
        super().__init__(id=id)
        self.redis_display = redact(redis_display)
        self.note = note
        self.connection = Connection()
        self.counts = ""
        self.stale_after = 5.0
        self._now = 0.0

    def on_resize(self) -> None:
        self.show(self._now)

    def show(self, now: float) -> None:
        self._now = now
        c = self.connection
        age = None if c.data_at is None else max(0.0, now - c.data_at)
        stale = c.state != "connected" or (age is not None and age > self.stale_after)
        self.set_class(stale and c.data_at is not None, "-stale")
        parts: list[tuple[int, Text]] = [(0, Text(" Symphony ", style="bold reverse")),
                                         (0, _state_text(c.state)),
                                         (1, Text(f"  {self.redis_display}")),
                                         (2, _age_text(age, stale))]
        if self.counts:
            parts.append((5, Text(f"  {self.counts}", style="dim")))
        if self.note:
            parts.append((4, Text(f"  {self.note}", style="italic")))
        width = self.size.width
        text = fitted(parts, width) if width > 0 else fitted(parts, 10_000)
        line = self._problem_line(now, age)
        if line:
            second = Text(redact(line), style="yellow", no_wrap=True)
            text.append("\n")
            text.append_text(clip(second, width) if width > 0 else second)
        self.update(text)

    def _problem_line(self, now: float, age: float | None) -> str:
        """The second line: what is wrong while Redis does not answer or the data is old."""
        c = self.connection
        if c.state in ("reconnecting", "error"):
            line = f" {c.error}" if c.error else ""
            if c.retry_at is not None:
                line += f" · next try in {max(0.0, c.retry_at - now):.1f}s"
            return line + " · actions that need Redis are disabled until it answers"
        if c.state == "connected" and age is not None and age > self.stale_after:
            return f" Redis has not answered for {fmt.age(age)} (waiting on a slow poll)"
        return ""


_STATES = {
    "connected": (" ● connected", "bold green"),
    "connecting": (" ◌ connecting…", "bold yellow"),
    "reconnecting": (" ▲ reconnecting", "bold white on red"),
}


def _state_text(state: str) -> Text:
    label, style = _STATES.get(state, (" ▲ error", "bold white on red"))
    return Text(label, style=style)


def _age_text(age: float | None, stale: bool) -> Text:
    if age is None:
        return Text("  no data yet", style="dim")
    return Text(f"  data {fmt.age(age)} old" + (" (stale)" if stale else ""),
                style="bold yellow" if stale else "")
