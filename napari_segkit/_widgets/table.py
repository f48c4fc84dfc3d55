"""A read-only table of per-object measurements (a pandas DataFrame) for the docks.

Clicking a row emits the row's position in the DataFrame, whatever the sort order.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem

_ROW_ROLE = Qt.ItemDataRole.UserRole


def _format(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    return str(value)


def format_cells(frame: pd.DataFrame) -> list[list[str]]:
    """The texts the table shows for ``frame``'s cells, row by row (no Qt: a worker
    thread may prepare them)."""
    return [[_format(v) for v in row] for row in frame.to_numpy(dtype=object)]


class _SortableItem(QTableWidgetItem):
    """Sorts numerically when both cells hold numbers."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.data(Qt.ItemDataRole.EditRole), other.data(Qt.ItemDataRole.EditRole)
        try:
            return float(a) < float(b)
        except (TypeError, ValueError):
            return str(a) < str(b)


class ObjectTable(QTableWidget):
    """Shows a DataFrame; ``row_selected(position)`` fires when the user picks a row."""

    row_selected = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.frame = pd.DataFrame()
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setMinimumHeight(160)
        self.itemSelectionChanged.connect(self._emit_selection)

    def set_frame(self, frame: pd.DataFrame | None,
                  cells: list[list[str]] | None = None) -> None:
        """Replace the table's content with ``frame`` (None clears it); ``cells`` are its
        texts when already formatted (:func:`format_cells`)."""
        for step in self.fill_steps(frame, cells, chunk=1 << 30):
            step()

    def fill_steps(self, frame: pd.DataFrame | None, cells: list[list[str]] | None = None,
                   chunk: int = 200) -> list:
        """:meth:`set_frame` as steps to run in turn: the header, ``chunk`` rows at a
        time, then sorting and column widths (a long table never holds the GUI thread
        for long)."""
        frame = pd.DataFrame() if frame is None else frame.reset_index(drop=True)
        cells = format_cells(frame) if cells is None else cells

        def begin() -> None:
            self.frame = frame
            self.setUpdatesEnabled(False)  # one repaint at the end, not one per slice
            self.setSortingEnabled(False)
            self.clear()
            self.setColumnCount(len(frame.columns))
            self.setRowCount(len(frame))
            self.setHorizontalHeaderLabels([str(c) for c in frame.columns])

        def rows(start: int) -> None:
            self.blockSignals(True)
            try:
                for r in range(start, min(start + chunk, len(cells))):
                    for c, text in enumerate(cells[r]):
                        item = _SortableItem(text)
                        item.setData(_ROW_ROLE, r)
                        self.setItem(r, c, item)
            finally:
                self.blockSignals(False)

        def end() -> None:
            self.setSortingEnabled(True)
            self.resizeColumnsToContents()
            self.setUpdatesEnabled(True)

        starts = range(0, len(cells), chunk)
        return [begin, *[lambda s=s: rows(s) for s in starts], end]

    def frame_row_of(self, table_row: int) -> int:
        """Position in :attr:`frame` of the row shown at ``table_row``."""
        item = self.item(table_row, 0)
        return int(item.data(_ROW_ROLE)) if item is not None else table_row

    def select_frame_row(self, position: int) -> None:
        """Select the row showing ``frame`` row ``position`` (as a user click would)."""
        for r in range(self.rowCount()):
            if self.frame_row_of(r) == position:
                self.selectRow(r)
                return

    def _emit_selection(self) -> None:
        rows = {index.row() for index in self.selectedIndexes()}
        if len(rows) == 1:
            self.row_selected.emit(self.frame_row_of(rows.pop()))
