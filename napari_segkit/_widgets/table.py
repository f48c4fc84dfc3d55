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

    def set_frame(self, frame: pd.DataFrame | None) -> None:
        """Replace the table's content with ``frame`` (None clears it)."""
        self.frame = pd.DataFrame() if frame is None else frame.reset_index(drop=True)
        self.setSortingEnabled(False)
        self.blockSignals(True)
        try:
            self.clear()
            self.setColumnCount(len(self.frame.columns))
            self.setRowCount(len(self.frame))
            self.setHorizontalHeaderLabels([str(c) for c in self.frame.columns])
            values = self.frame.to_numpy(dtype=object)
            for r in range(values.shape[0]):
                for c in range(values.shape[1]):
                    item = _SortableItem(_format(values[r, c]))
                    item.setData(_ROW_ROLE, r)
                    self.setItem(r, c, item)
        finally:
            self.blockSignals(False)
        self.setSortingEnabled(True)
        self.resizeColumnsToContents()

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
