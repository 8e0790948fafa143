"""The main window: assembly of the QMainWindow (transport bar, timeline, region/stem tabs, query and job
panels, shortcuts), messages and non-blocking dialogs, drag and drop of files, and the refresh that
mirrors the session into the widgets.  The rest of the window lives next to this module, one part each:
``actions`` (menus), ``session_io``, ``lanes``, ``chains``, ``regions``, ``jobs_glue``, ``transport``.

Threading rule: the session's tracks, regions and stems are edited only on the UI thread.  The job worker
reaches them through ``jobs_glue._UiHistory``, which posts ``add_render`` / ``set_track`` to the UI thread
(``gui.thread.to_main``) and returns at once: the worker never waits for the window; job records (not undo
steps) it edits in place under the session lock.  Job progress and state come back as queued Qt signals.
Separation, chain re-render and teaching a sound are all jobs of the one job system: the session's queue
runs the first two, the window's own queue teaching (it outlives the sessions opened meanwhile); the GUI
imports no engine code."""
from __future__ import annotations

import logging
import os

from PyQt6.QtCore import QSize, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QApplication, QButtonGroup, QFileDialog, QLabel, QListWidget, QListWidgetItem, QMainWindow, QMessageBox,
    QSplitter, QStatusBar, QTabWidget, QToolBar, QToolButton, QVBoxLayout, QWidget,
)

from plugin_bridge.errors import PluginBridgeError
from plugin_bridge.gui.mainwindow.actions import build_actions
from plugin_bridge.gui.mainwindow.chains import Chains
from plugin_bridge.gui.mainwindow.jobs_glue import JobsGlue
from plugin_bridge.gui.mainwindow.lanes import Lanes
from plugin_bridge.gui.mainwindow.messages import pretty
from plugin_bridge.gui.mainwindow.regions import Regions
from plugin_bridge.gui.mainwindow.session_io import SessionIO
from plugin_bridge.gui.mainwindow.transport import Transport
from plugin_bridge.gui.panels import JobPanel, QueryPanel, StemList
from plugin_bridge.gui.playback import PlaybackEngine, list_output_devices
from plugin_bridge.gui.settings import AppSettings, SettingsDialog
from plugin_bridge.gui.timeline import TimeAxis, TimelineWidget, fmt_time
from plugin_bridge.gui.waveform import OverviewCache
from plugin_bridge.session.history import Autosaver, History
from plugin_bridge.session.model import Session

log = logging.getLogger(__name__)


