"""A bordered panel holding a DataTable that is updated by diffing, never cleared.

Each poll the panel computes the rows it wants (key -> cells); :meth:`TablePanel.sync` removes
the rows that went away, adds the new ones, updates only the cells that changed, and reorders
only when the order changed. The cursor stays on the same row (by key), so the operator's
selection survives every refresh.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

def right(value: object, style: str = "") -> Text:
    return Text(str(value), style=style, justify="right")


class TablePanel(Vertical):
    """Subclasses set ``COLUMNS`` (key, label, right-aligned) and ``TITLE``."""

    COLUMNS: tuple[tuple[str, str, bool], ...] = ()
    TITLE = ""
    CURSOR = "row"  # "none" for tables that are only read

    def __init__(self, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self._cells: dict[str, tuple] = {}
        self._stale = False

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type=self.CURSOR, zebra_stripes=True, show_cursor=self.CURSOR != "none",
                        id=f"{self.id}-table" if self.id else None)

    def on_mount(self) -> None:
        table = self.table
        for key, label, is_right in self.COLUMNS:
            table.add_column(Text(label, justify="right" if is_right else "left"), key=key)
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

    def sync(self, rows: Sequence[tuple[str, tuple]], order: Iterable[str] | None = None) -> None:
        """Make the table show ``rows`` (in ``order``, default: as given), changing only what changed."""
        table = self.table
        selected = self.cursor_key()
        wanted = dict(rows)
        for key in [k for k in self._cells if k not in wanted]:
            table.remove_row(key)
            del self._cells[key]
        for key, cells in rows:
            old = self._cells.get(key)
            if old is None:
                table.add_row(*cells, key=key)
            elif old != cells:
                for column, before, after in zip(self.column_keys, old, cells):
                    if before != after:
                        table.update_cell(key, column, after, update_width=True)
            self._cells[key] = cells
        order = list(order) if order is not None else [k for k, _ in rows]
        if self.keys() != order:
            position = {tuple(str(c) for c in self._cells[k]): i for i, k in enumerate(order)}
            table.sort(key=lambda values: position.get(tuple(str(v) for v in values), len(position)))
        if selected is not None and selected in self._cells:
            index = table.get_row_index(selected)
            if index != table.cursor_row:
                table.move_cursor(row=index, scroll=False)
