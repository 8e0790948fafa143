"""Side panels: stems list (drag source), query panel (queries + presets + Run), jobs.

The panels know no window: they show what they are given (``StemList.fill``, ``QueryPanel.set_region``,
``JobPanel.update_job``, ...) and report what the user asks for through their signals, which the window
connects to its edits."""
from __future__ import annotations

import os

from PyQt6.QtCore import QPoint, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QDrag, QIcon, QPixmap
from PyQt6.QtWidgets import (
    QAbstractItemView, QColorDialog, QComboBox, QDoubleSpinBox, QFrame, QGroupBox, QHBoxLayout, QLabel,
    QLineEdit, QListWidget, QListWidgetItem, QProgressBar, QPushButton, QScrollArea, QSizePolicy, QToolButton,
    QVBoxLayout, QWidget,
)

from plugin_bridge.gui.timeline import fmt_time, mime_for_files, stem_complete, stem_file

NAMED_MARK = "◆"  # = plugin_bridge.learned.MARK (kept here so the panel imports no engine code)
QUERY_COLOURS = ["#4aa3ff", "#ffb84a", "#8fd18f", "#b26bff", "#ff6b6b", "#4ad0c8", "#ff8fd1", "#c9c95b"]


def swatch(colour: str, size: int = 12) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(QColor(colour))
    return QIcon(pm)


class StemList(QListWidget):
    """One row per stem/residual track of the session given to ``fill``; rows drag out as files (only
    complete ones)."""

    contextMenuRequested = pyqtSignal(str, QPoint)   # track id, global position

    def __init__(self, parent=None):
        super().__init__(parent)
        self.session = None
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        # long stem and file names are shortened in the middle (the tooltip has the whole path), not cut
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)

    def fill(self, session):
        self.session = session
        self.clear()
        if session is None:
            return
        for t in session.tracks:
            if t.kind == "source":
                continue
            ok = stem_complete(session, t.id)
            it = QListWidgetItem(swatch("#9aa0a8" if t.kind == "residual" else (t.colour or "#9aa0a8")), f"{t.name}\n{os.path.basename(t.path)}")
            it.setData(Qt.ItemDataRole.UserRole, t.id)
            it.setToolTip(t.path)
            flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
            if ok:
                flags |= Qt.ItemFlag.ItemIsDragEnabled
            it.setFlags(flags)
            self.addItem(it)

    def mimeTypes(self):
        return ["text/uri-list"]

    def mimeData(self, items):
        paths = [p for p in (stem_file(self.session, it.data(Qt.ItemDataRole.UserRole)) for it in items) if p]
        return mime_for_files(paths)

    def startDrag(self, actions):
        items = [it for it in self.selectedItems() if it.flags() & Qt.ItemFlag.ItemIsDragEnabled]
        if not items:
            return
        md = self.mimeData(items)
        drag = QDrag(self)
        drag.setMimeData(md)
        drag.exec(Qt.DropAction.CopyAction)

    def _menu(self, pos):
        it = self.itemAt(pos)
        if it is not None:
            self.contextMenuRequested.emit(it.data(Qt.ItemDataRole.UserRole), self.mapToGlobal(pos))


