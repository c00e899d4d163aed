"""The panel protocol every panel of the console follows, and the table panel most of them are.

A panel has two halves:

* ``prepare(source, view)``, a class method run in the poll's thread: a pure function of what
  the poll read (``source``) and of the operator's view settings (``view``, a frozen value taken
  on the UI thread when the poll was armed). It returns typed, immutable prepared data and
  touches no widget.
* ``draw(data)``, run on the UI thread: diffs the prepared data into the widget.

A :class:`Board` runs the panels of one screen: its ``views`` (UI thread), ``prepare`` (poll
thread) and ``draw`` (UI thread) are the three steps of a :class:`~symphony.console.poller.Poller`,
which arms the next poll only when the last one was drawn.

:class:`TablePanel` is a bordered DataTable updated by diffing, never cleared: rows that went
away are removed, new ones added, only changed cells updated, and rows reordered only when the
order changed; it yields every ``CHUNK`` operations so a huge table is drawn over several turns
of the event loop. The cursor stays on the same row (by key). It fits the terminal like k9s or
htop do: when its columns are wider than the panel, the columns of least priority drop out,
and one flexible column takes the width the others leave, its text clipped at a word boundary
with an ellipsis; nothing is ever cut mid-column.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Iterable, Iterator, Mapping, Sequence, TypeVar

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.text import Text
from textual.widgets import DataTable

CHUNK = 400  # table operations between two turns of the event loop
SEPARATORS = " :@/-_.,·("

S = TypeVar("S")  # what a screen's poll read
D = TypeVar("D")  # a panel's prepared data


def right(value: object, style: str = "") -> Text:
    return Text(str(value), style=style, justify="right", no_wrap=True)


def left(value: object, style: str = "") -> Text:
    return Text(str(value), style=style, no_wrap=True)


def clip(text: Text, width: int) -> Text:
    """``text`` in at most ``width`` cells: whole, or cut after a separator (a space, ``:``, ``@``,
    ``-``...) with an ellipsis, never in the middle of a word unless one word is wider than that."""
    if text.cell_len <= width:
        return text
    if width <= 1:
        return Text("…"[:width])
    plain = text.plain
    cut = width - 1
    while cell_len(plain[:cut]) > width - 1:
        cut -= 1
    boundary = max(plain.rfind(sep, 0, cut) for sep in SEPARATORS)
    if boundary >= max(1, cut // 2):
        cut = boundary + (0 if plain[boundary] in " (" else 1)
    out = text[:cut]
    out.rstrip()
    out.append("…", style="dim")
    return out


@dataclass(frozen=True)
class Clip:
    """A cell that fits whatever width its column gets (see :func:`clip`)."""

    text: Text

    @property
    def cell_len(self) -> int:
        return self.text.cell_len

    def __str__(self) -> str:
        return self.text.plain

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(min(self.text.cell_len, 4), self.text.cell_len)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield clip(self.text, options.max_width)


def width_of(cell: object) -> int:
    if isinstance(cell, (Text, Clip)):
        return cell.cell_len
    natural = getattr(cell, "natural_width", None)
    return int(natural) if natural is not None else cell_len(str(cell))


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    right: bool = False
    priority: int = 0  # 0: always shown; when the panel is too narrow the highest drops first
    flex: bool = False  # takes the width the others leave; its cells are clipped to it
    min_width: int = 8  # of a flexible column


Row = tuple[str, tuple[Any, ...]]  # row key, one cell per column


@dataclass(frozen=True)
class TableData:
    """A table's prepared rows (every column; the panel shows those that fit), its title suffix,
    the subtitle under it, and each column's natural width (measured in the poll thread)."""

    rows: tuple[Row, ...] = ()
    title: str = ""
    subtitle: str = ""
    widths: tuple[int, ...] = ()
    total: int = 0  # rows there are (a paged table shows some of them)

    @classmethod
    def of(cls, columns: Sequence[Column], rows: Iterable[Row], title: str = "", subtitle: str = "") -> "TableData":
        rows = tuple(rows)
        widths = [cell_len(c.label) for c in columns]
        for _, cells in rows:
            for i, cell in enumerate(cells):
                w = width_of(cell)
                if w > widths[i]:
                    widths[i] = w
        return cls(rows, title, subtitle, tuple(widths))


Layout = tuple[tuple[int, ...], tuple[tuple[int, int], ...]]  # columns shown, (flexible column, width)


