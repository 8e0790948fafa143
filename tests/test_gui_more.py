"""The desktop app, second part (pytest-qt, offscreen): keyboard shortcuts through real key events,
the plugin chain editor and re-render, settings that persist and reach the next job, DAWproject/RPP
export from the File menu, crash-recovery prompt at start-up, and a responsive window while an
hour-long file is read.

The separator here is a numpy stand-in (no torch import, so the file stays fast): each of Q queries
gets x / (Q + 1) and the residual the rest, written as float WAV like the engine's scratch files."""
from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt6.QtCore import QPoint, Qt, QTimer  # noqa: E402
from PyQt6.QtTest import QTest  # noqa: E402
from PyQt6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from plugin_bridge.engine.chunker import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP  # noqa: E402

RATE = 48000
SB = QMessageBox.StandardButton


class NumpySeparator:
    """Engine stand-in with ``separate_stream``'s contract; records what each call was given."""

    def __init__(self):
        self.calls = []
        self.model = SimpleNamespace(id="numpy-stand-in")

    def separate_stream(self, reader, queries, settings, sink, progress=None, cancel=None):
        self.calls.append({"queries": list(queries), "settings": settings})
        x = reader.get(0, reader.frames).astype(np.float64)
        q = len(queries)
        blocks = [x / (q + 1)] * q + ([x - q * (x / (q + 1))] if settings.residual else [])
        try:
            sink.write(0, blocks)
        except BaseException:
            sink.abort()
            raise
        if progress:
            progress(SimpleNamespace(fraction=1.0, eta_seconds=0.0, segment=1, n_segments=1, elapsed=0.0))
        return sink.close()


def _folder(tmp_path, seconds=2.0, name="proj"):
    import soundfile as sf

    folder = str(tmp_path / name)
    os.makedirs(folder, exist_ok=True)
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    a = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    b = (0.1 * np.random.default_rng(2).standard_normal(n)).astype(np.float32)
    sf.write(os.path.join(folder, "01 dialogue.wav"), a.T, RATE, subtype="FLOAT")
    sf.write(os.path.join(folder, "02 ambience.wav"), b, RATE, subtype="FLOAT")
    return folder, a, b


@pytest.fixture(autouse=True)
def _own_user_data(tmp_path, monkeypatch):
    """Settings, autosaves and presets of one test never leak into the next (the shared conftest
    folder is per session)."""
    monkeypatch.setenv("PLUGIN_BRIDGE_DATA", str(tmp_path / "userdata"))


@pytest.fixture
def make_window(window_factory):
    def make(factory=None, **kw):
        sep = NumpySeparator()
        w = window_factory(factory or (lambda b, d: sep), **kw)
        w.test_separator = sep
        return w

    return make


class FakeStream:
    """Stands in for sounddevice.OutputStream (the test machine has no sound card)."""

    opened = []

    def __init__(self, **kw):
        self.kw = kw
        self.active = False
        FakeStream.opened.append(self)

    def start(self):
        self.active = True

    def abort(self):
        self.active = False

    def close(self):
        self.active = False


def _render(w, qtbot, track_index=0, a=0.25, b=1.5, queries=("dialogue",)):
    s = w.session
    src = s.tracks[track_index]
    w.on_region_drawn(src.id, int(a * RATE), int(b * RATE))
    qp = w.query_panel
    for i, q in enumerate(queries):
        row = qp.rows[i] if i < len(qp.rows) else qp.add_row()
        row.text.setText(q)
    qp.commit()
    job = w.run_current()
    qtbot.waitUntil(lambda: s.job(job.id).status in ("done", "failed"), timeout=15000)
    assert s.job(job.id).status == "done", s.job(job.id).error
    # the worker posts the stems to the UI thread without waiting: they join the session (and the lanes)
    # when the event loop runs next
    ids = set(s.job(job.id).stem_ids)
    qtbot.waitUntil(lambda: ids <= {st.id for st in s.stems} and len(w.timeline.rows) == len(s.tracks),
                    timeout=5000)
    return job


def test_a_render_the_window_cannot_add_marks_its_job_failed(tmp_path, make_window, qtbot):
    import copy

    folder, _a, _b = _folder(tmp_path)
    w = make_window()
    w.open_path(folder)
    s = w.session
    job = _render(w, qtbot)
    n_tracks = len(s.tracks)
    orphan = copy.deepcopy(s.tracks[1])
    orphan.id, orphan.parent_id = "orphan", "removed-meanwhile"   # its source track is gone: refused
    w._apply_render([orphan], [], "Render stems", job.id)
    assert len(s.tracks) == n_tracks
    w._on_job_update(copy.copy(s.job(job.id)))              # the job's "done" update arrives after the post
    assert s.job(job.id).status == "failed" and s.job(job.id).stem_ids == []
    assert "removed-meanwhile" in s.job(job.id).error and "Traceback" not in s.job(job.id).error