class QueryRow(QFrame):
    changed = pyqtSignal()
    removeRequested = pyqtSignal(object)

    def __init__(self, text: str = "", negative: str = "", colour: str = "#4aa3ff", label: str = "",
                 token: str = "", preset=None, chain=None, parent=None):
        super().__init__(parent)
        self.colour = colour
        self.label, self.token, self.preset, self.chain = label, token, preset, list(chain or [])
        self.setObjectName("queryRow")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(3)
        top = QHBoxLayout()
        top.setSpacing(4)
        self.colour_btn = QToolButton()
        self.colour_btn.setToolTip("Stem colour")
        self.colour_btn.setFixedSize(22, 22)
        self.colour_btn.clicked.connect(self._pick_colour)
        self._paint_colour()
        self.text = QLineEdit(text)
        self.text.setPlaceholderText('What to extract, e.g. "dialogue", "birds chirping", or @learned sound')
        self.text.editingFinished.connect(self.changed)
        # a learned / example query (@NAME) carries a distinct mark
        self.mark = QLabel(NAMED_MARK)
        self.mark.setObjectName("namedMark")
        self.mark.setStyleSheet("color: #ffd166; font-weight: bold;")
        self.mark.setToolTip("A learned sound or an audio example (saved with your presets)")
        self.text.textChanged.connect(self._update_mark)
        self._update_mark()
        self.remove = QToolButton(text="✕")
        self.remove.setToolTip("Remove this query")
        self.remove.clicked.connect(lambda: self.removeRequested.emit(self))
        top.addWidget(self.colour_btn)
        top.addWidget(self.mark)
        top.addWidget(self.text, 1)
        top.addWidget(self.remove)
        lay.addLayout(top)
        neg = QHBoxLayout()
        neg.setContentsMargins(26, 0, 26, 0)
        self.negative = QLineEdit(negative or "")
        self.negative.setPlaceholderText("but not... (optional)")
        self.negative.editingFinished.connect(self.changed)
        neg.addWidget(self.negative)
        lay.addLayout(neg)

    @property
    def is_named(self) -> bool:
        from plugin_bridge.learned import is_named_query

        return is_named_query(self.text.text())

    def _update_mark(self, *_):
        self.mark.setVisible(self.is_named)

    def _paint_colour(self):
        self.colour_btn.setStyleSheet(f"background: {self.colour}; border: 1px solid #111; border-radius: 3px;")

    def _pick_colour(self):
        c = QColorDialog.getColor(QColor(self.colour), self, "Stem colour")
        if c.isValid():
            self.colour = c.name()
            self._paint_colour()
            self.changed.emit()

    def spec(self):
        from plugin_bridge.session.model import QuerySpec

        text = self.text.text().strip()
        if not text:
            return None
        neg = self.negative.text().strip() or None
        return QuerySpec(text=text, negative=neg, label=self.label if self.label else "", colour=self.colour,
                         token=self.token, preset=self.preset, chain=list(self.chain))


