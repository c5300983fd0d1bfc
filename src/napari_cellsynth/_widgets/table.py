"""A read-only table of a pandas DataFrame for a dock widget (a Qt model: rows are drawn only when seen,
so a table of many thousand crops costs nothing until it is scrolled)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy, QTableView


class FrameModel(QAbstractTableModel):
    def __init__(self, frame=None):
        super().__init__()
        self.frame = frame

    def set_frame(self, frame) -> None:
        self.beginResetModel()
        self.frame = frame
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # Qt's names, not PEP 8's
        return 0 if self.frame is None or parent.isValid() else len(self.frame)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if self.frame is None or parent.isValid() else len(self.frame.columns)

    def data(self, index, role=Qt.DisplayRole):
        if self.frame is None or not index.isValid():
            return None
        if role == Qt.DisplayRole:
            value = self.frame.iat[index.row(), index.column()]
            if isinstance(value, (float, np.floating)):
                return f"{value:.3f}"
            return str(value)
        if role == Qt.TextAlignmentRole:
            value = self.frame.iat[index.row(), index.column()]
            numeric = isinstance(value, (int, float, np.integer, np.floating))
            return int((Qt.AlignRight if numeric else Qt.AlignLeft) | Qt.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role != Qt.DisplayRole or self.frame is None:
            return None
        if orientation == Qt.Horizontal:
            return str(self.frame.columns[section])
        return None


class FrameTable(QTableView):
    """The table view; ``row_chosen(row)`` is called when the user picks a row."""

    def __init__(self, row_chosen=None):
        super().__init__()
        self.model_ = FrameModel()
        self.setModel(self.model_)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(20)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.Interactive)
        self.horizontalHeader().setDefaultSectionSize(70)
        self.setMinimumHeight(160)
        self.setMinimumWidth(1)  # as the status line: the dock's width decides, never the table's columns
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Expanding)
        self._row_chosen = row_chosen
        self.clicked.connect(lambda index: self._row_chosen and self._row_chosen(index.row()))

    def set_frame(self, frame) -> None:
        self.model_.set_frame(frame)