def test_the_jobs_panel_stays_bounded_and_the_session_keeps_every_job_record(tmp_path, make_window, qtbot):
    """Every re-render adds a job: the panel keeps the waiting / running / failed ones and, per kind, the
    newest finished ones; "Clear finished" empties it; the session's job log, its file, undo and the dirty
    flag are not touched by either."""
    from plugin_bridge.session.model import Session

    folder, _a, _b = _folder(tmp_path)
    w = make_window()
    w.open_path(folder)
    s = w.session
    panel = w.job_panel
    panel.keep_finished = 3
    render = _render(w, qtbot)
    stem = next(t for t in s.tracks if t.kind == "stem")
    reruns = [w.rerender_chain(stem.id, wait=True) for _ in range(5)]   # an empty chain: quick, done
    w.history.set_chain(stem.id, [{"type": "lowpass", "params": {"cutoff_frequency_hz": 24000.0}}])
    failed = w.rerender_chain(stem.id, wait=True)                       # fails at render time
    qtbot.waitUntil(lambda: failed in panel.rows and panel.rows[failed].state == "failed", timeout=5000)
    assert [j.status for j in s.jobs] == ["done"] * 6 + ["failed"]
    # shown: the failed job (it waits for Retry), the render (re-renders do not push it out) and the three
    # re-renders that ended last; the older ones are counted
    assert list(panel.rows) == [render.id] + reruns[2:] + [failed]
    assert panel.more.text() == "2 older finished jobs not shown" and not panel.more.isHidden()
    assert w._job_eta == {}
    assert w.save()
    assert [j.id for j in Session.load(s.path).jobs] == [render.id] + reruns + [failed]
    # reopened, the panel shows the same bounded view of the full log
    assert w.open_path(s.path)
    s2 = w.session
    assert len(s2.jobs) == 7 and list(panel.rows) == [render.id] + reruns[2:] + [failed]
    assert panel.clear_btn.isEnabled()
    QTest.mouseClick(panel.clear_btn, Qt.MouseButton.LeftButton)
    assert panel.rows == {} and panel.more.text() == "" and not panel.empty.isHidden()
    assert not panel.clear_btn.isEnabled()
    assert len(s2.jobs) == 7 and not w.history.dirty
    # a new job shows again
    job = w.rerender_chain(stem.id, wait=True)
    qtbot.waitUntil(lambda: job in panel.rows and panel.rows[job].state == "failed", timeout=5000)
    assert list(panel.rows) == [job] and panel.empty.isHidden()


def test_a_rerender_already_waiting_is_not_queued_twice_and_uses_the_newest_chain(tmp_path, make_window, qtbot):
    import threading

    import soundfile as sf

    folder, _a, _b = _folder(tmp_path)
    sep, gate = NumpySeparator(), threading.Event()

    def factory(backend, device):      # a separation that holds the queue until the gate opens
        if sep.calls:
            assert gate.wait(30)
        return sep
    w = make_window(factory)
    w.open_path(folder)
    s = w.session
    _render(w, qtbot)
    stem = next(t for t in s.tracks if t.kind == "stem")
    raw_path = stem.path
    raw, _r = sf.read(raw_path, dtype="float64", always_2d=True)
    busy = w.run_current()                                 # runs, waiting at the gate
    qtbot.waitUntil(lambda: s.job(busy.id).status == "running", timeout=5000)
    first = w.rerender_chain(stem.id)
    w.history.set_chain(stem.id, [{"type": "gain", "params": {"gain_db": 6.0}}])
    assert w.rerender_chain(stem.id) == first              # the waiting one covers the new chain
    assert [j.kind for j in s.jobs].count("rerender") == 1
    gate.set()
    qtbot.waitUntil(lambda: s.job(first).status == "done" and s.track(stem.id).path != raw_path, timeout=15000)
    y, _r = sf.read(s.track(stem.id).path, dtype="float64", always_2d=True)
    assert np.max(np.abs(y - 10 ** (6 / 20) * raw)) < 1e-6


def test_in_a_small_window_a_job_row_and_long_stem_names_are_shown_whole_or_elided(tmp_path, make_window, qtbot):
    """At 1100 x 700 the jobs panel still shows a whole job row (title, bar, state), and the stems list
    shortens long names instead of cutting them at its edge."""
    folder, _a, _b = _folder(tmp_path)
    os.rename(os.path.join(folder, "01 dialogue.wav"),
              os.path.join(folder, "01 location sound boom microphone dialogue take 3.wav"))
    w = make_window()
    w.resize(1100, 700)
    w.open_path(folder)
    job = _render(w, qtbot, queries=("a man speaking loudly over traffic noise",))
    qtbot.waitUntil(lambda: job.id in w.job_panel.rows and w.job_panel.rows[job.id].state == "done", timeout=5000)
    row = w.job_panel.rows[job.id]
    qtbot.waitUntil(lambda: row.isVisible(), timeout=5000)
    for part in (row.title, row.bar, row.status):
        assert part.visibleRegion().boundingRect().size() == part.size(), part.objectName()
    stems = w.stem_list
    assert stems.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert stems.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff

# --------------------------------------------------------------------------------------------------
# keyboard shortcuts
# --------------------------------------------------------------------------------------------------
def test_keyboard_shortcuts_with_focus_in_the_timeline_and_not_while_typing(tmp_path, make_window, qtbot,
                                                                          monkeypatch):
    import sounddevice

    monkeypatch.setattr(sounddevice, "OutputStream", FakeStream)
    folder, _a, _b = _folder(tmp_path, 4.0)
    w = make_window()
    assert w.open_path(folder)
    s = w.session
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=3000)
    lane = w.timeline.rows[s.tracks[0].id].view
    ax = w.axis

    # click in the timeline: the lane takes the focus and the playhead moves to the click
    x = int(ax.x_of(RATE * 1.0))
    QTest.mouseClick(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x, 20))
    assert QApplication.focusWidget() is lane
    assert ax.playhead == ax.frame_at(x)

    # Space plays, Space stops
    QTest.keyClick(lane, Qt.Key.Key_Space)
    assert w.player.playing and w.play_btn.text().endswith("Stop") and FakeStream.opened[-1].active
    assert FakeStream.opened[-1].kw["samplerate"] == RATE
    QTest.keyClick(lane, Qt.Key.Key_Space)
    assert not w.player.playing and w.play_btn.text().endswith("Play") and not FakeStream.opened[-1].active

    # + / = zoom in by 1.5, - zooms out, F fits the session
    fpp = ax.fpp
    QTest.keyClick(lane, Qt.Key.Key_Plus)
    assert ax.fpp == pytest.approx(fpp / 1.5)
    QTest.keyClick(lane, Qt.Key.Key_Equal)
    assert ax.fpp == pytest.approx(fpp / 1.5 ** 2)
    QTest.keyClick(lane, Qt.Key.Key_Minus)
    assert ax.fpp == pytest.approx(fpp / 1.5)
    # arrows scroll by 80 px
    o = ax.origin
    QTest.keyClick(lane, Qt.Key.Key_Right)
    assert ax.origin == pytest.approx(o + 80 * ax.fpp)
    QTest.keyClick(lane, Qt.Key.Key_Left)
    assert ax.origin == pytest.approx(o)
    QTest.keyClick(lane, Qt.Key.Key_F)
    assert ax.origin == 0 and ax.fpp == pytest.approx(ax.length * 1.02 / ax.view_px)

    # a region, then Z zooms to it, L loops it, Delete removes it, Ctrl+Z / Ctrl+Shift+Z undo/redo
    w.on_region_drawn(s.tracks[0].id, RATE, 2 * RATE)
    rid = w.current_region_id
    QTest.mouseClick(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(int(ax.x_of(1.5 * RATE)), 20))
    assert QApplication.focusWidget() is lane and w.current_region_id == rid
    QTest.keyClick(lane, Qt.Key.Key_Z)
    assert ax.x_of(RATE) == pytest.approx(ax.view_px * 0.05 / 1.1, abs=1)     # 5 % margin each side
    assert ax.x_of(2 * RATE) == pytest.approx(ax.view_px * 1.05 / 1.1, abs=1)
    QTest.keyClick(lane, Qt.Key.Key_L)
    assert w.loop_btn.isChecked() and ax.loop == (RATE, 2 * RATE) and w.player.loop == (RATE, 2 * RATE)
    QTest.keyClick(lane, Qt.Key.Key_L)
    assert not w.loop_btn.isChecked() and ax.loop is None
    QTest.keyClick(lane, Qt.Key.Key_Delete)
    assert s.regions == []
    QTest.keyClick(lane, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [(r.id, r.start, r.end) for r in s.regions] == [(rid, RATE, 2 * RATE)]
    QTest.keyClick(lane, Qt.Key.Key_Delete)
    QTest.keyClick(lane, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(lane, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert s.regions == []
    QTest.keyClick(lane, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(s.regions) == 1
    w.select_region(rid)

    # typing in a query field: Space, +, F, L, Z, Delete edit the text; nothing plays, zooms or is deleted
    field = w.query_panel.rows[0].text
    QTest.mouseClick(field, Qt.MouseButton.LeftButton)
    assert QApplication.focusWidget() is field
    fpp, n_streams = ax.fpp, len(FakeStream.opened)
    QTest.keyClicks(field, "birds + FLZ")
    assert field.text() == "birds + FLZ"
    QTest.keyClick(field, Qt.Key.Key_Space)
    QTest.keyClick(field, Qt.Key.Key_Delete)
    assert field.text() == "birds + FLZ "
    assert not w.player.playing and len(FakeStream.opened) == n_streams
    assert ax.fpp == fpp and not w.loop_btn.isChecked() and len(s.regions) == 1
    # Ctrl+Z in the field undoes typing, not the session
    QTest.keyClick(field, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(s.regions) == 1
    # a focused button does not eat Space either: Space on "Run" plays, it does not start a render
    w.query_panel.run_btn.setFocus()
    QTest.keyClick(w.query_panel.run_btn, Qt.Key.Key_Space)
    assert w.player.playing and s.jobs == []
    QTest.keyClick(w.query_panel.run_btn, Qt.Key.Key_Space)
    assert not w.player.playing
    # back to the timeline: Space plays again
    QTest.mouseClick(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(5, 20))
    assert QApplication.focusWidget() is lane
    QTest.keyClick(lane, Qt.Key.Key_Space)
    assert w.player.playing
    QTest.keyClick(lane, Qt.Key.Key_Space)
    assert not w.player.playing


# --------------------------------------------------------------------------------------------------
# plugin chain editor + re-render
# --------------------------------------------------------------------------------------------------
def _menu_action(w, track_id, text):
    w.lane_context_menu(track_id, QPoint(10, 10))
    menu = w._last_menu
    acts = {a.text(): a for a in menu.actions()}
    menu.close()
    return acts[text]


def test_chain_editor_gain_step_rerenders_the_stem_and_is_undoable(tmp_path, make_window, qtbot):
    import soundfile as sf
    from PyQt6.QtWidgets import QDialogButtonBox, QDoubleSpinBox

    from plugin_bridge.gui.chain_editor import ChainEditor

    folder, a, _b = _folder(tmp_path)
    w = make_window(file_dialog_hook=lambda mode, title, start, filt: str(tmp_path / "Missing.vst3"))
    w.open_path(folder)
    s = w.session
    _render(w, qtbot)
    stem = next(t for t in s.tracks if t.kind == "stem")
    raw_path = stem.path
    raw, rate = sf.read(raw_path, dtype="float64", always_2d=True)
    assert rate == RATE and raw.shape == (int(1.25 * RATE), 2)

    # lane menu > Plugin chain...: the editor opens without blocking
    assert not _menu_action(w, stem.id, "Re-render with chain").isEnabled()     # nothing to apply yet
    _menu_action(w, stem.id, "Plugin chain...").trigger()
    dlg = w.active_dialog
    assert isinstance(dlg, ChainEditor) and dlg.isVisible()
    dlg.kind.setCurrentIndex(dlg.kind.findData("gain"))
    QTest.mouseClick(dlg.add_btn, Qt.MouseButton.LeftButton)
    sb = dlg.findChild(QDoubleSpinBox, "param_gain_db")
    assert sb is not None and sb.value() == 0.0 and sb.minimum() == -96 and sb.maximum() == 48
    sb.selectAll()
    QTest.keyClicks(sb, "6")
    assert dlg.list.item(0).text() == "Gain  (6 dB)"
    QTest.mouseClick(dlg.button_box.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)
    assert not dlg.isVisible() and w.active_dialog is None
    want = [{"type": "gain", "params": {"gain_db": 6.0}, "enabled": True}]
    assert s.track(stem.id).chain == want
    # the chain is one undo step
    w.act_undo.trigger()
    assert s.track(stem.id).chain == []
    w.act_redo.trigger()
    assert s.track(stem.id).chain == want

    # Re-render with chain: a new file, 6 dB louder than the unprocessed stem, sample for sample
    act = _menu_action(w, stem.id, "Re-render with chain")
    assert act.isEnabled()
    act.trigger()
    qtbot.waitUntil(lambda: s.track(stem.id).path != raw_path, timeout=10000)
    # it is a job of the window's queue: in the jobs panel, with its title and state
    rj = [j for j in s.jobs if j.kind == "rerender"][-1]
    assert rj.track_id == stem.id and rj.region_id is None
    qtbot.waitUntil(lambda: rj.id in w.job_panel.rows and w.job_panel.rows[rj.id].status.text() == "done",
                    timeout=5000)
    assert w.job_panel.rows[rj.id].title.text() == f"Plugin chain on {s.track(stem.id).name}"
    fx_path = s.track(stem.id).path
    assert fx_path == os.path.splitext(raw_path)[0] + "_fx1.wav" and os.path.isfile(raw_path)
    y, r2 = sf.read(fx_path, dtype="float64", always_2d=True)
    assert r2 == RATE and y.shape == raw.shape
    g = 10 ** (6 / 20)
    assert np.max(np.abs(y - g * raw)) < 1e-6
    assert 20 * np.log10(np.sqrt(np.mean(y ** 2)) / np.sqrt(np.mean(raw ** 2))) == pytest.approx(6.0, abs=1e-4)
    # undo puts the unprocessed stem back on the lane (the processed file stays for redo)
    w.act_undo.trigger()
    assert s.track(stem.id).path == raw_path and os.path.isfile(fx_path)
    w.act_redo.trigger()
    assert s.track(stem.id).path == fx_path and s.track(stem.id).extra["raw_path"] == raw_path

    # invalid parameters: a readable message in the editor, which stays open; the session keeps its chain
    _menu_action(w, stem.id, "Plugin chain...").trigger()
    dlg = w.active_dialog
    assert dlg.list.count() == 1 and dlg.error.text() == ""
    dlg.kind.setCurrentIndex(dlg.kind.findData("highpass"))
    QTest.mouseClick(dlg.add_btn, Qt.MouseButton.LeftButton)
    dlg.findChild(QDoubleSpinBox, "param_cutoff_frequency_hz").setValue(24000)
    QTest.mouseClick(dlg.button_box.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)
    assert dlg.isVisible()
    assert "must be below half the stem's sample rate (24000 Hz)" in dlg.error.text()
    dlg.findChild(QDoubleSpinBox, "param_cutoff_frequency_hz").setValue(80)
    QTest.mouseClick(dlg.add_vst3_btn, Qt.MouseButton.LeftButton)     # the file dialog answers a missing bundle
    QTest.mouseClick(dlg.button_box.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)
    assert dlg.isVisible() and "plugin not found" in dlg.error.text() and "Missing.vst3" in dlg.error.text()
    QTest.mouseClick(dlg.button_box.button(QDialogButtonBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    assert not dlg.isVisible() and s.track(stem.id).chain == want

    # a chain that only fails at render time (written by hand into the session): a message, nothing changes
    w.history.set_chain(stem.id, [{"type": "lowpass", "params": {"cutoff_frequency_hz": 24000.0}}])
    w.last_error = None
    w.rerender_chain(stem.id, wait=True)
    qtbot.waitUntil(lambda: w.last_error is not None, timeout=5000)
    assert "Plugin chain failed" in w.last_error and "below half the sample rate" in w.last_error
    failed = [j for j in s.jobs if j.kind == "rerender"][-1]
    assert failed.status == "failed" and not w.job_panel.rows[failed.id].retry.isHidden()
    assert w.job_panel.rows[failed.id].status.text().startswith("failed: ")
    assert "Traceback" not in w.last_error
    assert s.track(stem.id).path == fx_path
    assert not os.path.exists(os.path.splitext(raw_path)[0] + "_fx2.wav")
    assert sorted(n for n in os.listdir(os.path.dirname(raw_path)) if n.startswith(".")) == []


# --------------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------------
def test_settings_persist_and_reach_the_next_job(tmp_path, make_window, qtbot, monkeypatch):
    import json

    import soundfile as sf
    from PyQt6.QtWidgets import QDialogButtonBox

    import plugin_bridge.gui.mainwindow.transport as mw_transport
    import plugin_bridge.gui.mainwindow.window as mw_window
    from plugin_bridge.gui.settings import AppSettings, SettingsDialog

    for mw in (mw_window, mw_transport):     # the settings dialog and the player both list devices
        monkeypatch.setattr(mw, "list_output_devices", lambda: [(0, "Built-in"), (3, "Studio Out")])
    ckpt = tmp_path / "audiosep.ckpt"
    ckpt.write_bytes(b"x")
    tok = tmp_path / "roberta"
    tok.mkdir()
    asked = []
    seps = []

    def factory(backend, device):
        asked.append((backend, device))
        seps.append(NumpySeparator())
        return seps[-1]
    folder, a, _b = _folder(tmp_path)
    w = make_window(factory)
    w.open_path(folder)
    s = w.session
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=3000)
    QTest.keyClick(w, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)     # Edit > Settings (Ctrl+,)
    dlg = w.active_dialog
    assert isinstance(dlg, SettingsDialog) and dlg.isVisible()
    assert (dlg.format.currentData(), dlg.depth.currentData(), dlg.chunk.value()) == ("wav", "24", DEFAULT_CHUNK_SECONDS)
    assert dlg.overlap.value() == round(DEFAULT_OVERLAP * 100)
    dlg.device.setCurrentIndex(dlg.device.findData("cpu"))
    dlg.backend.setCurrentIndex(dlg.backend.findData("onnx"))
    QTest.keyClicks(dlg.ckpt, str(ckpt))                 # typing a path picks "AudioSep checkpoint"
    assert dlg.custom.isChecked()
    QTest.keyClicks(dlg.tok, str(tok))
    dlg.chunk.setValue(2.5)
    dlg.overlap.setValue(30)
    dlg.format.setCurrentIndex(dlg.format.findData("flac"))
    dlg.depth.setCurrentIndex(dlg.depth.findData("24"))
    assert not dlg.depth.model().item(dlg.depth.findData("32f")).isEnabled()   # FLAC has no float
    dlg.audio.setCurrentIndex(dlg.audio.findData("Studio Out"))
    ok = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
    # a bad naming token: a message, the dialog stays, nothing is applied
    dlg.template.setText("{track}_{bogus}")
    QTest.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert dlg.isVisible() and "{bogus}" in dlg.error.text()
    assert not os.path.exists(AppSettings.path()) or AppSettings.load().backend == "auto"
    dlg.template.setText("{track}_{label}")
    QTest.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert not dlg.isVisible()

    # saved to the user data dir ($PLUGIN_BRIDGE_DATA in tests), as JSON
    assert AppSettings.path() == os.path.join(os.environ["PLUGIN_BRIDGE_DATA"], "gui_settings.json")
    with open(AppSettings.path(), encoding="utf-8") as f:
        d = json.load(f)
    assert (d["device"], d["backend"], d["model"], d["checkpoint"], d["tokenizer"], d["audio_device"]) == \
           ("cpu", "onnx", "checkpoint", str(ckpt), str(tok), "Studio Out")
    assert d["render"] == {"chunk_seconds": 2.5, "overlap": 0.3, "format": "flac24", "name_template": "{track}_{label}"}
    assert w.app_settings.model_spec() == (str(ckpt), str(tok))
    assert w.player.device == 3                                    # the chosen output, by name
    # the session's render settings changed as one undo step
    want = {"chunk_seconds": 2.5, "overlap": 0.3, "format": "flac24", "name_template": "{track}_{label}"}
    assert {k: s.settings[k] for k in want} == want
    w.act_undo.trigger()
    assert all(k not in s.settings for k in want)
    w.act_redo.trigger()
    assert {k: s.settings[k] for k in want} == want

    # the next job uses them: backend/device to the engine factory, chunk/overlap to SeparationSettings,
    # FLAC 24-bit files named by the template
    _render(w, qtbot)
    assert asked[-1] == ("onnx", "cpu")
    st = seps[-1].calls[-1]["settings"]
    assert (st.chunk_seconds, st.overlap) == (2.5, 0.3)
    stems = [t for t in s.tracks if t.kind != "source"]
    assert [os.path.basename(t.path) for t in stems] == ["01_dialogue_dialogue.flac", "01_dialogue_Residual.flac"]
    for t in stems:
        info = sf.info(t.path)
        assert (info.format, info.subtype, info.samplerate, info.frames) == ("FLAC", "PCM_24", RATE, int(1.25 * RATE))
    x, _ = sf.read(stems[0].path, dtype="float64", always_2d=True)
    assert np.max(np.abs(x.T - a[:, int(0.25 * RATE):int(1.5 * RATE)] / 2)) < 2 ** -22   # 24-bit quantisation

    # a new window (next start of the app) reads them back; a newly opened folder gets the render defaults
    w2 = make_window(factory)
    assert (w2.app_settings.device, w2.app_settings.backend, w2.app_settings.audio_device) == ("cpu", "onnx", "Studio Out")
    folder2, _a2, _b2 = _folder(tmp_path, 1.0, name="other")
    w2.open_path(folder2)
    assert {k: w2.session.settings[k] for k in want} == want and not w2.history.dirty
    w2.settings_dialog()
    d2 = w2.active_dialog
    assert (d2.format.currentData(), d2.depth.currentData(), d2.chunk.value(), d2.overlap.value()) == ("flac", "24", 2.5, 30)
    assert d2.custom.isChecked() and d2.ckpt.text() == str(ckpt)
    d2.reject()



def test_closed_settings_and_chain_dialogs_are_deleted(tmp_path, make_window, qtbot, monkeypatch):
    """Each opening builds a dialog; closing it (OK, Cancel) must not leave it alive in the window."""
    from plugin_bridge.gui.chain_editor import ChainEditor
    from plugin_bridge.gui.settings import SettingsDialog
    import plugin_bridge.gui.mainwindow.window as mw_window

    monkeypatch.setattr(mw_window, "list_output_devices", lambda: [(0, "Built-in")])
    folder, _a, _b = _folder(tmp_path)
    w = make_window()
    w.open_path(folder)
    _render(w, qtbot)
    stem = next(t for t in w.session.tracks if t.kind == "stem")
    for _ in range(3):
        w.settings_dialog().reject()
        w.edit_chain(stem.id).accept()
    w.settings_dialog()
    w.edit_chain(stem.id)           # opening one closes the other
    qtbot.waitUntil(lambda: not w.findChildren(SettingsDialog) and len(w.findChildren(ChainEditor)) == 1,
                    timeout=5000)
    assert isinstance(w.active_dialog, ChainEditor) and w.active_dialog.isVisible()

# --------------------------------------------------------------------------------------------------
# File > Export DAWproject / RPP
# --------------------------------------------------------------------------------------------------
def test_export_menu_writes_dawproject_and_rpp_that_reimport_with_the_same_tracks(tmp_path, make_window, qtbot):
    import re
    import xml.etree.ElementTree as ET
    import zipfile

    answers = []
    asked = []

    def dialog(mode, title, start, filt):
        asked.append((mode, title, start, filt))
        return answers.pop(0)
    folder, _a, _b = _folder(tmp_path)
    w = make_window(file_dialog_hook=dialog)
    w.open_path(folder)
    s = w.session
    _render(w, qtbot, track_index=1, a=0.5, b=1.75, queries=("rain", "wind"))
    assert w.save()
    expect = [(t.name, t.kind, t.offset, t.frames) for t in s.tracks]
    assert [e[2] for e in expect] == [0, 0, 24000, 24000, 24000]
    assert [e[3] for e in expect] == [2 * RATE, 2 * RATE, 60000, 60000, 60000]

    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    answers[:] = [str(out_dir / "mix"), "", str(out_dir / "mix.rpp")]
    w.act_export_dawproject.trigger()                               # the extension is added
    mode, title, start, filt = asked[0]
    assert mode == "save" and "DAWproject" in title and start == os.path.join(folder, "proj.dawproject")
    dp = str(out_dir / "mix.dawproject")
    assert os.path.isfile(dp) and w.statusBar().currentMessage() == f"Exported {dp}"
    w.act_export_rpp.trigger()                                      # cancelled: nothing written
    assert sorted(os.listdir(out_dir)) == ["mix.dawproject"]
    w.act_export_rpp.trigger()
    rp = str(out_dir / "mix.rpp")
    assert os.path.isfile(rp)

    # what a DAW reads: one clip per track at the track's position (seconds), and RPP item positions
    with zipfile.ZipFile(dp) as z:
        root = ET.fromstring(z.read("project.xml"))
    clips = [(float(c.get("time")), float(c.get("duration"))) for c in root.iter("Clip")]
    assert [(round(t * RATE), round(d * RATE)) for t, d in clips] == [(e[2], e[3]) for e in expect]
    text = open(rp, encoding="utf-8").read()
    pos = [float(v) for v in re.findall(r"^\s*POSITION ([0-9.e+-]+)$", text, re.M)]
    lens = [float(v) for v in re.findall(r"^\s*LENGTH ([0-9.e+-]+)$", text, re.M)]
    assert sorted((round(p * RATE), round(n * RATE)) for p, n in zip(pos, lens)) == sorted((e[2], e[3]) for e in expect)

    # re-import through File > Open: same tracks, same positions and lengths
    for path in (dp, rp):
        w2 = make_window()
        assert w2.open_path(path), w2.last_error
        got = [(t.name, t.kind, t.offset, t.frames) for t in w2.session.tracks]
        assert got == expect, path
        assert len(w2.timeline.rows) == len(expect)


# --------------------------------------------------------------------------------------------------
# crash recovery at start-up
# --------------------------------------------------------------------------------------------------
def _crashed_session(tmp_path, name):
    """A saved session, then edits that only reached the autosave (the program 'crashed')."""
    from plugin_bridge.session.history import Autosaver, History
    from plugin_bridge.session.model import QuerySpec, Region
    from plugin_bridge.session.open import open_session

    folder, _a, _b = _folder(tmp_path, 1.0, name=name)
    s = open_session(folder)
    path = os.path.join(folder, name + ".pbsession.json")
    h = History(s)
    h.save(path)
    old = time.time() - 60
    os.utime(path, (old, old))
    saver = Autosaver(h, every_edits=1)
    r = Region(track_id=s.tracks[0].id, start=4800, end=33600, name="R1")
    h.add_region(r)
    h.set_queries(r.id, [QuerySpec(text="dialogue"), QuerySpec(text="birds", negative="music")])
    assert os.path.isfile(saver.path)
    return path, saver.path, r


def test_autosave_recovery_prompt_at_start(tmp_path, qtbot):
    from plugin_bridge.gui.app import start

    wins = []

    def launch(session_path, answer):
        asked = []

        def ask(title, text, buttons):
            asked.append((title, text, buttons))
            return answer
        _app, win = start(session_path, separator_factory=lambda b, d: NumpySeparator(), ask_hook=ask)
        qtbot.addWidget(win)
        wins.append(win)
        qtbot.waitUntil(lambda: win.session is not None, timeout=5000)
        return win, asked

    # accepted: the autosaved edits are back, unsaved (dirty) until the user saves
    path, auto, r = _crashed_session(tmp_path, "crashed")
    win, asked = launch(path, SB.Yes)
    assert len(asked) == 1 and asked[0][0] == "Recover session?" and "'crashed'" in asked[0][1]
    assert asked[0][2] == SB.Yes | SB.No
    s = win.session
    assert s.path == path
    assert [(x.id, x.start, x.end, [(q.text, q.negative) for q in x.queries]) for x in s.regions] == \
           [(r.id, 4800, 33600, [("dialogue", None), ("birds", "music")])]
    assert win.history.dirty and win.windowTitle().startswith("● ")
    assert win.region_list.count() == 1
    assert win.save() and not os.path.exists(auto)           # a real save retires the autosave
    win.close()

    # declined: the saved state opens (no region), the autosave is gone, no second prompt
    path, auto, r = _crashed_session(tmp_path, "declined")
    win, asked = launch(path, SB.No)
    assert len(asked) == 1
    assert win.session.path == path and win.session.regions == [] and not win.history.dirty
    assert not os.path.exists(auto)
    win.close()

    # nobody to answer (offscreen, no hook): nothing blocks, nothing is lost
    path, auto, r = _crashed_session(tmp_path, "unanswered")
    _app, win = start(path, separator_factory=lambda b, d: NumpySeparator())
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.session is not None, timeout=5000)
    assert win.session.regions == [] and os.path.isfile(auto)
    win.close()


# --------------------------------------------------------------------------------------------------
# a 1-hour file: the window never freezes while its overview is computed
# --------------------------------------------------------------------------------------------------
def _write_hour(path, rate=8000):
    """1 hour of 8 kHz mono 16-bit WAV (57.6 MB), written a minute at a time: silence with a 1-s
    440 Hz burst at the start of every minute, its level rising from 0.1 to 0.5."""
    import soundfile as sf

    tt = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 440 * tt).astype(np.float32)
    minute = np.zeros(rate * 60, np.float32)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as f:
        for m in range(60):
            minute[:rate] = tone * (0.1 + 0.4 * m / 59)
            f.write(minute)


def _wave_pixels(widget, colour) -> int:
    img = widget.grab().toImage()
    c = colour.rgb() & 0xFFFFFF
    return sum(1 for x in range(0, img.width(), 2) for y in range(0, img.height(), 2)
               if img.pixel(x, y) & 0xFFFFFF == c)


def test_hour_long_file_opens_without_freezing_and_the_overview_arrives_later(tmp_path, make_window, qtbot):
    from PyQt6.QtGui import QColor

    path = str(tmp_path / "hour.wav")
    _write_hour(path)
    assert os.path.getsize(path) == 44 + 3600 * 8000 * 2
    short, _a, _b = _folder(tmp_path, 0.5)
    w = make_window()
    assert w.open_path(short)                         # warm the lazy imports: time what scales with length
    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    qtbot.wait(50)
    t0 = time.perf_counter()
    assert w.open_path(path)
    t1 = time.perf_counter()
    t = w.session.tracks[0]
    assert (t.frames, t.sample_rate, w.session.track_end(t)) == (28_800_000, 8000, 28_800_000)
    assert w.overview(t.path) is None                 # not computed on the UI thread
    lane = w.timeline.rows[t.id].view
    qtbot.waitUntil(lambda: w.overview(t.path) is not None, timeout=30000)
    t_done = time.perf_counter()
    timer.stop()
    stamps = np.array([t1] + [x for x in ticks if x >= t1] + [t_done])
    gaps = np.diff(stamps)
    print(f"open_path {(t1 - t0) * 1000:.0f} ms, overview after {(t_done - t1) * 1000:.0f} ms more, "
          f"{len(stamps) - 2} ticks meanwhile, longest gap {gaps.max() * 1000:.0f} ms")
    assert t1 - t0 < 0.1                              # header only: the 57.6 MB are read in the background
    assert gaps.max() < 0.1, f"the event loop stalled for {gaps.max() * 1000:.0f} ms"
    assert len(stamps) - 2 >= (t_done - t1) / 0.1 - 1
    # the overview is right: minute m's burst peaks at (0.1 + 0.4 m / 59), silence elsewhere
    ov = w.overview(t.path)
    assert ov.frames == 28_800_000
    mins, maxs = ov.envelope(0, 28_800_000, 3600)        # one column per second
    assert np.allclose(maxs[::60], 0.1 + 0.4 * np.arange(60) / 59, atol=2e-3)
    # (columns widen to whole overview blocks, so the seconds next to a burst touch it)
    assert np.all(maxs.reshape(60, 60)[:, 2:-1] == 0) and np.all(mins.reshape(60, 60)[:, 2:-1] == 0)
    # and it is drawn: the lane now shows waveform pixels in the track colour
    qtbot.waitUntil(lambda: _wave_pixels(lane, QColor(t.colour)) > 100, timeout=3000)


def test_zoomed_in_envelope_from_samples_matches_brute_force(tmp_path, make_window, qtbot):
    """Between the overview's resolution and single samples, each pixel shows min/max of its frames."""
    from plugin_bridge.gui.waveform import read_samples, sample_envelope

    rng = np.random.default_rng(7)
    frames = 20_000
    x = rng.standard_normal((2, frames)).astype(np.float32) * 0.3
    start, fpp, npx = -37.25, 13.7, 1600               # starts before the file, ends after it
    a = int(np.floor(start)) - 1
    b = int(np.ceil(start + npx * fpp)) + 2
    pad = np.zeros((2, b - a), np.float32)
    pad[:, -a:-a + frames] = x
    mins, maxs = sample_envelope(pad, a, start, fpp, npx, frames)
    for i in range(npx):
        lo, hi = int(np.floor(start + i * fpp)), int(np.floor(start + (i + 1) * fpp))
        if i == npx - 1:
            hi = b
        if start + (i + 1) * fpp <= 0 or start + i * fpp >= frames:
            assert np.isnan(mins[i]) and np.isnan(maxs[i])
            continue
        seg = pad[:, lo - a:hi - a]
        assert (mins[i], maxs[i]) == (seg.min(), seg.max()), i
    # read_samples zero-pads outside the file exactly like the brute force above
    import soundfile as sf

    p = str(tmp_path / "n.wav")
    sf.write(p, x.T, RATE, subtype="FLOAT")
    assert np.array_equal(read_samples(p, a, b), pad)
    # the lane draws a waveform at every zoom level: overview, the samples' envelope, the sample line
    from PyQt6.QtGui import QColor

    folder, _a, _b = _folder(tmp_path, 1.0)
    w = make_window()
    w.open_path(folder)
    t = w.session.tracks[0]
    lane = w.timeline.rows[t.id].view
    qtbot.waitUntil(lambda: w.overview(t.path) is not None, timeout=5000)
    for f in (600.0, 40.0, 1.5, 0.1):
        w.axis.fpp = f
        w.axis.origin = 1000.0
        w.axis.clamp()
        assert _wave_pixels(lane, QColor(t.colour)) > 20, f