class QueryPanel(QGroupBox):
    """Queries of the region given to ``set_region``, preset picker and Run.  Edits leave as signals
    (the region's id first); the panel changes no session itself."""

    queriesChanged = pyqtSignal(str, list)           # region id, [QuerySpec] (the non-empty rows)
    renameRequested = pyqtSignal(str, str)           # region id, name
    rangeChanged = pyqtSignal(str, int, int)         # region id, start, end (session frames)
    presetRequested = pyqtSignal(str, str)           # region id, preset name ("Apply")
    savePresetRequested = pyqtSignal()               # "Save…": these queries as a user preset
    teachRequested = pyqtSignal()                    # "Teach…"
    runRequested = pyqtSignal()                      # "Run"

    def __init__(self, parent=None):
        super().__init__("Region", parent)
        self.region_id: str | None = None
        self.rows: list[QueryRow] = []
        lay = QVBoxLayout(self)
        lay.setSpacing(6)
        head = QHBoxLayout()
        self.name = QLineEdit()
        self.name.setPlaceholderText("Region name")
        self.name.setMinimumWidth(80)
        self.name.editingFinished.connect(self._rename)
        head.addWidget(self.name, 1)
        self.start = QDoubleSpinBox()
        self.end = QDoubleSpinBox()
        for sb, tip in ((self.start, "Start (s)"), (self.end, "End (s)")):
            sb.setDecimals(3)
            sb.setRange(0, 10 ** 7)
            sb.setSuffix(" s")
            sb.setToolTip(tip)
            sb.setKeyboardTracking(False)
            sb.setMaximumWidth(110)
            sb.valueChanged.connect(self._range_changed)
            head.addWidget(sb)
        lay.addLayout(head)
        pr = QHBoxLayout()
        pr.addWidget(QLabel("Preset"))
        self.preset = QComboBox()
        self.preset.setMinimumContentsLength(14)
        self.preset.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        pr.addWidget(self.preset, 1)
        self.apply_preset = QPushButton("Apply")
        self.apply_preset.clicked.connect(self._apply_preset)
        self.save_preset = QPushButton("Save…")
        self.save_preset.setToolTip("Save these queries as a user preset")
        self.save_preset.clicked.connect(self.savePresetRequested)
        self.preset.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        for b in (self.apply_preset, self.save_preset):
            b.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            b.setMaximumWidth(b.fontMetrics().horizontalAdvance(b.text()) + 28)
        pr.addWidget(self.apply_preset)
        pr.addWidget(self.save_preset)
        lay.addLayout(pr)
        lr = QHBoxLayout()
        lr.addWidget(QLabel("Learned"))
        self.learned = QComboBox()
        self.learned.setToolTip(f"{NAMED_MARK} learned sounds and saved audio examples")
        self.learned.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        lr.addWidget(self.learned, 1)
        self.add_learned = QPushButton("Add")
        self.add_learned.setToolTip("Add the chosen learned sound / example as a query of this region")
        self.add_learned.clicked.connect(self._add_learned)
        self.teach_btn = QPushButton("Teach…")
        self.teach_btn.setToolTip("Teach a sound from a few clips")
        self.teach_btn.clicked.connect(self.teachRequested)
        for b in (self.add_learned, self.teach_btn):
            b.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            b.setMaximumWidth(b.fontMetrics().horizontalAdvance(b.text()) + 28)
            lr.addWidget(b)
        lay.addLayout(lr)
        self.rows_box = QVBoxLayout()
        self.rows_box.setSpacing(4)
        holder = QWidget()
        holder.setLayout(self.rows_box)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(holder)
        scroll.setMinimumHeight(70)   # one query row; the panel grows with the window
        lay.addWidget(scroll, 1)
        self.rows_box.addStretch(1)
        bottom = QHBoxLayout()
        self.add_btn = QPushButton("+ Add query")
        self.add_btn.clicked.connect(lambda: self.add_row(focus=True))
        bottom.addWidget(self.add_btn)
        bottom.addStretch(1)
        self.run_btn = QPushButton("Run  ▶")
        self.run_btn.setObjectName("runButton")
        self.run_btn.setToolTip("Render one stem per query, plus the residual, under the source track")
        self.run_btn.clicked.connect(self.runRequested)
        bottom.addWidget(self.run_btn)
        lay.addLayout(bottom)
        self.hint = QLabel("Drag across a track to select a region.")
        self.hint.setObjectName("hint")
        self.hint.setWordWrap(True)
        lay.addWidget(self.hint)
        self._loading = False
        self.set_region(None)

    def fill_presets(self, entries):
        cur = self.preset.currentText()
        self.preset.clear()
        for e in entries:
            if not e.ok:
                continue
            self.preset.addItem(("★ " if e.source == "user" else "") + e.name, e.name)
        i = self.preset.findText(cur)
        if i >= 0:
            self.preset.setCurrentIndex(i)

    def fill_learned(self, entries):
        cur = self.learned.currentData()
        self.learned.clear()
        for e in entries:
            if e.query is not None:
                self.learned.addItem(f"{NAMED_MARK} {e.name}" + ("  (example)" if e.query.kind == "example" else ""),
                                     e.name)
        i = self.learned.findData(cur)
        if i >= 0:
            self.learned.setCurrentIndex(i)
        self.add_learned.setEnabled(self.region_id is not None and self.learned.count() > 0)

    def _add_learned(self):
        name = self.learned.currentData()
        if not name or self.region_id is None:
            return
        empty = [r for r in self.rows if not r.text.text().strip()]
        if empty:
            empty[0].text.setText("@" + name)
        else:
            self.add_row("@" + name)
        self.commit()

    def set_region(self, region, track_rate: int = 48000):
        self._loading = True
        self.region_id = region.id if region is not None else None
        enabled = region is not None
        for w in (self.name, self.start, self.end, self.preset, self.apply_preset, self.save_preset, self.add_btn,
                  self.run_btn):
            w.setEnabled(enabled)
        self.add_learned.setEnabled(enabled and self.learned.count() > 0)
        for r in self.rows:
            r.setParent(None)
            r.deleteLater()
        self.rows = []
        if region is None:
            self.setTitle("Region")
            self.name.setText("")
            self.hint.setVisible(True)
            self._loading = False
            return
        self.hint.setVisible(False)
        self.setTitle(f"Region  {fmt_time(region.start / track_rate)} – {fmt_time(region.end / track_rate)}")
        self.name.setText(region.name)
        self._rate = track_rate
        self.start.setValue(region.start / track_rate)
        self.end.setValue(region.end / track_rate)
        for q in region.queries:
            self.add_row(q.text, q.negative or "", q.colour or self._next_colour(), q.label, q.token, q.preset,
                         q.chain)
        if not region.queries:
            self.add_row()
        self._loading = False

    def _next_colour(self) -> str:
        used = {r.colour for r in self.rows}
        for c in QUERY_COLOURS:
            if c not in used:
                return c
        return QUERY_COLOURS[len(self.rows) % len(QUERY_COLOURS)]

    def add_row(self, text="", negative="", colour=None, label="", token="", preset=None, chain=None,
                focus=False) -> QueryRow:
        row = QueryRow(text, negative, colour or self._next_colour(), label, token, preset, chain)
        row.changed.connect(self.commit)
        row.removeRequested.connect(self._remove_row)
        self.rows_box.insertWidget(len(self.rows), row)
        self.rows.append(row)
        if focus:
            row.text.setFocus()
        return row

    def _remove_row(self, row):
        if row in self.rows:
            self.rows.remove(row)
            row.setParent(None)
            row.deleteLater()
            self.commit()

    def specs(self):
        return [s for s in (r.spec() for r in self.rows) if s is not None]

    def commit(self):
        """Send the non-empty rows as the region's queries (``queriesChanged``)."""
        if self._loading or self.region_id is None:
            return
        self.queriesChanged.emit(self.region_id, self.specs())

    def _rename(self):
        if not self._loading and self.region_id:
            self.renameRequested.emit(self.region_id, self.name.text())

    def _range_changed(self):
        if self._loading or not self.region_id:
            return
        a = int(round(self.start.value() * self._rate))
        b = int(round(self.end.value() * self._rate))
        self.rangeChanged.emit(self.region_id, a, b)

    def _apply_preset(self):
        name = self.preset.currentData()
        if name and self.region_id:
            self.presetRequested.emit(self.region_id, name)


