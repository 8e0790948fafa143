""""Teach a sound..." dialog: it builds the request (name, clips folder, background folder, steps) and shows
the progress and result of the learn job the window queues for it (``JobQueue.enqueue_learn``)."""
from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton,
    QSpinBox, QVBoxLayout, QWidget,
)


class TeachDialog(QDialog):
    """Name + clips folder (+ optional background folder) -> Start; progress, Cancel, validation SDRi.

    ``start_requested(name, clips, background or None, steps)`` asks for a learn job: the window answers
    with ``watch(job_id)`` or ``refused(message)``; ``cancel_requested(job_id)`` asks to cancel it.  The
    window forwards the queue's progress (``job_progress``) and updates (``job_updated``)."""

    start_requested = pyqtSignal(str, str, object, int)
    cancel_requested = pyqtSignal(str)
    learned = pyqtSignal(str)               # emitted with the saved name

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Teach a sound")
        self.job_id: str | None = None
        lay = QVBoxLayout(self)
        intro = QLabel("Give 3-30 clips of the sound (a quarter is kept aside to check the result). Optionally, "
                       "clips of sounds that must not be taken. The separator stays as it is; only a new query "
                       "is fitted, usable as @NAME.")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setPlaceholderText('e.g. "generator hum"')
        form.addRow("Name", self.name)
        self.clips = QLineEdit()
        form.addRow("Clips folder", self._with_browse(self.clips))
        self.background = QLineEdit()
        self.background.setPlaceholderText("optional")
        form.addRow("Not this (folder)", self._with_browse(self.background))
        self.steps = QSpinBox()
        self.steps.setRange(1, 2000)
        self.steps.setValue(100)
        self.steps.setToolTip("Optimisation steps (100: a few minutes on CPU)")
        form.addRow("Steps", self.steps)
        lay.addLayout(form)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        lay.addWidget(self.bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.buttons = QDialogButtonBox()
        self.start_btn = self.buttons.addButton("Start", QDialogButtonBox.ButtonRole.ActionRole)
        self.cancel_btn = self.buttons.addButton("Cancel", QDialogButtonBox.ButtonRole.RejectRole)
        self.close_btn = self.buttons.addButton("Close", QDialogButtonBox.ButtonRole.AcceptRole)
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self.cancel)
        self.close_btn.clicked.connect(self.accept)
        lay.addWidget(self.buttons)
        self._set_running(False)

    def _with_browse(self, edit: QLineEdit) -> QWidget:
        w = QWidget()
        h = QHBoxLayout(w)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(edit, 1)
        b = QPushButton("Browse…")
        b.clicked.connect(lambda: edit.setText(QFileDialog.getExistingDirectory(self, "Folder", edit.text())
                                               or edit.text()))
        h.addWidget(b)
        return w

    def _set_running(self, on: bool):
        self.start_btn.setEnabled(not on)
        self.cancel_btn.setEnabled(on)
        self.close_btn.setEnabled(not on)
        for w in (self.name, self.clips, self.background, self.steps):
            w.setEnabled(not on)

    @property
    def running(self) -> bool:
        return self.job_id is not None

    def start(self):
        name, clips = self.name.text().strip().lstrip("@").strip(), self.clips.text().strip()
        if not name:
            self.status.setText("Give the sound a name.")
            return
        if not clips:
            self.status.setText("Choose the folder with clips of the sound.")
            return
        self._set_running(True)
        self.bar.setValue(0)
        self.status.setText("Reading clips…")
        self.start_requested.emit(name, clips, self.background.text().strip() or None, self.steps.value())

    def watch(self, job_id: str):
        """The learn job that runs this dialog's request."""
        self.job_id = job_id

    def refused(self, message: str):
        self.job_id = None
        self._set_running(False)
        self.status.setText(message)

    def cancel(self):
        if self.job_id is not None:
            self.cancel_requested.emit(self.job_id)
            self.status.setText("Cancelling…")

    def job_progress(self, p):
        if p.job_id == self.job_id and p.detail:
            self.bar.setValue(int(1000 * p.fraction))
            self.status.setText(p.detail)

    def job_updated(self, job, result):
        """A state change of a queue job (``result``: its ``JobResult`` once done)."""
        if job.id != self.job_id or job.status in ("pending", "running"):
            return
        self.job_id = None
        self._set_running(False)
        if job.status == "done" and result is not None and result.learned is not None:
            f = result.learned.facts
            self.bar.setValue(1000)
            self.status.setText(f"Saved @{result.learned.name}. Validation on {f['val_clips']} held-out clip(s): SDRi "
                                f"{f['val_sdri_db']:.1f} dB (the {f['start']} query it started from: "
                                f"{f['val_sdri_start_db']:.1f} dB).")
            self.learned.emit(result.learned.name)
        elif job.status == "cancelled":
            self.status.setText("Cancelled; nothing was saved.")
        else:
            self.status.setText(job.error or "failed")

    def reject(self):
        if self.running:
            self.cancel()
            return
        super().reject()
