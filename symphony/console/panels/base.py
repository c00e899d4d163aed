"""A bordered panel holding a DataTable that is updated by diffing, never cleared.

Each poll the panel is given the rows it should show (key -> cells, built in the poll thread);
:meth:`TablePanel.sync_steps` removes the rows that went away, adds the new ones, updates only the
cells that changed, and reorders only when the order changed. It yields every ``CHUNK``
operations, so a huge table is updated over several turns of the event loop (keys are handled
in between) instead of in one long stall. The cursor stays on the same row (by key), so the
operator's selection survives every refresh.
"""
from __future__ import annotations

import asyncio
from typing import Iterable, Iterator, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

CHUNK = 400  # table operations between two turns of the event loop


def right(value: object, style: str = "") -> Text:
    return Text(str(value), style=style, justify="right")


class Table(DataTable):
    """A DataTable whose header never shows stale column widths.

    Textual caches rendered lines by its update count; when new rows widen a column (measured
    later, on idle) it does not drop those caches, so a header rendered in between keeps the
    old widths until the next change. Dropping them once the new widths are known fixes it;
    this runs only when rows were added.
    """

    def _update_dimensions(self, new_rows) -> None:  # noqa: ANN001 - Textual's signature
        super()._update_dimensions(new_rows)
        self._clear_caches()


def _width(cell: object) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))


class TablePanel(Vertical):
    """Subclasses set ``COLUMNS`` (key, label, right-aligned) and ``TITLE``."""

    COLUMNS: tuple[tuple[str, str, bool], ...] = ()
    TITLE = ""
    CURSOR = "row"  # "none" for tables that are only read

    def __init__(self, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self._cells: dict[str, tuple] = {}  # exactly the objects the table holds, by row key
        self._stale = False
        self._lock = asyncio.Lock()  # one diff at a time (a poll's and a filter's may overlap)
        self._columns: dict = {}

    def compose(self) -> ComposeResult:
        yield Table(cursor_type=self.CURSOR, zebra_stripes=True, show_cursor=self.CURSOR != "none",
                    id=f"{self.id}-table" if self.id else None)

    def on_mount(self) -> None:
        table = self.table
        for key, label, is_right in self.COLUMNS:
            table.add_column(Text(label, justify="right" if is_right else "left"), key=key)
        self._columns = {column.key.value: column for column in table.columns.values()}
        self.set_title()

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    @property
    def column_keys(self) -> list[str]:
        return [key for key, _, _ in self.COLUMNS]

    def title_suffix(self) -> str:
        return ""

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
        table = self.table
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - the cursor is outside the rows
            return None

    def keys(self) -> list[str]:
        return [row.key.value for row in self.table.ordered_rows]

    # --- diffing ---------------------------------------------------------------------------
    def sync(self, rows: Sequence[tuple[str, tuple]], order: Iterable[str] | None = None) -> None:
        """Make the table show ``rows`` (in ``order``, default: as given), in one go."""
        for _ in self.sync_steps(rows, order):
            pass

    async def sync_async(self, rows: Sequence[tuple[str, tuple]], order: Iterable[str] | None = None) -> None:
        """The same, letting the event loop run every ``CHUNK`` operations."""
        async with self._lock:
            for _ in self.sync_steps(rows, order):
                await asyncio.sleep(0)

    def sync_steps(self, rows: Sequence[tuple[str, tuple]], order: Iterable[str] | None = None) -> Iterator[None]:
        table = self.table
        selected = self.cursor_key()
        wanted = dict(rows)
        ops = 0
        for key in [k for k in self._cells if k not in wanted]:
            table.remove_row(key)
            del self._cells[key]
            ops += 1
            if ops >= CHUNK:
                ops = 0
                yield
        for key, cells in rows:
            old = self._cells.get(key)
            if old is None:
                table.add_row(*cells, key=key)
                self._cells[key] = tuple(cells)
                ops += 1
            elif old != cells:
                merged = []
                for column, before, after in zip(self.column_keys, old, cells):
                    if before == after:
                        merged.append(before)
                        continue
                    # widen the column when the value no longer fits; never ask the table to
                    # re-measure otherwise (for a narrower value it scans the whole column)
                    wider = _width(after) > self._columns[column].content_width
                    table.update_cell(key, column, after, update_width=wider)
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
            table.sort(key=lambda values: position.get(tuple(map(id, values)), len(position)))
        if selected is not None and selected in self._cells:
            index = table.get_row_index(selected)
            if index != table.cursor_row:
                table.move_cursor(row=index, scroll=False)
