"""The widgets alone (no MainWindow): each user action on the query panel, the jobs panel, the timeline and
the teach dialog leaves as the documented signal, with the ids and values the window's edits need
(offscreen Qt)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt6.QtCore import QPoint, Qt  # noqa: E402
from PyQt6.QtTest import QTest  # noqa: E402

from plugin_bridge.gui.panels import JobPanel, QueryPanel  # noqa: E402
from plugin_bridge.gui.timeline import TimeAxis, TimelineWidget  # noqa: E402
from plugin_bridge.gui.waveform import OverviewCache  # noqa: E402
from plugin_bridge.session.model import JobRecord, QuerySpec, Region, Session, Track  # noqa: E402
from plugin_bridge.session.presets import Preset, PresetEntry, PresetQuery  # noqa: E402

RATE = 48000


@pytest.fixture(autouse=True)
def _app():
    from plugin_bridge.gui.app import create_app

    create_app()


def _recorder(*signals):
    """One list per signal, appended with each emission's arguments."""
    got = []
    for sig in signals:
        seen: list = []
        sig.connect(lambda *a, seen=seen: seen.append(a))
        got.append(seen)
    return got


def _click(w, at: QPoint | None = None):
    if at is None:
        QTest.mouseClick(w, Qt.MouseButton.LeftButton)
    else:
        QTest.mouseClick(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at)


def _type(edit, text):
    edit.setFocus()
    edit.clear()
    QTest.keyClicks(edit, text)
    QTest.keyClick(edit, Qt.Key.Key_Return)   # editingFinished


def test_query_panel_reports_every_edit_of_its_region_as_a_signal(qtbot):
    qp = QueryPanel()
    qtbot.addWidget(qp)
    qp.show()
    changed, renamed, ranged, preset, save, teach, run = _recorder(
        qp.queriesChanged, qp.renameRequested, qp.rangeChanged, qp.presetRequested, qp.savePresetRequested,
        qp.teachRequested, qp.runRequested)
    # no region: only teaching (which needs none) is offered
    assert not qp.run_btn.isEnabled() and qp.teach_btn.isEnabled()
    _click(qp.teach_btn)
    assert teach == [()]
    region = Region(track_id="t1", start=RATE, end=2 * RATE, name="R1", queries=[QuerySpec(text="dialogue")])
    qp.set_region(region, RATE)
    assert changed == [] and renamed == [] and ranged == []     # showing a region is no edit
    assert qp.run_btn.isEnabled() and qp.start.value() == 1.0 and qp.end.value() == 2.0
    _type(qp.rows[0].text, "dialog")
    assert [(rid, [q.text for q in qs]) for rid, qs in changed] == [(region.id, ["dialog"])]
    _click(qp.add_btn)
    row = qp.rows[1]
    _type(row.text, "music")
    _type(row.negative, "speech")
    rid, qs = changed[-1]
    assert rid == region.id and [(q.text, q.negative) for q in qs] == [("dialog", None), ("music", "speech")]
    assert qs[0].colour != qs[1].colour                            # each stem its own colour
    _click(qp.rows[0].remove)
    assert [q.text for q in changed[-1][1]] == ["music"] and len(qp.rows) == 1
    _type(qp.name, "Intro")
    assert renamed == [(region.id, "Intro")]
    qp.end.setValue(3.0)
    assert ranged == [(region.id, RATE, 3 * RATE)]
    qp.fill_presets([PresetEntry("Dialogue", "factory", "/f/dialogue.json",
                                 Preset("Dialogue", [PresetQuery("Dialogue", "dialogue")])),
                     PresetEntry("broken", "user", "/u/broken.json", None, "not JSON")])
    assert [qp.preset.itemText(i) for i in range(qp.preset.count())] == ["Dialogue"]   # invalid ones left out
    _click(qp.apply_preset)
    assert preset == [(region.id, "Dialogue")]
    _click(qp.save_preset)
    assert save == [()]
    qp.fill_learned([SimpleNamespace(name="generator hum", query=SimpleNamespace(kind="learned"))])
    assert qp.add_learned.isEnabled()
    _click(qp.add_learned)
    assert [q.text for q in changed[-1][1]] == ["music", "@generator hum"]
    _click(qp.run_btn)
    assert run == [()]