class JobRow(QFrame):
    cancelRequested = pyqtSignal(str)   # job id
    retryRequested = pyqtSignal(str)

    def __init__(self, job, title: str, parent=None):
        super().__init__(parent)
        self.job_id = job.id
        self.setObjectName("jobRow")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.setSpacing(2)
        top = QHBoxLayout()
        self.title = QLabel(title)
        self.title.setObjectName("jobTitle")
        self.title.setWordWrap(True)
        top.addWidget(self.title, 1)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(lambda: self.cancelRequested.emit(self.job_id))
        self.retry = QPushButton("Retry")
        self.retry.clicked.connect(lambda: self.retryRequested.emit(self.job_id))
        top.addWidget(self.cancel)
        top.addWidget(self.retry)
        lay.addLayout(top)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(8)
        lay.addWidget(self.bar)
        self.status = QLabel("")
        self.status.setObjectName("jobStatus")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.update_job(job)

    def update_job(self, job, eta=None, stage=None):
        st = self.state = job.status
        self.bar.setValue(int(job.progress * 1000))
        self.cancel.setVisible(st in ("pending", "running"))
        self.retry.setVisible(st in ("failed", "cancelled"))
        if st == "running":
            txt = f"{stage or 'starting'} {job.progress * 100:.0f} %"
            if eta is not None:
                txt += f" · about {fmt_time(eta, False)} left"
        elif st == "pending":
            txt = "waiting"
        elif st == "done":
            txt = "done" + (f" · {job.error}" if job.error else "")
        elif st == "cancelled":
            txt = "cancelled"
        else:
            txt = f"failed: {job.error}"
        self.status.setText(txt)
        self.status.setToolTip(txt)   # a warning can be longer than the row
        self.status.setProperty("state", st)
        warn = st == "done" and bool(job.error)
        self.status.setStyleSheet("color: #ff8080" if st == "failed" else "color: #ffd166" if warn else "")


