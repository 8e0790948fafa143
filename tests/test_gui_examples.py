"""The app's query-by-example and teach-a-sound actions, driven with real events (offscreen Qt)."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt6.QtCore import QPoint, Qt  # noqa: E402
from PyQt6.QtTest import QTest  # noqa: E402
from PyQt6.QtWidgets import QMessageBox  # noqa: E402

RATE = 48000


@pytest.fixture(autouse=True)
def _own_user_data(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGIN_BRIDGE_DATA", str(tmp_path / "userdata"))


@pytest.fixture(scope="module")
def default_separator():
    from plugin_bridge.engine.separator import Separator
    from plugin_bridge.models.registry import load_model

    return Separator(load_model(), backend="torch", device="cpu")


@pytest.fixture
def window(qtbot, default_separator):
    from plugin_bridge.gui.app import create_app
    from plugin_bridge.gui.mainwindow import MainWindow

    create_app()
    w = MainWindow(separator_factory=lambda b, d: default_separator)
    w.ask_hook = lambda title, text, buttons: QMessageBox.StandardButton.Discard
    qtbot.addWidget(w)
    w.show()
    yield w
    w.ask_hook = lambda *a: QMessageBox.StandardButton.Discard
    w.close()


@pytest.fixture
def fast_window(window_factory):
    """make(factory=None): a shown window over the fast test separator (or ``factory``)."""
    from plugin_bridge.testing import fast_separator

    sep = fast_separator()
    return lambda factory=None: window_factory(factory or (lambda b, d: sep))


def _hum(seconds, rate, f0=120.0, amp=0.2):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))).astype(np.float32)


def _drag(lane, x0, x1):
    y = lane.height() // 2
    QTest.mousePress(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x0, y))
    for x in range(x0, x1, max(1, (x1 - x0) // 8)):
        QTest.mouseMove(lane, QPoint(x, y))
    QTest.mouseRelease(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x1, y))


def test_use_selection_as_query_add_it_to_a_region_and_render(tmp_path, window, qtbot):
    import soundfile as sf

    from plugin_bridge.learned import LearnedStore

    folder = tmp_path / "proj"
    folder.mkdir()
    rng = np.random.default_rng(0)
    hum = _hum(4.0, RATE)
    noise = np.zeros_like(hum)
    noise[RATE * 2:] = 0.1 * rng.standard_normal(RATE * 2)  # the first 2 s: the hum alone
    mix = np.stack([hum + noise, hum + noise])
    sf.write(folder / "01 location.wav", mix.T, RATE, subtype="FLOAT")
    w = window
    assert w.open_path(str(folder))
    s = w.session
    src = s.tracks[0]
    lane = w.timeline.rows[src.id].view
    # select the clean hum (0.2-1.5 s) and use it as the query (Edit > Use Selection as Query)
    _drag(lane, int(w.axis.x_of(RATE * 0.2)), int(w.axis.x_of(RATE * 1.5)))
    assert len(s.regions) == 1
    name = None
    for a in w.menuBar().actions():
        for sub in a.menu().actions() if a.menu() else []:
            if sub is w.act_use_selection:
                sub.trigger()
                name = w.query_panel.learned.currentData()
    assert name and name.startswith("01 location")
    q = LearnedStore().get(name)
    assert q.kind == "example" and q.space == "minilm-l6-v2" and abs(np.linalg.norm(q.vector) - 1) < 1e-5
    assert w.query_panel.learned.currentText().startswith("◆ ")
    # select the noisy part (2-4 s) as the target and add the example to it with the Add button
    _drag(lane, int(w.axis.x_of(RATE * 2.0)), int(w.axis.x_of(RATE * 3.9)))
    assert len(s.regions) == 2 and w.query_panel.region_id == s.regions[1].id
    qp = w.query_panel
    assert qp.add_learned.isEnabled()
    QTest.mouseClick(qp.add_learned, Qt.MouseButton.LeftButton)
    row = qp.rows[0]
    assert row.text.text() == "@" + name and row.is_named and not row.mark.isHidden()
    assert [x.text for x in s.regions[1].queries] == ["@" + name]
    QTest.mouseClick(qp.run_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: s.jobs and s.jobs[0].status in ("done", "failed"), timeout=240000)
    assert s.jobs[0].status == "done", s.jobs[0].error
    qtbot.waitUntil(lambda: len([t for t in s.tracks if t.kind != "source"]) == 2, timeout=5000)
    stem, resid = [t for t in s.tracks if t.kind != "source"]
    r = s.regions[1]
    x_stem, _ = sf.read(stem.path, always_2d=True)
    x_res, _ = sf.read(resid.path, always_2d=True)
    assert x_stem.shape[0] == r.end - r.start
    assert np.max(np.abs(x_stem + x_res - mix[:, r.start:r.end].T)) < 1e-5
    # the example finds the hum under the noise: the stem is closer to the hum than the mix is
    from plugin_bridge.metrics import sdr

    ref = hum[r.start:r.end]
    assert sdr(ref, x_stem[:, 0]) > sdr(ref, mix[0, r.start:r.end]) + 1.0
    # on a stem lane: the stem under the region becomes an example too
    w.lane_context_menu(stem.id, QPoint(10, 10))
    acts = {a.text(): a for a in w._last_menu.actions()}
    w._last_menu.close()
    assert acts["Use selection as query"].isEnabled()
    acts["Use selection as query"].trigger()
    assert len(LearnedStore().names()) == 2 and qp.learned.count() == 2


def test_teach_a_sound_dialog_learns_and_cancel_saves_nothing(tmp_path, window, qtbot):
    import soundfile as sf

    from plugin_bridge.learned import LearnedStore

    clips = tmp_path / "clips"
    clips.mkdir()
    for i, f in enumerate((110, 118, 114)):
        sf.write(clips / f"hum{i}.wav", _hum(1.5, 22050, f), 22050)
    w = window
    QTest.mouseClick(w.query_panel.teach_btn, Qt.MouseButton.LeftButton)
    dlg = w._teach
    assert dlg.isVisible()
    QTest.mouseClick(dlg.start_btn, Qt.MouseButton.LeftButton)
    assert "name" in dlg.status.text()                       # nothing typed yet: a message, no run
    QTest.keyClicks(dlg.name, "generator hum")
    QTest.keyClicks(dlg.clips, str(clips))
    dlg.steps.setValue(2)
    QTest.mouseClick(dlg.start_btn, Qt.MouseButton.LeftButton)
    assert not dlg.start_btn.isEnabled() and dlg.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: dlg.status.text().startswith(("Saved", "Cannot", "a ", "no ")) or
                    not dlg.cancel_btn.isEnabled(), timeout=300000)
    assert dlg.status.text().startswith("Saved @generator hum. Validation on 1 held-out clip(s): SDRi"), dlg.status.text()
    assert dlg.bar.value() == 1000
    assert LearnedStore().get("generator hum").kind == "learned"
    assert w.query_panel.learned.findData("generator hum") >= 0
    # it ran as a learn job of the window's queue, shown in the jobs panel like a render
    lj = w.teach_jobs.session.jobs[-1]
    assert lj.kind == "learn" and lj.status == "done" and lj.settings["steps"] == 2
    assert w.job_panel.rows[lj.id].title.text() == "Teach @generator hum"
    # a second, long run cancelled after its first step: nothing is saved
    dlg.name.setText("")
    QTest.keyClicks(dlg.name, "fan whine")
    dlg.steps.setValue(2000)
    QTest.mouseClick(dlg.start_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dlg.status.text().startswith("Step"), timeout=300000)
    QTest.mouseClick(dlg.cancel_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dlg.start_btn.isEnabled(), timeout=300000)
    assert dlg.status.text() == "Cancelled; nothing was saved."
    assert w.teach_jobs.session.jobs[-1].status == "cancelled"
    assert LearnedStore().names() == ["generator hum"]
    assert not [n for n in os.listdir(LearnedStore().root) if n.startswith(".")]  # no temporary left
    QTest.mouseClick(dlg.close_btn, Qt.MouseButton.LeftButton)
    assert not dlg.isVisible() and w._teach is None



def _hum_clips(folder):
    import soundfile as sf

    folder.mkdir()
    for i, f in enumerate((110, 118, 114)):
        sf.write(folder / f"hum{i}.wav", _hum(1.5, 22050, f), 22050)
    return str(folder)


def _teach_held_at_start(fast_window, clips):
    """A window teaching "generator hum" from ``clips`` whose learn job waits ("running") until ``gate`` is set:
    (window, teach dialog, job id, gate)."""
    from plugin_bridge.testing import fast_separator

    gate, sep = threading.Event(), fast_separator()

    def factory(backend, device):
        assert gate.wait(60)
        return sep

    w = fast_window(factory)
    dlg = w.teach_dialog()
    return w, dlg, _start_teach(dlg, "generator hum", clips, 1), gate


def _start_teach(dlg, name, clips, steps):
    dlg.name.setText("")
    QTest.keyClicks(dlg.name, name)
    dlg.clips.setText("")
    QTest.keyClicks(dlg.clips, clips)
    dlg.steps.setValue(steps)
    QTest.mouseClick(dlg.start_btn, Qt.MouseButton.LeftButton)
    assert dlg.job_id is not None, dlg.status.text()
    return dlg.job_id


def test_opening_a_session_while_a_sound_is_taught_lets_the_teach_finish(tmp_path, fast_window, qtbot):
    """Teaching needs no session: opening one (or another) while a teach runs must not cancel it; it
    finishes, is saved to the learned store and shows as done in the jobs panel and the dialog."""
    import soundfile as sf

    from plugin_bridge.learned import LearnedStore

    clips = _hum_clips(tmp_path / "clips")
    folders = [tmp_path / "proj", tmp_path / "proj2"]
    for f in folders:
        f.mkdir()
        sf.write(f / "01 dialogue.wav", _hum(2.0, RATE, 220.0), RATE, subtype="FLOAT")
    w, dlg, job_id, gate = _teach_held_at_start(fast_window, clips)
    qtbot.waitUntil(lambda: job_id in w.job_panel.rows and "0 %" in w.job_panel.rows[job_id].status.text(),
                    timeout=10000)
    assert w.open_path(str(folders[0]))       # a session opens while the teach runs
    assert w.session is not None and len(w.session.tracks) == 1
    assert w.open_path(str(folders[1]))       # and another one
    assert not w.job_panel.rows[job_id].cancel.isHidden()   # still shown, still running
    gate.set()
    qtbot.waitUntil(lambda: not dlg.cancel_btn.isEnabled(), timeout=300000)
    assert dlg.status.text().startswith("Saved @generator hum"), dlg.status.text()
    assert LearnedStore().get("generator hum").kind == "learned"
    assert w.query_panel.learned.findData("generator hum") >= 0
    assert w.job_panel.rows[job_id].status.text() == "done"
    assert w.job_panel.rows[job_id].title.text() == "Teach @generator hum"
    # a learned query belongs to the user, not to the session: the session's job log holds no teach
    assert all(j.kind != "learn" for j in w.session.jobs)


def test_a_closed_teach_dialog_no_longer_follows_jobs_and_is_deleted(tmp_path, fast_window, qtbot):
    from PyQt6 import sip

    w = fast_window()
    base = (w.receivers(w._jobUpdate), w.receivers(w._jobProgress))
    dlg = w.teach_dialog()
    assert (w.receivers(w._jobUpdate), w.receivers(w._jobProgress)) == (base[0] + 1, base[1] + 1)
    job_id = _start_teach(dlg, "door", str(tmp_path / "missing"), 2)     # fails at once: no such folder
    qtbot.waitUntil(lambda: dlg.start_btn.isEnabled(), timeout=60000)
    assert "missing" in dlg.status.text(), dlg.status.text()
    row = w.job_panel.rows[job_id]
    assert row.status.text().startswith("failed: ") and not row.retry.isHidden()
    QTest.mouseClick(dlg.close_btn, Qt.MouseButton.LeftButton)
    assert (w.receivers(w._jobUpdate), w.receivers(w._jobProgress)) == base
    qtbot.waitUntil(lambda: sip.isdeleted(dlg), timeout=5000)
    assert w._teach is None
    # the job lives on in the panel; its updates reach the window, not the closed dialog (an exception
    # in a slot would fail this test)
    QTest.mouseClick(row.retry, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.teach_jobs.session.job(job_id).status == "failed" and
                    row.status.text().startswith("failed: "), timeout=60000)
    # a dialog open again follows its own job only
    dlg2 = w.teach_dialog()
    assert w.receivers(w._jobUpdate) == base[0] + 1
    dlg2.close()



def test_quitting_while_a_sound_is_taught_asks_first(tmp_path, fast_window, qtbot):
    from plugin_bridge.learned import LearnedStore

    w, dlg, job_id, gate = _teach_held_at_start(fast_window, _hum_clips(tmp_path / "clips"))
    qtbot.waitUntil(lambda: w.teach_jobs.session.job(job_id).status == "running", timeout=10000)
    asked = []
    w.ask_hook = lambda title, text, buttons: asked.append(text) or QMessageBox.StandardButton.No
    assert not w.close()                                   # No: the window and the teach stay
    assert "@generator hum" in asked[0] and w.isVisible()
    assert w.teach_jobs.session.job(job_id).status == "running"
    w.ask_hook = lambda title, text, buttons: QMessageBox.StandardButton.Yes
    queue = w.teach_jobs
    threading.Timer(0.3, gate.set).start()
    assert w.close()                                       # Yes: the teach is cancelled, nothing saved
    qtbot.waitUntil(lambda: queue.session.job(job_id).status == "cancelled", timeout=60000)
    assert LearnedStore().names() == []
