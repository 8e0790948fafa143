"""Application settings (machine-level: device, backend, model, audio output, recent files, and the
render defaults for new sessions) and the Settings dialog.

Session-level render settings (chunk, overlap, format and bit depth, naming) live in the session
(``History.set_settings``, undoable) so they travel with it; the dialog edits both, and what it sets
for the session also becomes the default of sessions opened later (``AppSettings.render``).

Stored as JSON in ``<user data dir>/gui_settings.json`` (``$PLUGIN_BRIDGE_DATA`` overrides the folder),
written atomically."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field

from PyQt6.QtWidgets import (
    QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
    QLabel, QLineEdit, QPushButton, QRadioButton, QVBoxLayout, QWidget,
)

from plugin_bridge.paths import data_dir
from plugin_bridge.session.model import DEFAULT_SETTINGS, atomic_write_text

log = logging.getLogger(__name__)

FORMATS = [("wav24", "WAV 24-bit"), ("wav16", "WAV 16-bit"), ("wav32f", "WAV 32-bit float"),
           ("flac24", "FLAC 24-bit"), ("flac16", "FLAC 16-bit")]
CONTAINERS = [("wav", "WAV"), ("flac", "FLAC")]
DEPTHS = [("16", "16-bit"), ("24", "24-bit"), ("32f", "32-bit float")]
RENDER_KEYS = ("chunk_seconds", "overlap", "format", "name_template")
MAX_RECENT = 10


def split_format(fmt: str) -> tuple[str, str]:
    """'flac24' -> ('flac', '24'); unknown -> the default ('wav', '24')."""
    for c, _ in CONTAINERS:
        if fmt.startswith(c) and fmt[len(c):] in {d for d, _ in DEPTHS} and fmt in dict(FORMATS):
            return c, fmt[len(c):]
    return "wav", "24"


@dataclass
class AppSettings:
    device: str = "auto"             # auto | cpu | cuda
    backend: str = "auto"            # auto | torch | onnx
    model: str = "embedded"          # embedded | checkpoint
    checkpoint: str = ""
    tokenizer: str = ""
    audio_device: str = ""           # "" = system default, else the device name
    recent: list[str] = field(default_factory=list)
    render: dict = field(default_factory=dict)   # defaults for new sessions: chunk, overlap, format, names

    @staticmethod
    def path() -> str:
        return os.path.join(data_dir(), "gui_settings.json")

    @classmethod
    def load(cls) -> "AppSettings":
        try:
            with open(cls.path(), encoding="utf-8") as f:
                d = json.load(f)
            known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
            s = cls(**known)
            if s.device not in ("auto", "cpu", "cuda"):
                s.device = "auto"
            if s.backend not in ("auto", "torch", "onnx"):
                s.backend = "auto"
            if s.model not in ("embedded", "checkpoint"):
                s.model = "embedded"
            for k in ("checkpoint", "tokenizer", "audio_device"):
                if not isinstance(getattr(s, k), str):
                    setattr(s, k, "")
            s.recent = [r for r in s.recent if isinstance(r, str)][:MAX_RECENT] if isinstance(s.recent, list) else []
            s.render = cls._clean_render(s.render)
            return s
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable settings file %s: %s", cls.path(), exc)
            return cls()

    @staticmethod
    def _clean_render(r) -> dict:
        """Keep only well-formed render defaults (a hand-edited file never breaks a render)."""
        if not isinstance(r, dict):
            return {}
        out = {}
        v = r.get("chunk_seconds")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 0.25 <= v <= 600:
            out["chunk_seconds"] = float(v)
        v = r.get("overlap")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 0.75:
            out["overlap"] = float(v)
        if r.get("format") in dict(FORMATS):
            out["format"] = r["format"]
        v = r.get("name_template")
        if isinstance(v, str) and v.strip():
            try:
                from plugin_bridge.session.presets import check_name_template

                out["name_template"] = check_name_template(v)
            except Exception:  # noqa: BLE001
                pass
        return out

    def save(self) -> bool:
        try:
            atomic_write_text(self.path(), json.dumps(asdict(self), indent=2) + "\n")
            return True
        except Exception as exc:  # noqa: BLE001  settings are a convenience; never fail an action
            log.warning("could not save settings to %s: %s", self.path(), exc)
            return False

    def add_recent(self, path: str) -> None:
        path = os.path.abspath(path)
        self.recent = [path] + [r for r in self.recent if r != path]
        self.recent = self.recent[:MAX_RECENT]
        self.save()

    def model_spec(self) -> tuple[str | None, str | None]:
        if self.model == "checkpoint" and self.checkpoint:
            return self.checkpoint, (self.tokenizer or None)
        return None, None


class SettingsDialog(QDialog):
    def __init__(self, app_settings: AppSettings, session_settings: dict, output_devices: list[tuple[int, str]],
                 parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self.app = app_settings
        lay = QVBoxLayout(self)

        g = QGroupBox("Processing (this computer)")
        f = QFormLayout(g)
        self.device = QComboBox()
        for v, t in (("auto", "Automatic (GPU if available)"), ("cpu", "CPU"), ("cuda", "CUDA GPU")):
            self.device.addItem(t, v)
        self.device.setCurrentIndex(max(0, self.device.findData(app_settings.device)))
        f.addRow("Device", self.device)
        self.backend = QComboBox()
        self.backend.addItem("Automatic (ONNX Runtime on CPU)", "auto")
        self.backend.addItem("PyTorch", "torch")
        self.backend.addItem("ONNX Runtime", "onnx")
        self.backend.setCurrentIndex(max(0, self.backend.findData(app_settings.backend)))
        f.addRow("Backend", self.backend)
        mrow = QWidget()
        ml = QVBoxLayout(mrow)
        ml.setContentsMargins(0, 0, 0, 0)
        self.embedded = QRadioButton("Embedded default model")
        self.custom = QRadioButton("AudioSep checkpoint:")
        (self.custom if app_settings.model == "checkpoint" else self.embedded).setChecked(True)
        ml.addWidget(self.embedded)
        ml.addWidget(self.custom)
        self.ckpt = self._path_row(ml, app_settings.checkpoint, "Checkpoint file", folder=False)
        ml.addWidget(QLabel("Tokenizer / text-encoder folder:"))
        self.tok = self._path_row(ml, app_settings.tokenizer, "Tokenizer folder", folder=True)
        f.addRow("Model", mrow)
        lay.addWidget(g)

        g2 = QGroupBox("Rendering (saved in this session; the default for new sessions)")
        f2 = QFormLayout(g2)
        st = dict(DEFAULT_SETTINGS)
        st.update(session_settings or {})
        self.chunk = QDoubleSpinBox()
        self.chunk.setRange(0.25, 600)
        self.chunk.setDecimals(2)
        self.chunk.setSuffix(" s")
        self.chunk.setValue(float(st["chunk_seconds"]))
        f2.addRow("Chunk length", self.chunk)
        self.overlap = QDoubleSpinBox()
        self.overlap.setRange(0, 75)
        self.overlap.setSuffix(" %")
        self.overlap.setValue(float(st["overlap"]) * 100)
        f2.addRow("Overlap", self.overlap)
        fmt_row = QWidget()
        fl = QHBoxLayout(fmt_row)
        fl.setContentsMargins(0, 0, 0, 0)
        self.format = QComboBox()
        for v, t in CONTAINERS:
            self.format.addItem(t, v)
        self.depth = QComboBox()
        for v, t in DEPTHS:
            self.depth.addItem(t, v)
        cont, depth = split_format(str(st["format"]))
        self.format.setCurrentIndex(max(0, self.format.findData(cont)))
        self.depth.setCurrentIndex(max(0, self.depth.findData(depth)))
        self.format.currentIndexChanged.connect(self._format_changed)
        self._format_changed()
        fl.addWidget(self.format, 1)
        fl.addWidget(self.depth, 1)
        f2.addRow("Output format", fmt_row)
        self.template = QLineEdit(st["name_template"])
        self.template.setToolTip("Tokens: {session} {track} {region} {label} {query} {index} {token} {preset}")
        f2.addRow("File names", self.template)
        lay.addWidget(g2)

        g3 = QGroupBox("Preview")
        f3 = QFormLayout(g3)
        self.audio = QComboBox()
        self.audio.addItem("System default", "")
        for _i, name in output_devices:
            self.audio.addItem(name, name)
        self.audio.setCurrentIndex(max(0, self.audio.findData(app_settings.audio_device)))
        f3.addRow("Audio output", self.audio)
        lay.addWidget(g3)

        self.error = QLabel("")
        self.error.setStyleSheet("color: #ff8080")
        self.error.setWordWrap(True)
        lay.addWidget(self.error)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        bb.accepted.connect(self._accept)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)

    def _format_changed(self, *_):
        """FLAC has no float samples: its 32-bit float choice is disabled (24-bit takes its place)."""
        item = self.depth.model().item(self.depth.findData("32f"))
        flac = self.format.currentData() == "flac"
        item.setEnabled(not flac)
        if flac and self.depth.currentData() == "32f":
            self.depth.setCurrentIndex(self.depth.findData("24"))

    def output_format(self) -> str:
        return f"{self.format.currentData()}{self.depth.currentData()}"

    def _path_row(self, layout, value: str, title: str, folder: bool) -> QLineEdit:
        row = QHBoxLayout()
        e = QLineEdit(value)
        b = QPushButton("Browse...")

        def browse():
            start = e.text() or os.path.expanduser("~")
            filt = "Checkpoints (*.ckpt *.pt *.pth *.safetensors);;All files (*)"
            hook = getattr(self.parent(), "file_dialog_hook", None)
            if hook is not None:
                p = hook("dir" if folder else "open", title, start, "" if folder else filt) or ""
            elif folder:
                p = QFileDialog.getExistingDirectory(self, title, start)
            else:
                p, _ = QFileDialog.getOpenFileName(self, title, start, filt)
            if p:
                e.setText(p)
                self.custom.setChecked(True)
        b.clicked.connect(browse)
        e.textEdited.connect(lambda _t: self.custom.setChecked(True))
        row.addWidget(e, 1)
        row.addWidget(b)
        layout.addLayout(row)
        return e

    def _accept(self):
        if self.custom.isChecked():
            if not self.ckpt.text().strip():
                self.error.setText("Choose a checkpoint file, or use the embedded model.")
                return
            if not os.path.isfile(self.ckpt.text().strip()):
                self.error.setText(f"Checkpoint {self.ckpt.text().strip()} does not exist.")
                return
            if self.tok.text().strip() and not os.path.isdir(self.tok.text().strip()):
                self.error.setText(f"Tokenizer folder {self.tok.text().strip()} does not exist.")
                return
        try:
            from plugin_bridge.session.presets import check_name_template

            check_name_template(self.template.text())
        except Exception as exc:
            self.error.setText(str(exc))
            return
        self.accept()

    def result_values(self) -> tuple[AppSettings, dict]:
        a = AppSettings(**asdict(self.app))
        a.device = self.device.currentData()
        a.backend = self.backend.currentData()
        a.model = "checkpoint" if self.custom.isChecked() else "embedded"
        a.checkpoint = self.ckpt.text().strip()
        a.tokenizer = self.tok.text().strip()
        a.audio_device = self.audio.currentData()
        a.recent = list(self.app.recent)
        sess = {"chunk_seconds": round(self.chunk.value(), 3), "overlap": round(self.overlap.value() / 100, 4),
                "format": self.output_format(), "name_template": self.template.text().strip()}
        return a, sess
