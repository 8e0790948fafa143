"""The main window: session lanes, transport, region/query panel, jobs, stems; all edits through the
session ``History`` (undo/redo), renders through ``JobQueue`` in a worker thread.

Threading rule: the session is edited only on the UI thread.  The job worker reaches it through
``_UiHistory``, which hands ``add_render`` to the UI thread and waits; job progress and state come
back as queued Qt signals.  Nothing here imports torch: the engine is imported by the worker when the
first job starts (``separator_factory``)."""
from __future__ import annotations

import copy
import importlib
import logging
import os
import threading

from PyQt6.QtCore import QSize, Qt, QTimer, QUrl, pyqtSignal
from PyQt6.QtGui import QAction, QColor, QDesktopServices, QDrag, QKeySequence, QPalette, QShortcut
from PyQt6.QtWidgets import (
    QApplication, QButtonGroup, QFileDialog, QInputDialog, QLabel, QMainWindow, QMenu,
    QMessageBox, QSplitter, QStatusBar, QTabWidget, QToolBar, QToolButton, QVBoxLayout, QWidget, QListWidget,
    QListWidgetItem,
)

from plugin_bridge.errors import OutputError, PluginBridgeError
from plugin_bridge.gui.panels import JobPanel, QueryPanel, StemList
from plugin_bridge.gui.playback import LaneSpec, MONITOR_MODES, PlaybackEngine, PlaybackError, list_output_devices
from plugin_bridge.gui.settings import AppSettings, SettingsDialog
from plugin_bridge.gui.timeline import TimeAxis, TimelineWidget, fmt_time, mime_for_files
from plugin_bridge.gui.waveform import OverviewCache
from plugin_bridge.session.history import Autosaver, History, find_recoverable, recover
from plugin_bridge.session.model import SESSION_SUFFIX, QuerySpec, Region, Session

log = logging.getLogger(__name__)

OPEN_FILTER = ("Everything plugin-bridge opens (*.pbsession.json *.json *.dawproject *.rpp *.RPP *.wav *.flac *.aif "
               "*.aiff *.mp3 *.ogg *.bwf);;Sessions (*.pbsession.json);;DAWproject (*.dawproject);;"
               "Reaper projects (*.rpp *.RPP);;Audio files (*.wav *.flac *.aif *.aiff *.mp3 *.ogg *.bwf);;"
               "All files (*)")


