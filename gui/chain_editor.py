"""Per-stem plugin chain editor: built-in effects with parameter controls, VST3 plugins by path.

The chain format is ``plugin_bridge.plugins.chain``'s: a JSON list of ``{"type", "params", "enabled"}``
steps, or ``{"type": "vst3", "path", "params"}``.  The dialog validates with ``validate_chain``
before it closes, so a chain that reaches the session is always well formed."""
from __future__ import annotations

import copy
import os

from PyQt6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox,
    QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout,
)

LABELS = {"gain": "Gain", "highpass": "High-pass", "lowpass": "Low-pass", "lowshelf": "Low shelf",
          "highshelf": "High shelf", "peak": "Peak EQ", "compressor": "Compressor", "noisegate": "Noise gate",
          "limiter": "Limiter", "reverb": "Reverb", "delay": "Delay", "vst3": "VST3"}


PARAM_LABELS = {"gain_db": "Gain", "cutoff_frequency_hz": "Cut-off", "q": "Q", "threshold_db": "Threshold",
                "ratio": "Ratio", "attack_ms": "Attack", "release_ms": "Release", "room_size": "Room size",
                "damping": "Damping", "wet_level": "Wet level", "dry_level": "Dry level", "width": "Width",
                "freeze_mode": "Freeze", "delay_seconds": "Time", "feedback": "Feedback", "mix": "Mix"}


def param_label(key: str) -> str:
    return PARAM_LABELS.get(key, key.replace("_", " "))


def builtins() -> dict:
    from plugin_bridge.plugins.chain import BUILTINS

    return BUILTINS


def step_title(step: dict) -> str:
    t = step.get("type", "?")
    if t == "vst3":
        name = step.get("name") or os.path.basename(str(step.get("path", ""))).replace(".vst3", "")
        title = f"VST3: {name}"
    else:
        title = LABELS.get(t, t)
        params = step.get("params") or {}
        spec = builtins().get(t, (None, {}))[1]
        shown = []
        for k, v in params.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            unit = f" {spec[k].unit}" if k in spec and spec[k].unit else ""
            shown.append(f"{v:g}{unit}" if len(params) == 1 else f"{param_label(k).lower()} {v:g}{unit}")
        if shown:
            title += "  (" + ", ".join(shown) + ")"
    if step.get("enabled") is False:
        title += "  [off]"
    return title