def test_job_panel_rows_send_cancel_and_retry_with_the_job_id(qtbot):
    panel = JobPanel()
    qtbot.addWidget(panel)
    panel.show()
    cancel, retry = _recorder(panel.cancelRequested, panel.retryRequested)
    job = JobRecord(region_id="r1", status="running", progress=0.4)
    panel.update_job(job, "R1 on dialogue: speech", eta=12.0, stage="separating")
    row = panel.rows[job.id]
    assert row.title.text() == "R1 on dialogue: speech" and row.bar.value() == 400
    assert row.status.text() == "separating 40 % · about 0:12 left"
    assert not row.cancel.isHidden() and row.retry.isHidden()
    _click(row.cancel)
    assert cancel == [(job.id,)] and retry == []
    job.status, job.error = "failed", "out of memory; try a shorter chunk length"
    panel.update_job(job, "R1 on dialogue: speech")
    assert row.cancel.isHidden() and not row.retry.isHidden()
    assert row.status.text() == "failed: out of memory; try a shorter chunk length"
    _click(row.retry)
    assert retry == [(job.id,)] and cancel == [(job.id,)]


def test_job_panel_keeps_active_and_failed_rows_and_the_newest_finished(qtbot):
    panel = JobPanel(keep_finished=2)
    qtbot.addWidget(panel)
    running = JobRecord(kind="rerender", track_id="t", status="running")
    failed = JobRecord(kind="rerender", track_id="t", status="failed", error="bad chain")
    done = [JobRecord(kind="rerender", track_id="t", status="done") for _ in range(4)]
    for j in [running, failed] + done:
        panel.update_job(j, "Plugin chain on a stem")
    assert list(panel.rows) == [running.id, failed.id, done[2].id, done[3].id]
    assert panel.more.text() == "2 older finished jobs not shown"
    running.status = "cancelled"     # the job that just ended stays; the one that ended first goes
    panel.update_job(running, "Plugin chain on a stem")
    assert list(panel.rows) == [running.id, failed.id, done[3].id]
    assert panel.more.text() == "3 older finished jobs not shown"
    # each kind is bounded on its own: re-renders never push a finished render (or teach) out
    render = JobRecord(region_id="r1", status="done")
    teach = JobRecord(kind="learn", status="cancelled")
    panel.update_job(render, "R1 on dialogue: speech")
    panel.update_job(teach, "Teach @hum")
    for j in done[:2]:
        j.id = JobRecord().id
        panel.update_job(j, "Plugin chain on a stem")
    assert list(panel.rows) == [failed.id, render.id, teach.id, done[0].id, done[1].id]
    assert panel.more.text() == "5 older finished jobs not shown"
    pending = JobRecord(kind="rerender", track_id="t")
    panel.update_job(pending, "Plugin chain on a stem")
    _click(panel.clear_btn)
    assert list(panel.rows) == [pending.id] and panel.more.text() == ""


@pytest.fixture
def timeline(tmp_path, qtbot):
    import soundfile as sf

    path = str(tmp_path / "dialogue.wav")
    sf.write(path, (0.1 * np.sin(np.arange(4 * RATE) / 20)).astype(np.float32), RATE, subtype="FLOAT")
    src = Track(name="dialogue", path=path, sample_rate=RATE, channels=1, frames=4 * RATE)
    stem = Track(name="dialogue - speech", path=path, kind="stem", parent_id=src.id, sample_rate=RATE,
                 channels=1, frames=4 * RATE)
    s = Session(sample_rate=RATE, tracks=[src, stem],
                regions=[Region(track_id=src.id, start=int(2.5 * RATE), end=int(3.5 * RATE))])
    overviews = OverviewCache(str(tmp_path / "cache"))
    tl = TimelineWidget(TimeAxis(RATE), overviews)
    qtbot.addWidget(tl)
    tl.resize(1000, 400)
    tl.set_session(s)
    tl.rebuild(s.tracks)
    tl.show()
    qtbot.waitExposed(tl)
    yield tl, s
    overviews.close()