class JobPanel(QGroupBox):
    """One row per job given to ``update_job`` (newest first); Cancel / Retry leave as signals.

    The panel is a view of the job logs, bounded: it keeps every waiting, running and failed job (a
    failure waits for Retry) and, of each kind (separation, chain re-render, teaching), the
    ``keep_finished`` done or cancelled ones that ended last, so many re-renders never push a render
    out; the rows of those that ended earlier are dropped (the session's job log keeps their records,
    and a render's stems stay).  "Clear finished" drops the rows of every job that ended."""

    cancelRequested = pyqtSignal(str)   # job id
    retryRequested = pyqtSignal(str)

    KEEP_FINISHED = 10   # finished rows shown per kind of job
    ACTIVE = ("pending", "running")

    def __init__(self, parent=None, keep_finished: int = KEEP_FINISHED):
        super().__init__("Jobs", parent)
        self.keep_finished = max(0, int(keep_finished))
        self.rows: dict[str, JobRow] = {}   # oldest first
        self._ended: dict[str, list[str]] = {}   # job kind -> its done / cancelled rows, in ending order
        self.dropped = 0                    # finished rows dropped since the last clear()
        outer = QVBoxLayout(self)
        head = QHBoxLayout()
        self.more = QLabel("")
        self.more.setObjectName("hint")
        head.addWidget(self.more, 1)
        self.clear_btn = QPushButton("Clear finished")
        self.clear_btn.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.clear_btn.setToolTip("Remove the rows of jobs that ended (their stems stay in the session)")
        self.clear_btn.clicked.connect(self.clear_finished)
        head.addWidget(self.clear_btn)
        outer.addLayout(head)
        self.box = QVBoxLayout()
        self.box.setSpacing(4)
        holder = QWidget()
        holder.setLayout(self.box)
        self.box.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(holder)
        outer.addWidget(scroll)
        self.empty = QLabel("No renders yet.")
        self.empty.setObjectName("hint")
        outer.addWidget(self.empty)
        self._show_counts()

    def clear(self):
        for job_id in list(self.rows):
            self._drop(job_id)
        self.dropped = 0
        self.empty.setText("No renders yet.")
        self._show_counts()

    def clear_finished(self):
        """Drop the rows of every job that is neither waiting nor running."""
        for job_id in [j for j, r in self.rows.items() if r.state not in self.ACTIVE]:
            self._drop(job_id)
        self.dropped = 0
        self.empty.setText("No jobs running.")
        self._show_counts()

    def update_job(self, job, title: str, eta=None, stage=None):
        row = self.rows.get(job.id)
        if row is None:
            row = JobRow(job, title)
            row.cancelRequested.connect(self.cancelRequested)
            row.retryRequested.connect(self.retryRequested)
            self.box.insertWidget(0, row)
            self.rows[job.id] = row
        row.update_job(job, eta, stage)
        ended = self._ended.setdefault(job.kind, [])
        if row.state in ("done", "cancelled"):
            if job.id not in ended:
                ended.append(job.id)
        elif job.id in ended:                # retried
            ended.remove(job.id)
        while len(ended) > self.keep_finished:   # the rows that ended first go first
            self._drop(ended[0])
            self.dropped += 1
        self._show_counts()

    def _drop(self, job_id: str):
        row = self.rows.pop(job_id)
        for ended in self._ended.values():
            if job_id in ended:
                ended.remove(job_id)
        row.setParent(None)
        row.deleteLater()

    def _show_counts(self):
        self.empty.setVisible(not self.rows)
        self.more.setText(f"{self.dropped} older finished job{'s' if self.dropped != 1 else ''} not shown"
                          if self.dropped else "")
        self.clear_btn.setEnabled(any(r.state not in self.ACTIVE for r in self.rows.values()))