class MainWindow(SessionIO, Lanes, Chains, Regions, JobsGlue, Transport, QMainWindow):
    _jobProgress = pyqtSignal(object)
    _jobUpdate = pyqtSignal(object)
    _sessionChanged = pyqtSignal(object)
    _overviewReady = pyqtSignal(str)

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
        self.session: Session | None = None
        self.history: History | None = None
        self.autosaver: Autosaver | None = None
        self.jobs = None            # the open session's job queue (jobs_glue)
        self.teach_jobs = None      # the window's queue for teaching a sound (jobs_glue)
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
        self._teach = None          # the "Teach a sound" dialog last opened, while it is open
        self._job_eta: dict[str, tuple] = {}
        self._render_errors: dict[str, str] = {}  # job id -> why its stems could not be added
        self._lane_sig = None
        self._mix_sig = None
        self._unsub = None
        self._build_ui()
        self._jobProgress.connect(self._on_job_progress)
        self._jobUpdate.connect(self._on_job_update)
        self._sessionChanged.connect(self._on_session_changed)
        self._overviewReady.connect(self._on_overview)
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

    def _build_ui(self):
        build_actions(self)
        self._update_recent_menu()
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

        self.timeline = TimelineWidget(self.axis, self.overviews)
        tl = self.timeline
        tl.regionDrawn.connect(self.on_region_drawn)
        tl.regionClicked.connect(self.select_region)
        tl.regionMoved.connect(self.move_region)
        tl.regionResized.connect(lambda rid, a, b: self.resize_region(rid, a, b, merge=False))  # a step of its own
        tl.seekRequested.connect(self.seek)
        tl.muteToggled.connect(self.set_mute)
        tl.soloToggled.connect(self.set_solo)
        tl.contextMenuRequested.connect(self.lane_context_menu)
        tl.dragRequested.connect(lambda tid, source: self.drag_tracks([tid], source))
        right = QWidget()
        right.setMinimumWidth(360)
        rl = QVBoxLayout(right)
        rl.setContentsMargins(6, 6, 6, 6)
        self.tabs = QTabWidget()
        self.region_list = QListWidget()
        self.region_list.currentItemChanged.connect(self._region_item_changed)
        self.region_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.region_list.customContextMenuRequested.connect(self._region_menu)
        self.stem_list = StemList()
        self.stem_list.contextMenuRequested.connect(self.lane_context_menu)
        self.tabs.addTab(self.region_list, "Regions")
        self.tabs.addTab(self.stem_list, "Stems")
        self.tabs.setMaximumHeight(170)
        rl.addWidget(self.tabs)
        qp = self.query_panel = QueryPanel()
        qp.queriesChanged.connect(self.set_region_queries)
        qp.renameRequested.connect(self.rename_region)
        qp.rangeChanged.connect(self.resize_region)   # spin-box edits merge into one undo step
        qp.presetRequested.connect(self.apply_preset)
        qp.savePresetRequested.connect(self.save_preset_dialog)
        qp.teachRequested.connect(self.teach_dialog)
        qp.runRequested.connect(self.run_current)
        self.job_panel = JobPanel()
        self.job_panel.cancelRequested.connect(self.cancel_job)
        self.job_panel.retryRequested.connect(self.retry_job)
        # the user sizes the query and jobs panels (a long job log, or many queries)
        self.side_split = QSplitter(Qt.Orientation.Vertical)
        self.side_split.setChildrenCollapsible(False)
        self.side_split.addWidget(qp)
        self.side_split.addWidget(self.job_panel)
        self.side_split.setStretchFactor(0, 3)
        self.side_split.setStretchFactor(1, 2)
        self.side_split.setSizes([300, 200])   # the starting proportion, whatever the window's height
        rl.addWidget(self.side_split, 1)
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
        """Open ``dlg`` window-modal without blocking the event loop; ``on_accept()`` runs on OK.  A
        dialog that closes is deleted (each opening builds a new one)."""
        if self.active_dialog is not None:
            try:
                self.active_dialog.close()
            except RuntimeError:
                pass
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.active_dialog = dlg
        dlg.accepted.connect(on_accept)
        dlg.finished.connect(lambda _r: setattr(self, "active_dialog", None) if self.active_dialog is dlg else None)
        dlg.open()
        return dlg

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

    def closeEvent(self, ev):
        if not self._may_stop_teaching() or not self.maybe_save():
            ev.ignore()
            return
        self.stop()
        for t in (self._timer, self._autosave_timer, self._overview_timer):
            t.stop()  # a closed window must not keep calling back into Python
        if self.player:
            self.player.close()
        self._shutdown_session()
        if self.teach_jobs is not None:
            self.teach_jobs.stop(cancel=True, timeout=5)
            self.teach_jobs = None
        self.overviews.close()
        ev.accept()

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
        self.timeline.set_session(s)
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
        self._show_audible()
        for row in self.timeline.rows.values():
            row.view.update()
        if s and self.current_region_id and not any(r.id == self.current_region_id for r in s.regions):
            self.current_region_id = None
        self.timeline.set_current_region(self.current_region_id)
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

    def undo(self):
        if self.history and self.history.undo():
            self.statusBar().showMessage("Undone", 3000)

    def redo(self):
        if self.history and self.history.redo():
            self.statusBar().showMessage("Redone", 3000)

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
        audio_changed = a.audio_device != self.app_settings.audio_device
        if sess:
            a.render = AppSettings._clean_render({**a.render, **sess})
        self.app_settings = a
        if not a.save():
            self.statusBar().showMessage(f"Settings apply now but could not be saved to {a.path()}", 8000)
        for q in self._queues():
            q.overrides.update({"backend": a.backend, "device": a.device})
        if sess and self.history is not None:
            cur = {k: self.session.setting(k) for k in sess}
            changes = {k: v for k, v in sess.items() if cur.get(k) != v}
            if changes:
                self._edit(lambda: self.history.set_settings(**changes))
        if audio_changed:
            self._make_player()

    def _edit(self, fn) -> bool:
        if self.history is None:
            return False
        try:
            fn()
            return True
        except Exception as exc:  # noqa: BLE001
            self.show_error(pretty(exc))
            self.refresh()
            return False