def _pretty(exc: BaseException) -> str:
    if isinstance(exc, PluginBridgeError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".strip(": ")
    return f"Unexpected problem ({type(exc).__name__}: {exc}). Your session is unchanged."


class _UiHistory:
    """What ``run_job`` sees as its history: ``add_render`` runs on the UI thread (as one undo step
    together with muting the source, so playback of the mix does not double up)."""

    def __init__(self, win: "MainWindow"):
        self.win = win

    def add_render(self, tracks, stems, label="Render stems", job_id=None):
        done = threading.Event()
        box: list = []
        self.win._renderReady.emit((tracks, stems, label, job_id, done, box))
        if not done.wait(60):
            raise OutputError("the window did not take the rendered stems (is it frozen?)")
        if box:
            raise box[0]

    def save(self):
        pass


class MainWindow(QMainWindow):
    _renderReady = pyqtSignal(object)
    _jobProgress = pyqtSignal(object)
    _jobUpdate = pyqtSignal(object)
    _sessionChanged = pyqtSignal(object)
    _overviewReady = pyqtSignal(str)
    _workDone = pyqtSignal(object)

    def __init__(self, separator_factory=None, app_settings: AppSettings | None = None, audio: bool = True,
                 ask_hook=None, file_dialog_hook=None):
        """``ask_hook(title, text, buttons) -> button`` answers questions (unsaved changes, crash
        recovery) instead of a modal box; ``file_dialog_hook(mode, title, start, filter) -> path``
        (mode "open" | "save" | "dir"; "" = cancelled) replaces the file dialogs.  Both exist so that
        scripts and tests drive the window without blocking modals."""
        super().__init__()
        self.setWindowTitle("plugin-bridge")
        self.resize(1400, 860)
        self.setAcceptDrops(True)
        self.app_settings = app_settings or AppSettings.load()
        self.separator_factory = separator_factory
        self._separators: dict = {}
        self.session: Session | None = None
        self.history: History | None = None
        self.autosaver: Autosaver | None = None
        self.jobs = None
        self.current_region_id: str | None = None
        self.axis = TimeAxis()
        self.overviews = OverviewCache()
        self.player: PlaybackEngine | None = None
        self.audio_enabled = audio
        self.last_error: str | None = None
        self.last_drag_mime = None
        self.last_drag_result = None
        self.ask_hook = ask_hook
        self.file_dialog_hook = file_dialog_hook
        self.active_dialog = None   # the settings / chain dialog currently open (non-blocking)
        self._chain_busy = 0        # plugin-chain renders in flight
        self._job_eta: dict[str, tuple] = {}
        self._lane_sig = None
        self._mix_sig = None
        self._unsub = None
        self._build_ui()
        self._renderReady.connect(self._apply_render)
        self._jobProgress.connect(self._on_job_progress)
        self._jobUpdate.connect(self._on_job_update)
        self._sessionChanged.connect(self._on_session_changed)
        self._overviewReady.connect(self._on_overview)
        self._workDone.connect(lambda fn: fn())
        self._timer = QTimer(self)
        self._timer.setInterval(33)
        self._timer.timeout.connect(self._tick)
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setInterval(5000)
        self._autosave_timer.timeout.connect(lambda: self.autosaver and self.autosaver.tick())
        self._autosave_timer.start()
        # while overviews are computed in the background, the lanes show "reading audio... N %"
        self._overview_timer = QTimer(self)
        self._overview_timer.setInterval(200)
        self._overview_timer.timeout.connect(self._overview_progress_tick)
        self.refresh()

    # ------------------------------------------------------------------------------------------------
    # UI construction
    # ------------------------------------------------------------------------------------------------
    def _build_ui(self):
        self._build_actions()
        tb = QToolBar("Transport")
        tb.setObjectName("transport")
        tb.setMovable(False)
        tb.setIconSize(QSize(18, 18))
        self.addToolBar(tb)
        self.play_btn = QToolButton(text="▶  Play")
        self.play_btn.setObjectName("playButton")
        self.play_btn.setToolTip("Play / stop (Space)")
        self.play_btn.clicked.connect(self.toggle_play)
        tb.addWidget(self.play_btn)
        self.time_label = QLabel("00:00.000")
        self.time_label.setObjectName("timeLabel")
        self.time_label.setMinimumWidth(130)
        self.time_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        tb.addWidget(self.time_label)
        self.loop_btn = QToolButton(text="⟲ Loop region")
        self.loop_btn.setCheckable(True)
        self.loop_btn.setToolTip("Loop the selected region (L)")
        self.loop_btn.toggled.connect(self.set_loop)
        tb.addWidget(self.loop_btn)
        tb.addSeparator()
        tb.addWidget(QLabel("  Listen: "))
        self.monitor_group = QButtonGroup(self)
        self.monitor_buttons = {}
        for mode, text, tip in (("mix", "Mix", "What the session plays (mute/solo)"),
                                ("original", "A: Original", "Only the source tracks"),
                                ("stems", "B: Stems", "Only the extracted stems"),
                                ("residual", "Residual", "Only what no query took")):
            b = QToolButton(text=text)
            b.setCheckable(True)
            b.setToolTip(tip)
            b.setObjectName(f"monitor_{mode}")
            self.monitor_group.addButton(b)
            self.monitor_buttons[mode] = b
            b.clicked.connect(lambda _c, m=mode: self.set_monitor(m))
            tb.addWidget(b)
        self.monitor_buttons["mix"].setChecked(True)
        tb.addSeparator()
        for text, fn, tip in (("−", lambda: self.axis.zoom(1 / 1.5), "Zoom out (-)"),
                              ("+", lambda: self.axis.zoom(1.5), "Zoom in (+)"),
                              ("Fit", self.axis.fit, "Show the whole session (F)")):
            b = QToolButton(text=text)
            b.setToolTip(tip)
            b.clicked.connect(fn)
            tb.addWidget(b)

        self.timeline = TimelineWidget(self)
        right = QWidget()
        right.setMinimumWidth(360)
        rl = QVBoxLayout(right)
        rl.setContentsMargins(6, 6, 6, 6)
        self.tabs = QTabWidget()
        self.region_list = QListWidget()
        self.region_list.currentItemChanged.connect(self._region_item_changed)
        self.region_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.region_list.customContextMenuRequested.connect(self._region_menu)
        self.stem_list = StemList(self)
        self.tabs.addTab(self.region_list, "Regions")
        self.tabs.addTab(self.stem_list, "Stems")
        self.tabs.setMaximumHeight(170)
        rl.addWidget(self.tabs)
        self.query_panel = QueryPanel(self)
        rl.addWidget(self.query_panel, 3)
        self.job_panel = JobPanel(self)
        rl.addWidget(self.job_panel, 2)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.timeline)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setSizes([1020, 380])
        self.setCentralWidget(split)
        self.setStatusBar(QStatusBar())
        self.status_info = QLabel("")
        self.statusBar().addPermanentWidget(self.status_info)
        self._refresh_presets()
        self._refresh_learned()

        def sc(keys, fn):
            for k in keys if isinstance(keys, (list, tuple)) else [keys]:
                s = QShortcut(QKeySequence(k), self)
                s.activated.connect(fn)
        sc("Space", self.toggle_play)
        sc(["+", "=", "Ctrl+="], lambda: self.axis.zoom(1.5))
        sc(["-", "Ctrl+-"], lambda: self.axis.zoom(1 / 1.5))
        sc("F", self.axis.fit)
        sc("Left", lambda: self.axis.scroll_px(-80))
        sc("Right", lambda: self.axis.scroll_px(80))
        sc("Home", lambda: self.seek(0))
        sc("End", lambda: self.seek(self.axis.length))
        sc("L", lambda: self.loop_btn.toggle())
        sc("Z", self.zoom_to_region)
        sc("Delete", self.delete_current_region)

    def _build_actions(self):
        mb = self.menuBar()
        m = mb.addMenu("&File")

        def act(menu, text, fn, key=None, name=None):
            a = QAction(text, self)
            if key is not None:
                a.setShortcut(key)
            a.triggered.connect(lambda _c=False: fn())
            menu.addAction(a)
            if name:
                setattr(self, name, a)
            return a
        act(m, "&Open...", self.open_dialog, QKeySequence.StandardKey.Open)
        act(m, "Open &Folder...", self.open_folder_dialog, QKeySequence("Ctrl+Shift+O"))
        self.recent_menu = m.addMenu("Open &Recent")
        m.addSeparator()
        act(m, "&Save", self.save, QKeySequence.StandardKey.Save, "act_save")
        act(m, "Save &As...", self.save_as, QKeySequence("Ctrl+Shift+S"))
        m.addSeparator()
        act(m, "Export &DAWproject...", lambda: self.export("dawproject"), name="act_export_dawproject")
        act(m, "Export Reaper &RPP...", lambda: self.export("rpp"), name="act_export_rpp")
        m.addSeparator()
        act(m, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        e = mb.addMenu("&Edit")
        act(e, "&Undo", self.undo, QKeySequence("Ctrl+Z"), "act_undo")
        act(e, "&Redo", self.redo, QKeySequence("Ctrl+Shift+Z"), "act_redo")
        e.addSeparator()
        act(e, "Delete Region", self.delete_current_region)
        e.addSeparator()
        act(e, "Use Selection as &Query", self.use_selection_as_query, QKeySequence("Ctrl+E"), "act_use_selection")
        act(e, "&Teach a Sound...", self.teach_dialog, None, "act_teach")
        e.addSeparator()
        act(e, "&Settings...", self.settings_dialog, QKeySequence("Ctrl+,"))
        v = mb.addMenu("&View")
        act(v, "Zoom In", lambda: self.axis.zoom(1.5))
        act(v, "Zoom Out", lambda: self.axis.zoom(1 / 1.5))
        act(v, "Zoom to Session", self.axis.fit)
        act(v, "Zoom to Region", self.zoom_to_region)
        t = mb.addMenu("&Transport")
        act(t, "Play / Stop", self.toggle_play)
        act(t, "Go to Start", lambda: self.seek(0))
        for mode in MONITOR_MODES:
            act(t, f"Listen: {mode.title()}", lambda m_=mode: self.set_monitor(m_))
        self._update_recent_menu()

    # ------------------------------------------------------------------------------------------------
    # messages
    # ------------------------------------------------------------------------------------------------
    def show_error(self, message: str, title: str = "plugin-bridge") -> None:
        """A readable message (never a traceback); non-modal so nothing blocks."""
        self.last_error = message
        self.statusBar().showMessage(message, 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def ask(self, title: str, text: str, buttons, default=None):
        """A question to the user.  With no hook on a screenless platform (offscreen tests, scripts)
        nothing can answer a modal box, so it returns NoButton ("no answer"): callers then keep
        everything as it is (nothing is deleted or discarded)."""
        if self.ask_hook is not None:
            return self.ask_hook(title, text, buttons)
        if QApplication.platformName() in ("offscreen", "minimal"):
            log.warning("no one to answer %r on the %s platform; keeping everything as it is", title,
                        QApplication.platformName())
            return QMessageBox.StandardButton.NoButton
        return QMessageBox.question(self, title, text, buttons, default or QMessageBox.StandardButton.NoButton)

    def ask_path(self, mode: str, title: str, start: str, filt: str = "") -> str:
        """A file or folder from the user ("" when cancelled); ``file_dialog_hook`` answers in tests."""
        if self.file_dialog_hook is not None:
            return self.file_dialog_hook(mode, title, start, filt) or ""
        if mode == "dir":
            return QFileDialog.getExistingDirectory(self, title, start)
        fn = QFileDialog.getOpenFileName if mode == "open" else QFileDialog.getSaveFileName
        p, _ = fn(self, title, start, filt)
        return p

    def _show_dialog(self, dlg, on_accept):
        """Open ``dlg`` window-modal without blocking the event loop; ``on_accept()`` runs on OK."""
        if self.active_dialog is not None:
            try:
                self.active_dialog.close()
            except RuntimeError:
                pass
        self.active_dialog = dlg
        dlg.accepted.connect(on_accept)
        dlg.finished.connect(lambda _r: setattr(self, "active_dialog", None) if self.active_dialog is dlg else None)
        dlg.open()
        return dlg

    # ------------------------------------------------------------------------------------------------
    # session lifecycle
    # ------------------------------------------------------------------------------------------------
    def open_dialog(self):
        p = self.ask_path("open", "Open", self._start_dir(), OPEN_FILTER)
        if p:
            self.open_path(p)

    def open_folder_dialog(self):
        p = self.ask_path("dir", "Open a folder of audio files", self._start_dir())
        if p:
            self.open_path(p)

    def _start_dir(self) -> str:
        if self.session and self.session.folder:
            return self.session.folder
        if self.app_settings.recent:
            return os.path.dirname(self.app_settings.recent[0])
        return os.path.expanduser("~")

    def open_path(self, path: str) -> bool:
        """Open a folder / audio file / session / .dawproject / .rpp.  Errors become a message."""
        if not self.maybe_save():
            return False
        from plugin_bridge.session.open import open_session

        warnings: list[str] = []
        try:
            s = open_session(path, warnings)
        except Exception as exc:  # noqa: BLE001 - every failure is shown, none crashes the app
            self.show_error(f"Cannot open {os.path.basename(path.rstrip(os.sep)) or path}:\n{_pretty(exc)}")
            return False
        if not s.path:  # made from audio (or an imported project): the user's render defaults apply
            s.path = self._default_session_path(path, s)
            for k, v in self.app_settings.render.items():
                s.settings.setdefault(k, v)
        history = None
        for rec in find_recoverable():
            if rec.session_path and os.path.abspath(rec.session_path) == os.path.abspath(s.path):
                ans = self.ask("Recover unsaved changes?",
                               f"plugin-bridge closed before '{rec.name}' was saved.\nAutosaved {rec.saved_at}.\n\n"
                               "Recover the autosaved version?",
                               QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
                if ans == QMessageBox.StandardButton.Yes:
                    try:
                        s, history = recover(rec)
                    except Exception as exc:  # noqa: BLE001
                        self.show_error(f"The autosave could not be read: {_pretty(exc)}")
                elif ans == QMessageBox.StandardButton.No:
                    try:
                        os.unlink(rec.autosave_path)
                    except OSError:
                        pass
                break
        self.set_session(s, history)
        self.app_settings.add_recent(path if not os.path.isdir(path) else path)
        self._update_recent_menu()
        if warnings:
            self.statusBar().showMessage("; ".join(warnings), 15000)
        return True

    def _default_session_path(self, opened: str, s: Session) -> str:
        folder = opened if os.path.isdir(opened) else os.path.dirname(os.path.abspath(opened))
        base = os.path.join(folder, s.name)
        p, k = base + SESSION_SUFFIX, 2
        while os.path.exists(p):
            p = f"{base}-{k}{SESSION_SUFFIX}"
            k += 1
        return p

    def set_session(self, s: Session, history: History | None = None):
        self.stop()
        self._shutdown_session()
        self.session = s
        self.history = history or History(s)
        self._unsub = self.history.subscribe(lambda ch: self._sessionChanged.emit(ch))
        self.autosaver = Autosaver(self.history, every_edits=10, every_seconds=30)
        from plugin_bridge.session.jobs import JobQueue

        self.jobs = JobQueue(s, separator_factory=self._get_separator, history=_UiHistory(self), persist=False,
                             on_progress=lambda p: self._jobProgress.emit(p),
                             on_update=lambda j: self._jobUpdate.emit(copy.copy(j)),
                             overrides={"backend": self.app_settings.backend, "device": self.app_settings.device})
        for j in s.jobs:  # jobs interrupted by a crash are pending again; let the user start them
            if j.status == "pending":
                j.status, j.error = "cancelled", "interrupted (the program closed); press Retry to run it again"
        self.jobs.start()
        self._remove_stale_partials(s)
        self.job_panel.clear()
        for j in s.jobs:
            self.job_panel.update_job(j, self._job_title(j))
        self.axis.rate = s.sample_rate
        self.axis.playhead = 0
        self.axis.loop = None
        self.loop_btn.setChecked(False)
        self.current_region_id = None
        self._lane_sig = None
        self._mix_sig = None
        self._make_player()
        self.refresh()
        self.axis.set_length(self._session_length())
        self.axis.fit()
        if s.regions:
            self.select_region(s.regions[0].id)

    def _remove_stale_partials(self, s: Session) -> list[str]:
        """Partial files an interrupted render (killed, power loss) left in the stems folder go, with a note."""
        from plugin_bridge.fileio import remove_stale_partials

        try:
            removed = remove_stale_partials(s.stems_dir) if s.path else []
        except PluginBridgeError:
            removed = []
        if removed:
            self.statusBar().showMessage(f"Removed {len(removed)} partial file(s) left by an interrupted render: "
                                         + ", ".join(os.path.basename(p) for p in removed), 15000)
        return removed

    def _shutdown_session(self):
        if self.jobs is not None:
            self.jobs.stop(cancel=True, timeout=5)
            self.jobs = None
        if self._unsub:
            self._unsub()
            self._unsub = None
        if self.autosaver is not None:
            # reached only after maybe_save: saved (no autosave left) or the user chose Discard.  A crash
            # never gets here, so its autosave survives for the recovery prompt.
            self.autosaver.close(keep=False)
            self.autosaver = None

    def _session_length(self) -> int:
        s = self.session
        if s is None:
            return self.axis.rate * 10
        ends = [s.track_end(t) or 0 for t in s.tracks]
        return max(ends or [0]) or s.sample_rate * 10

    def maybe_save(self) -> bool:
        """Ask to save a dirty session; False if the user cancels."""
        if not self.history or not self.history.dirty:
            return True
        ans = self.ask("Unsaved changes", f"Save changes to '{self.session.name}'?",
                       QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                       | QMessageBox.StandardButton.Cancel)
        if ans == QMessageBox.StandardButton.Save:
            return self.save()
        return ans == QMessageBox.StandardButton.Discard

    def save(self) -> bool:
        if not self.history:
            return False
        try:
            p = self.history.save()
        except Exception as exc:  # noqa: BLE001
            self.show_error(f"Could not save: {_pretty(exc)}")
            return False
        self.app_settings.add_recent(p)
        self._update_recent_menu()
        self.statusBar().showMessage(f"Saved {p}", 5000)
        self.refresh_title()
        return True

    def save_as(self, path: str | None = None) -> bool:
        if not self.history:
            return False
        if path is None:
            path = self.ask_path("save", "Save session as", self.session.path or self._start_dir(),
                                 f"Sessions (*{SESSION_SUFFIX})")
            if not path:
                return False
        if not path.endswith(SESSION_SUFFIX):
            path = os.path.splitext(path)[0] + SESSION_SUFFIX
        try:
            self.history.save(path)
        except Exception as exc:  # noqa: BLE001
            self.show_error(f"Could not save: {_pretty(exc)}")
            return False
        self.app_settings.add_recent(path)
        self._update_recent_menu()
        self.refresh_title()
        return True

    def export(self, kind: str, path: str | None = None) -> str | None:
        """File > Export DAWproject / Reaper RPP: the session (sources and stems at their timeline
        positions) for another DAW.  Returns the written path, None when cancelled or failed."""
        if self.session is None:
            self.show_error("Open a session first, then export it.")
            return None
        mod = {"dawproject": "plugin_bridge.session.dawproject", "rpp": "plugin_bridge.session.rpp"}[kind]
        ext = {"dawproject": ".dawproject", "rpp": ".RPP"}[kind]
        what = {"dawproject": "DAWproject", "rpp": "Reaper project"}[kind]
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError:
            self.show_error(f"{what} export is not available in this installation.")
            return None
        if path is None:
            s = self.session
            if s.path:
                base = os.path.basename(s.path)
                base = base[:-len(SESSION_SUFFIX)] if base.endswith(SESSION_SUFFIX) else os.path.splitext(base)[0]
                base = os.path.join(os.path.dirname(s.path), base)
            else:
                base = os.path.join(self._start_dir(), s.name)
            filt = f"{what} (*.dawproject)" if kind == "dawproject" else f"{what} (*.rpp *.RPP)"
            path = self.ask_path("save", f"Export {what}", base + ext, filt)
            if not path:
                return None
        if not path.lower().endswith(ext.lower()):
            path += ext
        try:
            out = m.save(self.session, path)
        except Exception as exc:  # noqa: BLE001
            self.show_error(f"Export failed: {_pretty(exc)}")
            return None
        out = out or os.path.abspath(path)
        self.statusBar().showMessage(f"Exported {out}", 8000)
        return out

    def _update_recent_menu(self):
        self.recent_menu.clear()
        for p in self.app_settings.recent:
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda _c=False, p=p: self.open_path(p))
        self.recent_menu.setEnabled(bool(self.app_settings.recent))

    def check_recovery_at_start(self) -> bool:
        """Offer the newest autosave left by a crash.  Returns True when one was recovered."""
        recs = find_recoverable()
        if not recs:
            return False
        rec = recs[0]
        ans = self.ask("Recover session?",
                       f"plugin-bridge closed before '{rec.name or 'a session'}' was saved "
                       f"(autosaved {rec.saved_at}).\n\nRecover it?",
                       QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        if ans == QMessageBox.StandardButton.No:   # declined: the saved state stays; the autosave goes
            try:
                os.unlink(rec.autosave_path)
            except OSError:
                pass
            return False
        if ans != QMessageBox.StandardButton.Yes:  # no answer: keep the autosave for the next start
            return False
        try:
            s, h = recover(rec)
        except Exception as exc:  # noqa: BLE001
            self.show_error(f"The autosave could not be read: {_pretty(exc)}")
            return False
        if not s.path:
            s.path = os.path.join(os.path.expanduser("~"), s.name + SESSION_SUFFIX)
        self.set_session(s, h)
        return True

    # drag and drop of files onto the window
    def dragEnterEvent(self, ev):
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()

    def dropEvent(self, ev):
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        ev.acceptProposedAction()
        if len(paths) == 1:
            self.open_path(paths[0])
        elif self.session is not None and self.history is not None:
            self.add_files(paths)
        else:
            self.open_path(os.path.dirname(paths[0]))

    def add_files(self, paths: list[str]):
        """Add audio files as new source tracks (one undo step)."""
        from plugin_bridge.session.open import session_from_files

        warnings: list[str] = []
        try:
            tmp = session_from_files(paths, warnings=warnings, skip_unreadable=True)
        except Exception as exc:  # noqa: BLE001
            self.show_error(_pretty(exc))
            return
        with self.history.transaction(f"Add {len(tmp.tracks)} tracks"):
            for t in tmp.tracks:
                self.history.add_track(t)
        if warnings:  # the files that were skipped, and why
            self.show_error("\n".join(warnings), "Some files were not added")

    def closeEvent(self, ev):
        if not self.maybe_save():
            ev.ignore()
            return
        self.stop()
        for t in (self._timer, self._autosave_timer, self._overview_timer):
            t.stop()  # a closed window must not keep calling back into Python
        if self.player:
            self.player.close()
        self._shutdown_session()
        self.overviews.close()
        ev.accept()

    # ------------------------------------------------------------------------------------------------
    # refresh
    # ------------------------------------------------------------------------------------------------
    def _on_session_changed(self, change):
        if change is not None and getattr(change, "kind", "") == "render" and change.action in ("undo", "redo"):
            self.statusBar().showMessage(f"{change.action.title()}: {change.label}", 4000)
        if (change is not None and change.action in ("undo", "redo") and self.session is not None
                and self._current_region() is None):
            # undoing a region's deletion (or redoing its creation) selects it again, as a DAW does
            ids = {r.id for r in self.session.regions}
            back = [i for i in change.ids if i in ids]
            if back:
                self.current_region_id = back[0]
        self.refresh()

    def refresh_title(self):
        s = self.session
        if s is None:
            self.setWindowTitle("plugin-bridge")
            return
        dirty = "● " if self.history and self.history.dirty else ""
        where = s.path if s.path and os.path.exists(s.path) else (s.path or "") + " (not saved yet)"
        self.setWindowTitle(f"{dirty}{s.name} — plugin-bridge   [{where}]")

    def refresh(self):
        s = self.session
        self.refresh_title()
        h = self.history
        self.act_undo.setEnabled(bool(h and h.can_undo))
        self.act_redo.setEnabled(bool(h and h.can_redo))
        self.act_undo.setText(f"&Undo {h.undo_label}" if h and h.can_undo else "&Undo")
        self.act_redo.setText(f"&Redo {h.redo_label}" if h and h.can_redo else "&Redo")
        tracks = list(s.tracks) if s else []
        sig = tuple((t.id, t.name, t.kind, t.colour, t.path, t.offset, t.sample_rate, t.channels) for t in tracks)
        mix_sig = tuple((t.id, t.path, t.offset, t.gain_db, t.mute, t.solo, t.kind) for t in tracks)
        if sig != self._lane_sig:
            self._lane_sig = sig
            self.timeline.rebuild(tracks)
            for t in tracks:
                self.overviews.request(t.path, lambda p, ov, err: self._overviewReady.emit(p))
            if tracks and not self._overview_timer.isActive():
                self._overview_timer.start()
            self.stem_list.fill(s)
            if s:
                self.axis.set_length(self._session_length())
        if mix_sig != self._mix_sig:
            self._mix_sig = mix_sig
            self._update_player_lanes()
            for t in tracks:
                row = self.timeline.rows.get(t.id)
                if row is not None:
                    row.track = row.header.track = row.view.track = t
                    row.header.mute.setChecked(t.mute)
                    row.header.solo.setChecked(t.solo)
        for row in self.timeline.rows.values():
            row.view.update()
        if s and self.current_region_id and not any(r.id == self.current_region_id for r in s.regions):
            self.current_region_id = None
        self._fill_region_list()
        region = self._current_region()
        if region is None or self.query_panel.region_id != region.id or self._panel_stale(region):
            self.query_panel.set_region(region, s.sample_rate if s else 48000)
        self.status_info.setText(self._status_text())

    def _panel_stale(self, region) -> bool:
        return [(q.text, q.negative, q.colour) for q in self.query_panel.specs()] != \
               [(q.text, q.negative, q.colour) for q in region.queries] or \
               self.query_panel.name.text() != region.name

    def _status_text(self) -> str:
        s = self.session
        if s is None:
            return "no session"
        n_src = sum(1 for t in s.tracks if t.kind == "source")
        n_stem = len(s.tracks) - n_src
        return f"{s.sample_rate / 1000:g} kHz · {n_src} tracks · {n_stem} stems · {fmt_time(self._session_length() / s.sample_rate, False)}"

    def _fill_region_list(self):
        s = self.session
        self.region_list.blockSignals(True)
        self.region_list.clear()
        if s:
            for i, r in enumerate(s.regions):
                try:
                    tname = s.track(r.track_id).name
                except PluginBridgeError:
                    tname = "?"
                q = ", ".join(x.display for x in r.queries) or "no queries"
                it = QListWidgetItem(f"{r.name or f'R{i + 1}'}  ·  {tname}  ·  {fmt_time(r.start / s.sample_rate)}–"
                                     f"{fmt_time(r.end / s.sample_rate)}\n    {q}")
                it.setData(Qt.ItemDataRole.UserRole, r.id)
                self.region_list.addItem(it)
                if r.id == self.current_region_id:
                    self.region_list.setCurrentItem(it)
        self.region_list.blockSignals(False)

    def _on_overview(self, path: str):
        for row in self.timeline.rows.values():
            if os.path.abspath(row.track.path) == path:
                row.view.update()

    def _overview_progress_tick(self):
        pending = [row for row in self.timeline.rows.values() if self.overviews.progress(row.track.path) is not None]
        for row in pending:
            row.view.update()
        if not pending:
            self._overview_timer.stop()

    def overview(self, path: str):
        return self.overviews.get(path)

    # ------------------------------------------------------------------------------------------------
    # lanes: mute / solo / stems
    # ------------------------------------------------------------------------------------------------
    def audible(self, track_id: str) -> bool:
        if self.player is not None:
            return self.player.gains().get(track_id, 0.0) > 0
        s = self.session
        if s is None:
            return True
        from plugin_bridge.gui.playback import compute_gains

        return compute_gains(self._lane_specs(), self._monitor()).get(track_id, 0.0) > 0

    def _monitor(self) -> str:
        for m, b in self.monitor_buttons.items():
            if b.isChecked():
                return m
        return "mix"

    def set_mute(self, track_id: str, on: bool):
        self._edit(lambda: self.history.set_mute(track_id, bool(on)))

    def set_solo(self, track_id: str, on: bool):
        self._edit(lambda: self.history.set_solo(track_id, bool(on)))

    def _edit(self, fn) -> bool:
        if self.history is None:
            return False
        try:
            fn()
            return True
        except Exception as exc:  # noqa: BLE001
            self.show_error(_pretty(exc))
            self.refresh()
            return False

    def _stem_record(self, track_id: str):
        s = self.session
        if s is None:
            return None
        for st in s.stems:
            if st.track_id == track_id:
                return st
        return None

    def stem_complete(self, track_id: str) -> bool:
        try:
            t = self.session.track(track_id)
        except Exception:  # noqa: BLE001
            return False
        st = self._stem_record(track_id)
        return (st is None or st.complete) and os.path.isfile(t.path)

    def stem_file(self, track_id: str) -> str | None:
        try:
            t = self.session.track(track_id)
        except Exception:  # noqa: BLE001
            return None
        return t.path if self.stem_complete(track_id) else None

    def drag_tracks(self, track_ids: list[str], source_widget) -> object:
        """Start a QDrag with the files of complete stems as URLs.  Returns the drop action."""
        paths = [p for p in (self.stem_file(i) for i in track_ids) if p]
        if not paths:
            self.statusBar().showMessage("This stem is not rendered yet.", 4000)
            return None
        md = mime_for_files(paths)
        self.last_drag_mime = md
        drag = QDrag(source_widget)
        drag.setMimeData(md)
        self.last_drag_result = drag.exec(Qt.DropAction.CopyAction)
        return self.last_drag_result

    def lane_context_menu(self, track_id: str, global_pos):
        if self.session is None:
            return
        try:
            t = self.session.track(track_id)
        except Exception:  # noqa: BLE001
            return
        m = QMenu(self)
        if t.kind != "source":
            ok = self.stem_complete(track_id)
            a = m.addAction("Reveal in folder", lambda: self.reveal(t.path))
            a.setEnabled(ok)
            a = m.addAction("Copy path", lambda: self.copy_paths([t.path]))
            a.setEnabled(ok)
            m.addSeparator()
            m.addAction("Plugin chain...", lambda: self.edit_chain(track_id))
            a = m.addAction("Re-render with chain", lambda: self.rerender_chain(track_id))
            a.setEnabled(ok and (bool(t.chain) or t.extra.get("raw_path", t.path) != t.path))
            m.addSeparator()
            a = m.addAction("Use selection as query", lambda: self.use_selection_as_query(track_id))
            a.setEnabled(ok)
            m.addSeparator()
            m.addAction("Remove stem", lambda: self.remove_stem_track(track_id))
        else:
            m.addAction("Remove track", lambda: self._edit(lambda: self.history.remove_track(track_id)))
        m.popup(global_pos)
        self._last_menu = m

    def reveal(self, path: str):
        folder = os.path.dirname(path)
        ok = QDesktopServices.openUrl(QUrl.fromLocalFile(folder))
        if not ok:
            self.copy_paths([path])
            self.statusBar().showMessage(f"No file manager found; path copied: {path}", 6000)

    def copy_paths(self, paths: list[str]):
        QApplication.clipboard().setText("\n".join(paths))
        self.statusBar().showMessage("Copied " + ", ".join(os.path.basename(p) for p in paths), 4000)

    def remove_stem_track(self, track_id: str):
        s = self.session
        ids = [st.id for st in s.stems if st.track_id == track_id]
        if ids:
            self._edit(lambda: self.history.remove_stems(ids))
        else:
            self._edit(lambda: self.history.remove_track(track_id))

    # plugin chain
    def edit_chain(self, track_id: str):
        """Open the chain editor of a stem lane (non-blocking); OK stores the chain in the session as
        one undo step.  Use "Re-render with chain" to hear it."""
        from plugin_bridge.gui.chain_editor import ChainEditor

        t = self.session.track(track_id)
        rate = t.sample_rate or self.session.sample_rate
        dlg = ChainEditor(t.chain, f"Plugin chain — {t.name}", self, sample_rate=rate)

        def accepted():
            from plugin_bridge.plugins.chain import validate_chain

            chain = validate_chain(dlg.chain)     # canonical form (checked by the dialog already)
            if chain != (self.session.track(track_id).chain or []):
                self._edit(lambda: self.history.set_chain(track_id, chain))
        return self._show_dialog(dlg, accepted)

    def rerender_chain(self, track_id: str, wait: bool = False) -> str | None:
        """Run the track's chain over its unprocessed stem in a worker thread; the processed file
        replaces the lane's audio as one undo step (the unprocessed file stays on disk, so undo and a
        later re-render with another chain start from it).  An empty chain goes back to the
        unprocessed file.  Failures (bad parameter, crashing plugin) are a message; nothing changes."""
        t = self.session.track(track_id)
        raw = t.extra.get("raw_path") or t.path
        chain = copy.deepcopy(t.chain or [])
        if not chain:
            if raw != t.path:
                self._edit(lambda: self.history.set_track(track_id, path=raw))
                self.statusBar().showMessage(f"{t.name}: plugin chain removed", 5000)
            return raw
        try:
            from plugin_bridge.plugins import validate_chain

            validate_chain(chain)
        except Exception as exc:  # noqa: BLE001
            self.show_error(f"Plugin chain of {t.name}: {_pretty(exc)}")
            return None
        base, ext = os.path.splitext(raw)
        k = 1
        while os.path.exists(f"{base}_fx{k}{ext}"):
            k += 1
        out = f"{base}_fx{k}{ext}"
        self.statusBar().showMessage(f"Rendering plugin chain for {t.name}...")
        self._chain_busy += 1

        def work():
            err = None
            try:
                from plugin_bridge.engine.reader import read_all
                from plugin_bridge.engine.writer import OutputFormat, StemWriterSet
                from plugin_bridge.plugins import render_chain

                x, rate = read_all(raw)  # header checks first: a damaged stem is a message
                y = render_chain(chain, x, rate)
                # keep the stem's format: float WAV keeps any gain above full scale unclipped
                fmt = "wav32f" if ext.lower() == ".wav" else "flac24"
                w = StemWriterSet([out], rate, y.shape[0], OutputFormat(fmt))
                try:
                    w.write([y.astype("float64")])
                    w.commit()
                except BaseException:
                    w.abort()
                    raise
            except Exception as exc:  # noqa: BLE001
                err = exc

            def done():
                self._chain_busy -= 1
                if err is not None:
                    self.show_error(f"Plugin chain failed for {t.name}: {_pretty(err)}")
                    return
                try:
                    cur = self.session.track(track_id)
                except PluginBridgeError:
                    return  # the lane was removed meanwhile; the file stays on disk
                extra = dict(cur.extra)
                extra["raw_path"] = raw
                self._edit(lambda: self.history.set_track(track_id, path=out, extra=extra))
                self.statusBar().showMessage(f"{t.name}: plugin chain applied", 5000)
            self._workDone.emit(done)
        th = threading.Thread(target=work, name="chain-render", daemon=True)
        th.start()
        if wait:
            th.join()
        return out

    # ------------------------------------------------------------------------------------------------
    # regions and queries
    # ------------------------------------------------------------------------------------------------
    def _current_region(self):
        if self.session is None or self.current_region_id is None:
            return None
        try:
            return self.session.region(self.current_region_id)
        except PluginBridgeError:
            return None

    def on_region_drawn(self, track_id: str, start: int, end: int):
        s = self.session
        if s is None:
            return
        try:
            t = s.track(track_id)
        except PluginBridgeError:
            return
        if t.kind != "source":
            return
        n = len(s.regions) + 1
        names = {r.name for r in s.regions}
        while f"R{n}" in names:
            n += 1
        region = Region(track_id=track_id, start=int(start), end=int(end), name=f"R{n}")
        if self._edit(lambda: self.history.add_region(region)):
            self.select_region(region.id)

    def select_region(self, region_id: str | None):
        self.current_region_id = region_id
        r = self._current_region()
        if r is not None and self.loop_btn.isChecked():
            self.set_loop(True)
        self.refresh()
        for row in self.timeline.rows.values():
            row.view.update()

    def _region_item_changed(self, cur, _prev):
        if cur is not None:
            self.select_region(cur.data(Qt.ItemDataRole.UserRole))

    def _region_menu(self, pos):
        it = self.region_list.itemAt(pos)
        if it is None:
            return
        rid = it.data(Qt.ItemDataRole.UserRole)
        m = QMenu(self)
        m.addAction("Zoom to region", lambda: (self.select_region(rid), self.zoom_to_region()))
        m.addAction("Use as query", lambda: (self.select_region(rid), self.use_selection_as_query()))
        m.addAction("Delete region", lambda: self._edit(lambda: self.history.remove_region(rid)))
        m.popup(self.region_list.mapToGlobal(pos))
        self._last_menu = m

    def delete_current_region(self):
        if self.current_region_id and self.history:
            rid = self.current_region_id
            self._edit(lambda: self.history.remove_region(rid))

    def zoom_to_region(self):
        r = self._current_region()
        if r is not None:
            self.axis.show_range(r.start, r.end)

    def set_region_queries(self, region_id: str, specs: list[QuerySpec]):
        r = self.session.region(region_id)
        old = [(q.text, q.negative, q.colour) for q in r.queries]
        new = [(q.text, q.negative, q.colour) for q in specs]
        if old != new:
            self._edit(lambda: self.history.set_queries(region_id, specs))

    def rename_region(self, region_id: str, name: str):
        if self.session.region(region_id).name != name:
            self._edit(lambda: self.history.rename_region(region_id, name))

    def move_region(self, region_id: str, start: int):
        """Move a region keeping its length (timeline drag); one undo step per drag."""
        r = self.session.region(region_id)
        if r.start != start:
            self._edit(lambda: self.history.move_region(region_id, start, merge=False))

    def resize_region(self, region_id: str, start: int, end: int, merge: bool = True):
        """Trim a region; the panel's spin boxes merge consecutive edits into one undo step (merge),
        a timeline edge drag is a step of its own."""
        r = self.session.region(region_id)
        if (r.start, r.end) != (start, end):
            if not self._edit(lambda: self.history.resize_region(region_id, start, end, merge=merge)):
                self.query_panel.set_region(r, self.session.sample_rate)

    # presets
    def _preset_store(self):
        from plugin_bridge.session.presets import PresetStore

        return PresetStore()

    def _refresh_presets(self):
        try:
            self.query_panel.fill_presets(self._preset_store().list())
        except Exception as exc:  # noqa: BLE001
            self.statusBar().showMessage(f"Presets unavailable: {_pretty(exc)}", 8000)

    def apply_preset(self, region_id: str, name: str):
        try:
            p = self._preset_store().get(name)
        except Exception as exc:  # noqa: BLE001
            self.show_error(_pretty(exc))
            return
        self._edit(lambda: self.history.set_preset(region_id, p))

    def save_preset_dialog(self, name: str | None = None):
        specs = self.query_panel.specs()
        if not specs:
            self.show_error("Type at least one query before saving a preset.")
            return None
        if name is None:
            name, ok = QInputDialog.getText(self, "Save preset", "Preset name:")
            if not ok or not name.strip():
                return None
        from plugin_bridge.session.presets import Preset, PresetQuery

        p = Preset(name=name.strip(), queries=[PresetQuery(label=q.label or q.text[:40], text=q.text,
                                                           negative=q.negative, colour=q.colour, token=q.token,
                                                           chain=q.chain) for q in specs])
        try:
            path = self._preset_store().save(p)
        except Exception as exc:  # noqa: BLE001
            self.show_error(_pretty(exc))
            return None
        self._refresh_presets()
        i = self.query_panel.preset.findData(p.name)
        if i >= 0:
            self.query_panel.preset.setCurrentIndex(i)
        self.statusBar().showMessage(f"Preset saved: {path}", 5000)
        return path

    # learned sounds and audio examples (@NAME queries)
    def _refresh_learned(self):
        try:
            from plugin_bridge.session.learned import LearnedStore

            self.query_panel.fill_learned(LearnedStore().list())
        except Exception as exc:  # noqa: BLE001
            self.statusBar().showMessage(f"Learned queries unavailable: {_pretty(exc)}", 8000)

    def use_selection_as_query(self, track_id: str | None = None) -> str | None:
        """Save the audio under the selected region (on its source track, or on the stem lane
        ``track_id``; a stem without a region covering it is used whole) as an example query @NAME and
        offer it in the query panel's Learned list.  Returns the name."""
        s = self.session
        r = self._current_region()
        if s is None or (r is None and track_id is None):
            self.show_error("Select a region first (drag across a track), then use it as a query.")
            return None
        try:
            from plugin_bridge.engine.reader import StreamReader, probe
            from plugin_bridge.models.encoders.audio import load_audio_encoder
            from plugin_bridge.session.learned import LearnedQuery, LearnedStore

            t = s.track(track_id) if track_id else s.track(r.track_id)
            info = probe(t.path)
            if r is not None:
                a, b = s.session_to_file_frames(t, r.start, r.end)
                a, b = max(0, a), min(info.frames, b)
            else:
                a, b = 0, info.frames
            if r is not None and track_id and b <= a:  # the region does not cover this stem: take it whole
                a, b = 0, info.frames
            if b <= a:
                raise ValueError("the selection holds no audio of this track (0 s)")
            reader = StreamReader(t.path, start=a, stop=b)
            try:
                x = reader.get(0, b - a)
            finally:
                reader.close()
            rate = info.sample_rate
            what = f"{t.name} {fmt_time(a / rate)}–{fmt_time(b / rate)}"
            enc = load_audio_encoder()
            vec = enc.encode(x, rate, what)
            store = LearnedStore()
            base, name, k = f"{t.name} {fmt_time(a / rate)}", f"{t.name} {fmt_time(a / rate)}", 2
            taken = {n.lower() for n in store.names()}
            while name.lower() in taken:
                name, k = f"{base} ({k})", k + 1
            store.save(LearnedQuery(name, vec, "example", space=enc.space, model_name=enc.id,
                                    facts={"source": t.path, "start_s": a / rate, "end_s": b / rate}))
        except Exception as exc:  # noqa: BLE001
            self.show_error(f"Cannot use the selection as a query: {_pretty(exc)}")
            return None
        self._refresh_learned()
        i = self.query_panel.learned.findData(name)
        if i >= 0:
            self.query_panel.learned.setCurrentIndex(i)
        self.statusBar().showMessage(f"Example query @{name} saved: choose the region to search and press Add "
                                     "next to Learned", 8000)
        return name

    def teach_dialog(self):
        from plugin_bridge.gui.teach import TeachDialog

        dlg = TeachDialog(self)
        dlg.learned.connect(lambda _n: self._refresh_learned())
        self._teach = dlg
        dlg.setModal(False)
        dlg.show()
        return dlg

    # ------------------------------------------------------------------------------------------------
    # jobs
    # ------------------------------------------------------------------------------------------------
    def _get_separator(self, backend: str, device: str):
        """Called in the job worker thread: the engine (and torch) are imported here, lazily."""
        if self.separator_factory is not None:
            return self.separator_factory(backend, device)
        spec, tok = self.app_settings.model_spec()
        key = (spec, tok, backend, device)
        if key not in self._separators:
            from plugin_bridge.engine.separator import Separator
            from plugin_bridge.models.registry import load_model

            self._separators[key] = Separator(load_model(spec, tok), backend=backend, device=device)
        return self._separators[key]

    def run_current(self):
        r = self._current_region()
        if r is None or self.jobs is None:
            self.show_error("Select a region first: drag across a track.")
            return None
        self.query_panel.commit()
        r = self._current_region()
        if not r.queries:
            self.show_error("Type at least one query (e.g. \"dialogue\") or apply a preset, then Run.")
            return None
        try:
            job = self.jobs.enqueue(r.id)
        except Exception as exc:  # noqa: BLE001
            self.show_error(_pretty(exc))
            return None
        self.job_panel.update_job(job, self._job_title(job))
        return job

    def _job_title(self, job) -> str:
        s = self.session
        try:
            r = s.region(job.region_id)
            where = f"{r.name or 'region'} on {s.track(r.track_id).name}"
        except PluginBridgeError:
            where = "deleted region"
        return f"{where}: " + ", ".join(q.display for q in job.queries)

    def cancel_job(self, job_id: str):
        if self.jobs:
            try:
                self.jobs.cancel(job_id)
            except PluginBridgeError as exc:
                self.show_error(_pretty(exc))

    def retry_job(self, job_id: str):
        if self.jobs:
            self.jobs.retry(job_id)

    def _on_job_progress(self, p):
        self._job_eta[p.job_id] = (p.eta_seconds, p.stage)
        try:
            job = self.session.job(p.job_id)
        except PluginBridgeError:
            return
        self.job_panel.update_job(job, self._job_title(job), p.eta_seconds, p.stage)

    def _on_job_update(self, job):
        eta, stage = self._job_eta.get(job.id, (None, None))
        self.job_panel.update_job(job, self._job_title(job), eta, stage)
        if job.status == "failed":
            self.statusBar().showMessage(f"Render failed: {job.error}", 15000)
            self.last_error = job.error
        elif job.status == "done" and job.error:
            # finished, with something the user should know (e.g. a query far from the model's concepts)
            self.statusBar().showMessage(f"Rendered, with a warning: {job.error}", 30000)

    def _apply_render(self, payload):
        tracks, stems, label, job_id, done, box = payload
        try:
            parent = tracks[0].parent_id if tracks else None
            with self.history.transaction(label, kind="render"):
                self.history.add_render(tracks, stems, label=label, job_id=job_id)
                if parent and not self.session.track(parent).mute:
                    self.history.set_mute(parent, True)  # stems + residual replace the source in the mix
        except Exception as exc:  # noqa: BLE001
            box.append(exc)
        finally:
            done.set()

    # ------------------------------------------------------------------------------------------------
    # undo / settings
    # ------------------------------------------------------------------------------------------------
    def undo(self):
        if self.history and self.history.undo():
            self.statusBar().showMessage(f"Undone", 3000)

    def redo(self):
        if self.history and self.history.redo():
            self.statusBar().showMessage(f"Redone", 3000)

    def settings_dialog(self) -> SettingsDialog:
        """Edit > Settings (Ctrl+,): opens without blocking; OK applies and saves (see ``apply_settings``)."""
        cur = dict(self.app_settings.render)
        if self.session is not None:
            cur.update(self.session.settings)
        dlg = SettingsDialog(self.app_settings, cur, list_output_devices(), self)
        return self._show_dialog(dlg, lambda: self.apply_settings(*dlg.result_values()))

    def apply_settings(self, a: AppSettings, sess: dict | None):
        """Machine settings are saved to the settings file at once; render settings go into the open
        session (one undo step) and become the defaults for sessions opened later."""
        model_changed = a.model_spec() != self.app_settings.model_spec()
        audio_changed = a.audio_device != self.app_settings.audio_device
        if sess:
            a.render = AppSettings._clean_render({**a.render, **sess})
        self.app_settings = a
        if not a.save():
            self.statusBar().showMessage(f"Settings apply now but could not be saved to {a.path()}", 8000)
        if model_changed:
            self._separators.clear()
        if self.jobs is not None:
            self.jobs.overrides.update({"backend": a.backend, "device": a.device})
        if sess and self.history is not None:
            cur = {k: self.session.setting(k) for k in sess}
            changes = {k: v for k, v in sess.items() if cur.get(k) != v}
            if changes:
                self._edit(lambda: self.history.set_settings(**changes))
        if audio_changed:
            self._make_player()

    # ------------------------------------------------------------------------------------------------
    # transport
    # ------------------------------------------------------------------------------------------------
    def _lane_specs(self) -> list[LaneSpec]:
        s = self.session
        if s is None:
            return []
        return [LaneSpec(t.id, t.path, t.kind, t.offset, t.gain_db, t.mute, t.solo) for t in s.tracks]

    def _output_device(self):
        name = self.app_settings.audio_device
        if not name:
            return None
        for i, n in list_output_devices():
            if n == name:
                return i
        return None

    def _make_player(self):
        if not self.audio_enabled or self.session is None:
            return
        if self.player is not None:
            self.player.close()
        self.player = PlaybackEngine(self.session.sample_rate, 2, device=self._output_device())
        self.player.set_monitor(self._monitor())
        self.player.seek(self.axis.playhead)
        self._update_player_lanes()
        self.set_loop(self.loop_btn.isChecked())

    def _update_player_lanes(self):
        if self.player is not None:
            self.player.set_lanes(self._lane_specs())

    def toggle_play(self):
        if self.player is None:
            return
        if self.player.playing:
            self.stop()
        else:
            self.play()

    def play(self):
        if self.player is None:
            self.show_error("Open a session first.")
            return
        try:
            self.player.play()
        except PlaybackError as exc:
            self.show_error(str(exc))
            return
        self.play_btn.setText("■  Stop")
        self._timer.start()

    def stop(self):
        if self.player is not None and self.player.playing:
            self.player.stop()
        self._timer.stop()
        self.play_btn.setText("▶  Play")
        if self.player is not None:
            self.axis.set_playhead(self.player.position)

    def seek(self, frame: int):
        frame = max(0, int(frame))
        self.axis.set_playhead(frame)
        if self.player is not None:
            self.player.seek(frame)
        self._update_time()

    def set_loop(self, on: bool):
        r = self._current_region()
        if on and r is not None:
            self.axis.loop = (r.start, r.end)
            if self.player:
                self.player.set_loop(r.start, r.end, True)
        else:
            self.axis.loop = None
            if self.player:
                self.player.set_loop(None, None, False)
            if on and r is None:
                self.statusBar().showMessage("Select a region to loop it.", 4000)
        self.axis.changed.emit()

    def set_monitor(self, mode: str):
        self.monitor_buttons[mode].setChecked(True)
        if self.player is not None:
            self.player.set_monitor(mode)
        for row in self.timeline.rows.values():
            row.view.update()
        self.statusBar().showMessage(f"Listening to: {mode}", 2000)

    def _tick(self):
        p = self.player
        if p is None:
            return
        self.axis.set_playhead(p.position, follow=True)
        self._update_time()
        if p.ended or not p.playing:
            self.stop()

    def _update_time(self):
        rate = self.session.sample_rate if self.session else 48000
        self.time_label.setText(fmt_time(self.axis.playhead / rate))

    # mute/solo changes reach the player through refresh -> _update_player_lanes (signature check)


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    base = QColor("#1e2127")
    pal.setColor(QPalette.ColorRole.Window, QColor("#22252b"))
    pal.setColor(QPalette.ColorRole.WindowText, QColor("#d7dae0"))
    pal.setColor(QPalette.ColorRole.Base, base)
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor("#262a31"))
    pal.setColor(QPalette.ColorRole.Text, QColor("#d7dae0"))
    pal.setColor(QPalette.ColorRole.Button, QColor("#2d3139"))
    pal.setColor(QPalette.ColorRole.ButtonText, QColor("#d7dae0"))
    pal.setColor(QPalette.ColorRole.Highlight, QColor("#3d7bd9"))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor("#2d3139"))
    pal.setColor(QPalette.ColorRole.ToolTipText, QColor("#d7dae0"))
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor("#7d838d"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#6b7079"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#6b7079"))
    app.setPalette(pal)
    app.setStyleSheet("""
        QToolBar#transport { spacing: 4px; padding: 3px; border-bottom: 1px solid #15171b; }
        QToolButton { padding: 3px 8px; border-radius: 3px; }
        QToolButton:checked { background: #3d7bd9; color: white; }
        QToolButton#playButton { font-weight: bold; min-width: 70px; }
        QLabel#timeLabel { font-family: monospace; font-size: 15px; color: #9fe0a0; background: #14161a;
                           border-radius: 3px; padding: 2px 8px; }
        #laneHeader { background: #2a2e36; }
        QLabel#laneName { font-weight: bold; }
        QLabel#laneInfo { color: #8a919c; font-size: 11px; }
        QToolButton#muteButton:checked { background: #d9a13d; color: black; }
        QToolButton#soloButton:checked { background: #5cb85c; color: black; }
        QToolButton#dragGrip { color: #9ec5ff; font-size: 11px; padding: 1px 4px; }
        QWidget#laneArea { background: #1a1c21; }
        QLabel#rulerCorner { background: #181b20; color: #8a919c; }
        QLabel#placeholder { color: #7d838d; font-size: 15px; }
        QLabel#hint { color: #8a919c; }
        QPushButton#runButton { background: #2f8f4e; color: white; font-weight: bold; padding: 5px 16px;
                                border-radius: 3px; }
        QPushButton#runButton:disabled { background: #34463a; color: #7a8a7e; }
        QFrame#jobRow, QFrame#queryRow { background: #2a2e36; border-radius: 4px; }
        QLabel#jobTitle { font-weight: bold; }
        QProgressBar { background: #15171b; border: none; border-radius: 3px; }
        QProgressBar::chunk { background: #3d7bd9; border-radius: 3px; }
        QGroupBox { font-weight: bold; border: 1px solid #343943; border-radius: 4px; margin-top: 12px;
                    padding-top: 6px; }
        QGroupBox::title { subcontrol-origin: margin; left: 8px; padding: 0 4px; }
    """)