class ChainEditor(QDialog):
    def __init__(self, chain: list[dict], title: str = "Plugin chain", parent=None, sample_rate: int | None = None):
        super().__init__(parent)
        self.sample_rate = sample_rate
        self.setWindowTitle(title)
        self.setMinimumSize(620, 420)
        self.chain = copy.deepcopy(chain or [])
        lay = QHBoxLayout(self)
        left = QVBoxLayout()
        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._show_step)
        left.addWidget(QLabel("Steps (top to bottom)"))
        left.addWidget(self.list, 1)
        add = QHBoxLayout()
        self.kind = QComboBox()
        for k in builtins():
            self.kind.addItem(LABELS.get(k, k), k)
        self.kind.setObjectName("stepKind")
        b_add = self.add_btn = QPushButton("Add")
        b_add.setObjectName("addStep")
        b_add.clicked.connect(lambda: self.add_builtin())
        b_vst = self.add_vst3_btn = QPushButton("Add VST3...")
        b_vst.clicked.connect(self.add_vst3_dialog)
        add.addWidget(self.kind, 1)
        add.addWidget(b_add)
        add.addWidget(b_vst)
        left.addLayout(add)
        mv = QHBoxLayout()
        self.buttons = {}
        for text, fn in (("Up", lambda: self.move(-1)), ("Down", lambda: self.move(1)), ("Remove", self.remove)):
            b = self.buttons[text] = QPushButton(text)
            b.clicked.connect(fn)
            mv.addWidget(b)
        left.addLayout(mv)
        lay.addLayout(left, 1)
        right = QVBoxLayout()
        self.params_box = QGroupBox("Parameters")
        self.form = QFormLayout(self.params_box)
        right.addWidget(self.params_box, 1)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #ff8080")
        right.addWidget(self.error)
        bb = self.button_box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                                | QDialogButtonBox.StandardButton.Cancel)
        bb.accepted.connect(self._accept)
        bb.rejected.connect(self.reject)
        right.addWidget(bb)
        lay.addLayout(right, 1)
        self._refresh_list()
        if self.chain:
            self.check()   # a chain from a hand-edited session or preset may be out of range: say so now

    # -- list -------------------------------------------------------------------------------------
    def _refresh_list(self, select: int | None = None):
        self.list.blockSignals(True)
        self.list.clear()
        for st in self.chain:
            self.list.addItem(QListWidgetItem(step_title(st)))
        self.list.blockSignals(False)
        if self.chain:
            self.list.setCurrentRow(len(self.chain) - 1 if select is None else select)
        else:
            self._show_step(-1)

    def add_builtin(self, kind: str | None = None):
        kind = kind or self.kind.currentData()
        spec = builtins()[kind][1]
        self.chain.append({"type": kind, "params": {k: float(p.default) for k, p in spec.items()}, "enabled": True})
        self._refresh_list()

    def add_vst3(self, path: str):
        self.chain.append({"type": "vst3", "path": path, "params": {}, "enabled": True})
        self._refresh_list()

    def add_vst3_dialog(self):
        start = "/usr/lib/vst3" if os.path.isdir("/usr/lib/vst3") else os.path.expanduser("~")
        hook = getattr(self.parent(), "file_dialog_hook", None)
        if hook is not None:
            p = hook("dir", "Choose a .vst3 bundle", start, "") or ""
        else:
            p = QFileDialog.getExistingDirectory(self, "Choose a .vst3 bundle", start)
        if p:
            self.add_vst3(p)

    def move(self, d: int):
        i = self.list.currentRow()
        j = i + d
        if 0 <= i < len(self.chain) and 0 <= j < len(self.chain):
            self.chain[i], self.chain[j] = self.chain[j], self.chain[i]
            self._refresh_list(j)

    def remove(self):
        i = self.list.currentRow()
        if 0 <= i < len(self.chain):
            del self.chain[i]
            self._refresh_list(min(i, len(self.chain) - 1) if self.chain else None)

    # -- parameters -------------------------------------------------------------------------------
    def _clear_form(self):
        while self.form.rowCount():
            self.form.removeRow(0)

    def _show_step(self, i: int):
        self._clear_form()
        if not (0 <= i < len(self.chain)):
            self.form.addRow(QLabel("Add a step on the left."))
            return
        st = self.chain[i]
        en = QCheckBox("Enabled")
        en.setChecked(st.get("enabled", True) is not False)
        en.toggled.connect(lambda on, i=i: self._set(i, "enabled", on))
        self.form.addRow(en)
        if st["type"] == "vst3":
            path = QLineEdit(st.get("path", ""))
            path.editingFinished.connect(lambda i=i, w=path: self._set(i, "path", w.text()))
            self.form.addRow("Plugin", path)
            note = QLabel("Runs in a separate process: a crashing plugin cannot take the session down.")
            note.setWordWrap(True)
            self.form.addRow(note)
            for k, v in (st.get("params") or {}).items():
                sb = QDoubleSpinBox()
                sb.setRange(-1e9, 1e9)
                sb.setValue(float(v))
                sb.valueChanged.connect(lambda val, i=i, k=k: self._set_param(i, k, val))
                self.form.addRow(k, sb)
            return
        spec = builtins().get(st["type"], (None, {}))[1]
        for k, ps in spec.items():
            sb = QDoubleSpinBox()
            sb.setObjectName(f"param_{k}")
            sb.setDecimals(3 if ps.hi - ps.lo <= 10 else 1)
            sb.setRange(ps.lo, ps.hi)
            sb.setSingleStep((ps.hi - ps.lo) / 100)
            sb.setSuffix(f" {ps.unit}" if ps.unit else "")
            sb.setValue(float((st.get("params") or {}).get(k, ps.default)))
            sb.valueChanged.connect(lambda val, i=i, k=k: self._set_param(i, k, val))
            self.form.addRow(param_label(k), sb)

    def _set(self, i: int, key: str, value):
        self.chain[i][key] = value
        self.list.item(i).setText(step_title(self.chain[i]))

    def _set_param(self, i: int, key: str, value: float):
        self.chain[i].setdefault("params", {})[key] = float(value)
        self.list.item(i).setText(step_title(self.chain[i]))

    def check(self) -> str:
        """Validate the chain (and its filter frequencies against the stem's sample rate); the
        problem, if any, is shown under the parameters and returned ("" when the chain is fine)."""
        try:
            from plugin_bridge.plugins.chain import validate_chain

            steps = validate_chain(self.chain)
            if self.sample_rate:
                for i, st in enumerate(steps):
                    hz = st["params"].get("cutoff_frequency_hz") if st["type"] != "vst3" else None
                    if hz is not None and hz >= self.sample_rate / 2:
                        raise ValueError(f"step {i + 1} ({LABELS.get(st['type'], st['type'])}): cut-off {hz:g} Hz "
                                         f"must be below half the stem's sample rate ({self.sample_rate / 2:g} Hz)")
        except Exception as exc:  # noqa: BLE001  ChainError names the field; shown, never raised
            msg = str(exc)
            self.error.setText(msg)
            return msg
        self.error.setText("")
        return ""

    def _accept(self):
        if self.check():
            return
        self.accept()
