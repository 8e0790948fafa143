"""Playback glue: the ``PlaybackEngine`` follows the session's lanes, monitor mode, loop and playhead.

A part of ``MainWindow`` (see ``window.py``): it reads and sets the window's attributes."""
from __future__ import annotations



from plugin_bridge.gui.playback import LaneSpec, PlaybackEngine, PlaybackError, list_output_devices
from plugin_bridge.gui.timeline import fmt_time


class Transport:
    def audible(self, track_id: str) -> bool:
        if self.player is not None:
            return self.player.gains().get(track_id, 0.0) > 0
        s = self.session
        if s is None:
            return True
        from plugin_bridge.gui.playback import compute_gains

        return compute_gains(self._lane_specs(), self._monitor()).get(track_id, 0.0) > 0

    def _show_audible(self):
        """The timeline draws the lanes that do not sound dimmed."""
        self.timeline.set_audible({t.id for t in self.session.tracks if self.audible(t.id)} if self.session else set())

    def _monitor(self) -> str:
        for m, b in self.monitor_buttons.items():
            if b.isChecked():
                return m
        return "mix"

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
        self._show_audible()
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
