"""The app and damaged files: opening or dropping them shows a message, never a crash; the open
session stays as it was; stale partial files of a killed render are removed when a session opens."""
from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt6.QtWidgets import QMessageBox  # noqa: E402

from hostile_files import drop_paths, make_hostile_files  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGIN_BRIDGE_DATA", str(tmp_path / "userdata"))
    from plugin_bridge.gui.app import create_app
    from plugin_bridge.gui.mainwindow import MainWindow
    from plugin_bridge.testing import fast_separator

    create_app()
    w = MainWindow(separator_factory=lambda b, d: fast_separator())
    w.ask_hook = lambda title, text, buttons: QMessageBox.StandardButton.Discard
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def test_damaged_files_opened_or_dropped_give_a_message_and_keep_the_session(tmp_path, window):
    from pedalboard.io import AudioFile

    good = tmp_path / "proj"
    good.mkdir()
    with AudioFile(str(good / "take.wav"), "w", 48000, 2, bit_depth=16) as f:
        f.write(np.zeros((2, 4800), np.float32))
    assert window.open_path(str(good))
    s = window.session
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = make_hostile_files(bad)
    for name, words in cases.items():
        window.last_error = None
        assert not window.open_path(str(bad / name))
        assert name in window.last_error and words in window.last_error, window.last_error
        assert "Traceback" not in window.last_error
        assert window.session is s
        window.last_error = None
        assert drop_paths(window, [bad / name])
        assert window.last_error and words in window.last_error
        assert window.session is s
    # several dropped at once onto the open session: the damaged ones are skipped, not added
    n = len(s.tracks)
    window.last_error = None
    drop_paths(window, [bad / n_ for n_ in cases] + [good / "take.wav"])
    assert len(s.tracks) == n + 1 and all(t.path.endswith("take.wav") for t in s.tracks)
    assert all(n_ in window.last_error for n_ in cases), window.last_error


def test_opening_a_session_removes_partial_files_a_killed_render_left(tmp_path, window):
    import subprocess
    import sys

    from pedalboard.io import AudioFile

    from plugin_bridge.session.open import open_session

    with AudioFile(str(tmp_path / "take.wav"), "w", 48000, 1, bit_depth=16) as f:
        f.write(np.zeros((1, 4800), np.float32))
    s = open_session(str(tmp_path / "take.wav"))
    path = s.save(str(tmp_path / "s.pbsession.json"))
    os.makedirs(s.stems_dir)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = os.path.join(s.stems_dir, f".pb-partial-{pid}-abc.wav")
    mine = os.path.join(s.stems_dir, f".pb-partial-{os.getpid()}-abc.wav")  # a live writer's: kept
    user = os.path.join(s.stems_dir, "notes.wav")
    for p in (stale, mine, user):
        open(p, "wb").close()
    assert window.open_path(path)
    assert not os.path.exists(stale) and os.path.exists(mine) and os.path.exists(user)
    assert "partial file" in window.statusBar().currentMessage()