def test_timeline_reports_seek_region_and_lane_button_actions(timeline, qtbot):
    tl, s = timeline
    src, stem = s.tracks
    ax = tl.axis
    seek, drawn, clicked, mute, solo, menu = _recorder(tl.seekRequested, tl.regionDrawn, tl.regionClicked,
                                                       tl.muteToggled, tl.soloToggled, tl.contextMenuRequested)
    # a click on the ruler at 1 s seeks there (to the pixel)
    _click(tl.ruler, QPoint(int(ax.x_of(RATE)), tl.ruler.height() // 2))
    assert len(seek) == 1 and abs(seek[0][0] - RATE) <= ax.fpp
    # a click on a lane outside any region seeks too, and selects nothing
    lane = tl.rows[src.id].view
    y = lane.height() // 2
    _click(lane, QPoint(int(ax.x_of(RATE // 2)), y))
    assert len(seek) == 2 and abs(seek[1][0] - RATE // 2) <= ax.fpp and clicked == []
    # a click inside the region selects it
    _click(lane, QPoint(int(ax.x_of(3 * RATE)), y))
    assert clicked == [(s.regions[0].id,)]
    # a drag across the lane draws a new region on its track, in session frames
    x0, x1 = int(ax.x_of(0.5 * RATE)), int(ax.x_of(1.5 * RATE))
    QTest.mousePress(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x0, y))
    for x in range(x0, x1 + 1, 10):
        QTest.mouseMove(lane, QPoint(x, y))
    QTest.mouseRelease(lane, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x1, y))
    assert len(drawn) == 1
    tid, a, b = drawn[0]
    assert tid == src.id and abs(a - 0.5 * RATE) <= ax.fpp and abs(b - 1.5 * RATE) <= ax.fpp
    # lane header buttons: mute / solo with the track id and the new state; a stem's menu button
    header = tl.rows[src.id].header
    _click(header.mute)
    _click(header.solo)
    _click(header.solo)
    assert mute == [(src.id, True)] and solo == [(src.id, True), (src.id, False)]
    _click(tl.rows[stem.id].header.menu_btn)
    assert [m[0] for m in menu] == [stem.id]


def test_teach_dialog_asks_for_a_job_and_follows_only_its_own(qtbot):
    from plugin_bridge.gui.teach import TeachDialog

    dlg = TeachDialog()
    qtbot.addWidget(dlg)
    dlg.show()
    start, cancel = _recorder(dlg.start_requested, dlg.cancel_requested)
    _click(dlg.start_btn)
    assert start == [] and dlg.status.text() == "Give the sound a name."
    QTest.keyClicks(dlg.name, "@ generator hum")
    _click(dlg.start_btn)
    assert start == [] and dlg.status.text() == "Choose the folder with clips of the sound."
    QTest.keyClicks(dlg.clips, "/clips/hum")
    dlg.steps.setValue(40)
    _click(dlg.start_btn)
    assert start == [("generator hum", "/clips/hum", None, 40)]
    assert not dlg.start_btn.isEnabled() and not dlg.close_btn.isEnabled() and not dlg.name.isEnabled()
    dlg.watch("job-1")
    other = JobRecord(kind="learn", id="job-2", status="failed", error="not mine")
    dlg.job_updated(other, None)                       # another job's update changes nothing here
    assert dlg.running and dlg.status.text() == "Reading clips…"
    dlg.job_progress(SimpleNamespace(job_id="job-1", fraction=0.25, detail="Step 10/40  loss 0.3"))
    assert dlg.bar.value() == 250 and dlg.status.text() == "Step 10/40  loss 0.3"
    QTest.keyClick(dlg, Qt.Key.Key_Escape)             # closing while it runs asks to cancel instead
    assert dlg.isVisible() and cancel == [("job-1",)] and dlg.status.text() == "Cancelling…"
    dlg.job_updated(JobRecord(kind="learn", id="job-1", status="cancelled"), None)
    assert not dlg.running and dlg.start_btn.isEnabled() and dlg.close_btn.isEnabled()
    assert dlg.status.text() == "Cancelled; nothing was saved."
    _click(dlg.close_btn)
    assert not dlg.isVisible()
