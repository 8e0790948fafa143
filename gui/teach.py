""""Teach a sound..." dialog: fit a learned query (@NAME) from a folder of clips, in a worker thread."""
from __future__ import annotations

import os
import threading

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton,
    QSpinBox, QVBoxLayout, QWidget,
)


class TeachDialog(QDialog):
    """Name + clips folder (+ optional background folder) -> Start; progress, Cancel, validation SDRi."""

    progressed = pyqtSignal(int, int, float)
    finished_ok = pyqtSignal(str, str)      # name, message
    failed = pyqtSignal(str)
    learned = pyqtSignal(str)               # emitted with the saved name

    def __init__(self, window, parent=None):
        super().__init__(parent or window)
        self.win = window
        self.setWindowTitle("Teach a sound")
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
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
        self.progressed.connect(self._on_progress)
        self.finished_ok.connect(self._on_done)
        self.failed.connect(self._on_failed)
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
        return self._thread is not None and self._thread.is_alive()

    def start(self):
        name, clips = self.name.text().strip().lstrip("@").strip(), self.clips.text().strip()
        if not name:
            self.status.setText("Give the sound a name.")
            return
        if not clips:
            self.status.setText("Choose the folder with clips of the sound.")
            return
        self._cancel.clear()
        self._set_running(True)
        self.bar.setValue(0)
        self.status.setText("Reading clips…")
        bg, steps = self.background.text().strip() or None, self.steps.value()
        self._thread = threading.Thread(target=self._work, args=(name, clips, bg, steps), daemon=True)
        self._thread.start()

    def cancel(self):
        self._cancel.set()
        self.status.setText("Cancelling…")

    def _work(self, name: str, clips: str, background: str | None, steps: int):
        try:
            from plugin_bridge.engine.learn import LearnSettings, default_interferers, learn_query, load_clips
            from plugin_bridge.errors import JobCancelled
            from plugin_bridge.learned import LearnedQuery, LearnedStore, model_hash

            store = LearnedStore()
            if name.lower() in (n.lower() for n in store.names()):
                raise ValueError(f"a learned query named '@{name}' already exists; choose another name")
            model = self.win._get_separator("torch", "cpu").model
            rate = model.cfg.sample_rate
            xs = load_clips(clips, rate)
            inter, desc = (load_clips(background, rate, "background clips"), "your background clips") if background \
                else default_interferers(rate, os.environ.get("PLUGIN_BRIDGE_CORPUS") or None)
            try:
                res = learn_query(model, xs, inter, name, LearnSettings(steps=steps),
                                  progress=lambda s, n, l: self.progressed.emit(s, n, l), cancel=self._cancel.is_set,
                                  interferer_desc=desc)
            except JobCancelled:
                self.failed.emit("Cancelled; nothing was saved.")
                return
            lq = LearnedQuery(name, res.vector, "learned", model_hash(model), model.name, model.encoder_id,
                              facts={"clips": len(xs), "val_clips": res.n_val, "steps": res.steps,
                                     "interferers": desc, "val_sdri_start_db": round(res.val_sdri_start, 2),
                                     "val_sdri_db": round(res.val_sdri, 2)})
            store.save(lq)
            self.finished_ok.emit(lq.name, f"Saved @{lq.name}. Validation on {res.n_val} held-out clip(s): SDRi "
                                           f"{res.val_sdri:.1f} dB (the {res.start_kind} query it started from: "
                                           f"{res.val_sdri_start:.1f} dB).")
        except Exception as exc:  # noqa: BLE001 - shown as a message, never a traceback
            from plugin_bridge.gui.mainwindow import _pretty

            self.failed.emit(_pretty(exc))

    def _on_progress(self, step: int, total: int, loss: float):
        self.bar.setValue(int(1000 * step / max(total, 1)))
        self.status.setText(f"Step {step}/{total}  loss {loss:.4f}")

    def _on_done(self, name: str, msg: str):
        self._set_running(False)
        self.bar.setValue(1000)
        self.status.setText(msg)
        self.learned.emit(name)

    def _on_failed(self, msg: str):
        self._set_running(False)
        self.status.setText(msg)

    def reject(self):
        if self.running:
            self.cancel()
            return
        super().reject()
