"""The desktop app, second part (pytest-qt, offscreen): keyboard shortcuts through real key events,
the plugin chain editor and re-render, settings that persist and reach the next job, DAWproject/RPP
export from the File menu, crash-recovery prompt at start-up, and a responsive window while an
hour-long file is read.

The separator here is a numpy stand-in (no torch import, so the file stays fast): each of Q queries
gets x / (Q + 1) and the residual the rest, written as float WAV like the engine's scratch files."""
from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt6.QtCore import QPoint, Qt, QTimer  # noqa: E402
from PyQt6.QtTest import QTest  # noqa: E402
from PyQt6.QtWidgets import QApplication, QMessageBox  # noqa: E402

RATE = 48000
SB = QMessageBox.StandardButton


class NumpySeparator:
    """Engine stand-in with ``separate_file``'s contract; records what each call was given."""

    def __init__(self):
        self.calls = []
        self.model = SimpleNamespace(id="numpy-stand-in")

    def separate_file(self, path, queries, out_dir, fmt="wav24", settings=None, progress=None, cancel=None,
                      region=None, names=None, residual_name=None):
        import soundfile as sf

        self.calls.append({"path": path, "queries": list(queries), "fmt": fmt, "settings": settings,
                           "region": region})
        x, rate = sf.read(path, dtype="float32", always_2d=True)
        a, b = region if region else (0, None)
        x = x[a:b]
        q = len(queries)
        os.makedirs(out_dir, exist_ok=True)
        paths = []
        for i in range(q):
            p = os.path.join(out_dir, (names[i] if names else f"q{i}") + ".wav")
            sf.write(p, x / (q + 1), rate, subtype="FLOAT")
            paths.append(p)
        res = None
        if residual_name:
            res = os.path.join(out_dir, residual_name + ".wav")
            sf.write(res, x - q * (x / (q + 1)), rate, subtype="FLOAT")
        if progress:
            progress(SimpleNamespace(fraction=1.0, eta_seconds=0.0, segment=1, n_segments=1, elapsed=0.0))
        return SimpleNamespace(stem_paths=paths, residual_path=res, sample_rate=rate, channels=x.shape[1],
                               frames=x.shape[0], seconds=0.0, clipped={}, warnings=[])


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


@pytest.fixture
def make_window(qtbot):
    from plugin_bridge.gui.app import create_app
    from plugin_bridge.gui.mainwindow import MainWindow

    create_app()
    wins = []

    def make(factory=None, **kw):
        sep = NumpySeparator()
        kw.setdefault("ask_hook", lambda title, text, buttons: SB.Discard)
        w = MainWindow(separator_factory=factory or (lambda b, d: sep), **kw)
        w.test_separator = sep
        qtbot.addWidget(w)
        w.show()
        wins.append(w)
        return w
    yield make
    for w in wins:
        w.ask_hook = lambda *a: SB.Discard
        w.close()


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
    qtbot.waitUntil(lambda: len(w.timeline.rows) == len(s.tracks), timeout=5000)
    return job


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
    # back to the timeline: Space plays again
    QTest.mouseClick(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(5, 20))
    assert QApplication.focusWidget() is lane
    QTest.keyClick(lane, Qt.Key.Key_Space)
    assert w.player.playing
    QTest.keyClick(lane, Qt.Key.Key_Space)
    assert not w.player.playing
