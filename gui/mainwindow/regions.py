"""Regions and their queries: draw/select/move/resize, presets, learned sounds and example queries.

A part of ``MainWindow`` (see ``window.py``): it reads and sets the window's attributes."""
from __future__ import annotations


from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QInputDialog, QMenu

from plugin_bridge.errors import PluginBridgeError
from plugin_bridge.gui.mainwindow.messages import pretty
from plugin_bridge.gui.teach import TeachDialog
from plugin_bridge.gui.timeline import fmt_time
from plugin_bridge.session.model import QuerySpec, Region


class Regions:
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

    def _preset_store(self):
        from plugin_bridge.session.presets import PresetStore

        return PresetStore()

    def _refresh_presets(self):
        try:
            self.query_panel.fill_presets(self._preset_store().list())
        except Exception as exc:  # noqa: BLE001
            self.statusBar().showMessage(f"Presets unavailable: {pretty(exc)}", 8000)

    def apply_preset(self, region_id: str, name: str):
        try:
            p = self._preset_store().get(name)
        except Exception as exc:  # noqa: BLE001
            self.show_error(pretty(exc))
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
            self.show_error(pretty(exc))
            return None
        self._refresh_presets()
        i = self.query_panel.preset.findData(p.name)
        if i >= 0:
            self.query_panel.preset.setCurrentIndex(i)
        self.statusBar().showMessage(f"Preset saved: {path}", 5000)
        return path

    def _refresh_learned(self):
        try:
            from plugin_bridge.learned import LearnedStore

            self.query_panel.fill_learned(LearnedStore().list())
        except Exception as exc:  # noqa: BLE001
            self.statusBar().showMessage(f"Learned queries unavailable: {pretty(exc)}", 8000)

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
            from plugin_bridge.audio_io import StreamReader, probe
            from plugin_bridge.models.encoders.audio import load_audio_encoder
            from plugin_bridge.learned import LearnedQuery, LearnedStore

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
            self.show_error(f"Cannot use the selection as a query: {pretty(exc)}")
            return None
        self._refresh_learned()
        i = self.query_panel.learned.findData(name)
        if i >= 0:
            self.query_panel.learned.setCurrentIndex(i)
        self.statusBar().showMessage(f"Example query @{name} saved: choose the region to search and press Add "
                                     "next to Learned", 8000)
        return name

    def teach_dialog(self):
        """Edit > Teach a Sound (non-blocking): the dialog's request becomes a learn job of the window's
        teach queue (it keeps running when a session is opened meanwhile).  The dialog follows the job
        through the window's job signals while it is open; closing it disconnects and deletes it."""
        dlg = TeachDialog(self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)   # done() (Close, Esc) deletes it

        def start(name, clips, background, steps):
            try:
                job_id = self._teach_queue().enqueue_learn(name, clips, background, steps)
            except PluginBridgeError as exc:
                dlg.refused(pretty(exc))
                return
            dlg.watch(job_id)
            job = self.teach_jobs.session.job(job_id)
            self.job_panel.update_job(job, self._job_title(job))

        def updated(job):
            dlg.job_updated(job, self._job_result(job.id))

        def finished(_result):
            self._jobProgress.disconnect(dlg.job_progress)
            self._jobUpdate.disconnect(updated)
            if self._teach is dlg:
                self._teach = None

        dlg.start_requested.connect(start)
        dlg.cancel_requested.connect(self.cancel_job)
        self._jobProgress.connect(dlg.job_progress)
        self._jobUpdate.connect(updated)
        dlg.finished.connect(finished)
        self._teach = dlg
        dlg.setModal(False)
        dlg.show()
        return dlg
