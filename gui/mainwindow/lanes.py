"""Lanes: mute/solo, stem files (complete or not), drag-out, the lane context menu.

A part of ``MainWindow`` (see ``window.py``): it reads and sets the window's attributes."""
from __future__ import annotations

import os

from PyQt6.QtCore import Qt, QUrl
from PyQt6.QtGui import QDesktopServices, QDrag
from PyQt6.QtWidgets import QApplication, QMenu

from plugin_bridge.gui.timeline import mime_for_files, stem_complete, stem_file


class Lanes:
    def set_mute(self, track_id: str, on: bool):
        self._edit(lambda: self.history.set_mute(track_id, bool(on)))

    def set_solo(self, track_id: str, on: bool):
        self._edit(lambda: self.history.set_solo(track_id, bool(on)))

    def drag_tracks(self, track_ids: list[str], source_widget) -> object:
        """Start a QDrag with the files of complete stems as URLs.  Returns the drop action."""
        paths = [p for p in (stem_file(self.session, i) for i in track_ids) if p]
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
            ok = stem_complete(self.session, track_id)
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