def fit(columns: Sequence[Column], widths: Sequence[int], available: int, padding: int = 1) -> Layout:
    """Which columns fit in ``available`` cells, and the widths of the flexible columns that
    have to shrink. Columns drop by priority (the highest first) while even the flexible ones at
    their minimum do not fit; then the flexible columns share what the others leave, each
    shrinking in proportion to what it would need beyond its minimum."""
    pad = 2 * padding
    shown = list(range(len(columns)))

    def floor(i: int) -> int:
        return min(columns[i].min_width, widths[i]) if columns[i].flex else widths[i]

    while sum(floor(i) + pad for i in shown) > available:
        droppable = [i for i in shown if columns[i].priority > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
    flexible = [i for i in shown if columns[i].flex]
    room = available - sum(widths[i] + pad for i in shown if i not in flexible) - pad * len(flexible)
    if not flexible or room >= sum(widths[i] for i in flexible):
        return tuple(shown), ()
    extra = max(0, room - sum(floor(i) for i in flexible))
    wants = {i: widths[i] - floor(i) for i in flexible}
    total = sum(wants.values()) or 1
    sized = []
    for i in flexible:
        sized.append((i, floor(i) + extra * wants[i] // total))
    return tuple(shown), tuple(sized)


class Panel(Generic[S, D]):
    """The protocol (see the module's doc). ``id`` names the panel's data in a :class:`Frame`."""

    id: str | None

    def view_settings(self) -> Any:
        """UI thread: the operator's settings ``prepare`` depends on (frozen), or None."""
        return None

    @classmethod
    def prepare(cls, source: S, view: Any) -> D:  # pragma: no cover - every panel defines it
        raise NotImplementedError

    async def draw(self, data: D) -> None:  # pragma: no cover - every panel defines it
        raise NotImplementedError


def _shown(panel: Any) -> bool:
    """Whether a panel is displayed (itself and every container above it)."""
    try:
        node = panel
        while node is not None:
            if not getattr(node, "display", True):
                return False
            node = node.parent
    except Exception:  # noqa: BLE001 - not mounted (a test's bare panel): draw it
        return True
    return True


@dataclass(frozen=True)
class Frame(Generic[S]):
    """One poll of a screen, ready to draw: what was read, and every panel's prepared data."""

    source: S
    data: Mapping[str, Any] = field(default_factory=dict)


class Board(Generic[S]):
    """The panels of one screen, polled together."""

    def __init__(self, panels: Sequence[Panel]):
        self.panels = tuple(panels)
        self._pending: dict[str | None, Any] = {}  # data of hidden panels, drawn when they show

    def views(self) -> dict[str, Any]:
        return {p.id: p.view_settings() for p in self.panels}

    def prepare(self, source: S, views: Mapping[str, Any]) -> Frame[S]:
        return Frame(source, {p.id: type(p).prepare(source, views.get(p.id)) for p in self.panels})

    async def draw(self, frame: Frame[S]) -> None:
        """Draw the panels on screen; a hidden one (e.g. the scale sets' second place, shown only on a
        wide terminal) is drawn when it shows again, with the newest data."""
        for panel in self.panels:
            if not _shown(panel):
                self._pending[panel.id] = frame.data[panel.id]
                continue
            self._pending.pop(panel.id, None)
            await panel.draw(frame.data[panel.id])

    def pending_shown(self) -> bool:
        """A hidden panel with undrawn data is on screen now."""
        return any(p.id in self._pending and _shown(p) for p in self.panels) if self._pending else False

    async def draw_pending(self) -> None:
        """The panels that became visible since the last poll, with that poll's data."""
        for panel in self.panels:
            if panel.id in self._pending and _shown(panel):
                await panel.draw(self._pending.pop(panel.id))

    def set_stale(self, stale: bool) -> None:
        for panel in self.panels:
            if isinstance(panel, TablePanel):
                panel.set_stale(stale)


class TablePanel(DataTable[Any], Panel[S, TableData]):
    """Subclasses set ``COLUMNS``, ``TITLE`` and ``prepare``. ``TAIL``: the first row (the newest)
    always stays in view."""

    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    TITLE: ClassVar[str] = ""
    CURSOR: ClassVar[str] = "row"  # "none" for tables that are only read
    TAIL: ClassVar[bool] = False

    def __init__(self, *, id: str | None = None, classes: str | None = None):
        super().__init__(cursor_type=self.CURSOR, zebra_stripes=True, show_cursor=self.CURSOR != "none",
                         id=id, classes=classes)
        self._cells: dict[str, tuple] = {}  # exactly the objects the table holds, by row key
        self._stale = False
        self._lock = asyncio.Lock()  # one diff at a time (a poll's and a filter's may overlap)
        self._columns: dict = {}
        self._prepared = TableData()
        self._suffix = ""
        self._layout: Layout | None = None

    def on_mount(self) -> None:
        self._apply_layout(self._wanted_layout())
        self.set_title()

    @property
    def table(self) -> DataTable:
        return self

    @property
    def column_keys(self) -> list[str]:
        return [self.COLUMNS[i].key for i in self.shown]

    @property
    def shown(self) -> tuple[int, ...]:
        """Indices (in ``COLUMNS``) of the columns on screen."""
        return self._layout[0] if self._layout else tuple(range(len(self.COLUMNS)))

    def title_suffix(self) -> str:
        return self._suffix

    def set_title(self) -> None:
        suffix = self.title_suffix()
        stale = " [reverse] stale [/]" if self._stale else ""
        self.border_title = f"{self.TITLE}{(' · ' + suffix) if suffix else ''}{stale}"

    def set_stale(self, stale: bool) -> None:
        if stale != self._stale:
            self._stale = stale
            self.set_class(stale, "-stale")
            self.set_title()

    def cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - the cursor is outside the rows
            return None

    def keys(self) -> list[str]:
        return [row.key.value for row in self.ordered_rows]

    # --- the UI thread's half ------------------------------------------------------------
    async def draw(self, data: TableData) -> None:
        if data == self._prepared and self._layout == self._wanted_layout():
            return  # nothing changed since the last poll: no diff, no redraw
        self._prepared = data
        self._suffix = data.title
        self.border_subtitle = data.subtitle
        await self.show_rows(data.rows)
        self.set_title()

    async def show_rows(self, rows: Sequence[Row], order: Iterable[str] | None = None) -> None:
        """Diff ``rows`` (in ``order``, default: as given) into the table, columns fitted to the width."""
        async with self._lock:
            wanted = self._wanted_layout()
            if wanted != self._layout:
                self._apply_layout(wanted, rows)
            for _ in self.sync_steps(self._project(rows), order):
                await asyncio.sleep(0)
            if self.TAIL and self.row_count:
                self.move_cursor(row=0, scroll=False)
                self.scroll_to(y=0, animate=False)

    def sync(self, rows: Sequence[Row], order: Iterable[str] | None = None) -> None:
        """The same in one go (small tables, tests)."""
        wanted = self._wanted_layout()
        if wanted != self._layout:
            self._apply_layout(wanted, rows)
        for _ in self.sync_steps(self._project(rows), order):
            pass

    def on_resize(self) -> None:
        wanted = self._wanted_layout()
        if wanted != self._layout:
            self._apply_layout(wanted, self._prepared.rows)

    def _available(self) -> int:
        return self.size.width - self.styles.scrollbar_size_vertical

    def _wanted_layout(self) -> Layout:
        widths = self._prepared.widths or tuple(cell_len(c.label) for c in self.COLUMNS)
        if self.size.width <= 0:
            return tuple(range(len(self.COLUMNS))), ()
        return fit(self.COLUMNS, widths, self._available(), self.cell_padding)

    def _project(self, rows: Sequence[Row]) -> list[Row]:
        shown = self.shown
        return [(key, tuple(cells[i] for i in shown)) for key, cells in rows]

    def _apply_layout(self, layout: Layout, rows: Sequence[Row] = ()) -> None:
        """Put the columns that fit on screen (a rebuild: only when the width or the widths changed)."""
        selected = self.cursor_key()
        shown, sized = layout
        fixed = dict(sized)
        self.clear(columns=True)
        for i in shown:
            column = self.COLUMNS[i]
            label = Text(column.label, justify="right" if column.right else "left")
            width = fixed.get(i)
            self.add_column(label if width is None else clip(label, width), key=column.key, width=width)
        self._columns = {column.key.value: column for column in self.columns.values()}
        self._layout = layout
        self._cells = {}
        for key, cells in self._project(rows):
            self.add_row(*cells, key=key)
            self._cells[key] = cells
        if selected is not None and selected in self._cells:
            self.move_cursor(row=self.get_row_index(selected), scroll=False)

    def sync_steps(self, rows: Sequence[Row], order: Iterable[str] | None = None) -> Iterator[None]:
        selected = self.cursor_key()
        wanted = dict(rows)
        keys = self.column_keys
        ops = 0
        for key in [k for k in self._cells if k not in wanted]:
            self.remove_row(key)
            del self._cells[key]
            ops += 1
            if ops >= CHUNK:
                ops = 0
                yield
        for key, cells in rows:
            old = self._cells.get(key)
            if old is None:
                self.add_row(*cells, key=key)
                self._cells[key] = tuple(cells)
                ops += 1
            elif old != cells:
                merged = []
                for column, before, after in zip(keys, old, cells):
                    if before == after:
                        merged.append(before)
                        continue
                    # widen the column when the value no longer fits; never ask the table to
                    # re-measure otherwise (for a narrower value it scans the whole column)
                    wider = width_of(after) > self._columns[column].content_width
                    self.update_cell(key, column, after, update_width=wider)
                    merged.append(after)
                    ops += 1
                self._cells[key] = tuple(merged)
            if ops >= CHUNK:
                ops = 0
                yield
        order = list(order) if order is not None else [k for k, _ in rows]
        if self.keys() != order:
            # rows are recognised by the identity of the cell objects the table holds
            position = {tuple(map(id, self._cells[k])): i for i, k in enumerate(order)}
            self.sort(key=lambda values: position.get(tuple(map(id, values)), len(position)))
        if selected is not None and selected in self._cells and not self.TAIL:
            index = self.get_row_index(selected)
            if index != self.cursor_row:
                self.move_cursor(row=index, scroll=False)

    # DataTable caches rendered lines by its update count; when new rows widen a column
    # (measured later, on idle) it does not drop those caches, so a header rendered in between
    # keeps the old widths until the next change. Dropping them once the new widths are known
    # fixes it; this runs only when rows were added.
    def _update_dimensions(self, new_rows) -> None:  # noqa: ANN001 - Textual's signature
        super()._update_dimensions(new_rows)
        self._clear_caches()
