"""Session I/O: open (folder, audio, session, DAWproject, RPP), save, export, recent files,
crash recovery, adding files.

A part of ``MainWindow`` (see ``window.py``): it reads and sets the window's attributes."""
from __future__ import annotations

import importlib
import os

from PyQt6.QtWidgets import QMessageBox

from plugin_bridge.errors import PluginBridgeError
from plugin_bridge.gui.mainwindow.messages import pretty
from plugin_bridge.session.history import Autosaver, History, find_recoverable, recover
from plugin_bridge.session.model import SESSION_SUFFIX, Session

OPEN_FILTER = ("Everything plugin-bridge opens (*.pbsession.json *.json *.dawproject *.rpp *.RPP *.wav *.flac *.aif "
               "*.aiff *.mp3 *.ogg *.bwf);;Sessions (*.pbsession.json);;DAWproject (*.dawproject);;"
               "Reaper projects (*.rpp *.RPP);;Audio files (*.wav *.flac *.aif *.aiff *.mp3 *.ogg *.bwf);;"
               "All files (*)")


class SessionIO:
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
            self.show_error(f"Cannot open {os.path.basename(path.rstrip(os.sep)) or path}:\n{pretty(exc)}")
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
                        self.show_error(f"The autosave could not be read: {pretty(exc)}")
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
        self._start_jobs(s, self.history)
        self._remove_stale_partials(s)
        self.job_panel.clear()    # the closed session's jobs go; a teach still running stays
        for j in self._all_jobs():
            self.job_panel.update_job(j, self._job_title(j), *self._job_eta.get(j.id, (None, None)))
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
            self.show_error(f"Could not save: {pretty(exc)}")
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
            self.show_error(f"Could not save: {pretty(exc)}")
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
        m = importlib.import_module(mod)
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
            self.show_error(f"Export failed: {pretty(exc)}")
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
            self.show_error(f"The autosave could not be read: {pretty(exc)}")
            return False
        if not s.path:
            s.path = os.path.join(os.path.expanduser("~"), s.name + SESSION_SUFFIX)
        self.set_session(s, h)
        return True

    def add_files(self, paths: list[str]):
        """Add audio files as new source tracks (one undo step)."""
        from plugin_bridge.session.open import session_from_files

        warnings: list[str] = []
        try:
            tmp = session_from_files(paths, warnings=warnings, skip_unreadable=True)
        except Exception as exc:  # noqa: BLE001
            self.show_error(pretty(exc))
            return
        with self.history.transaction(f"Add {len(tmp.tracks)} tracks"):
            for t in tmp.tracks:
                self.history.add_track(t)
        if warnings:  # the files that were skipped, and why
            self.show_error("\n".join(warnings), "Some files were not added")
