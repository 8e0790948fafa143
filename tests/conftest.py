import os
import sys

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Keep caches and user data of every test out of the real user folders."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("PLUGIN_BRIDGE_CACHE", str(root / "cache"))
    monkeypatch.setenv("PLUGIN_BRIDGE_DATA", str(root / "userdata"))
    yield


@pytest.fixture(autouse=True)
def _close_leftover_windows():
    """GUI tests must not leave windows (and their timers) alive into later tests."""
    yield
    if "PyQt6.QtWidgets" not in sys.modules:
        return
    from PyQt6.QtWidgets import QApplication, QMessageBox

    app = QApplication.instance()
    if app is None:
        return
    for w in app.topLevelWidgets():
        if hasattr(w, "ask_hook"):
            w.ask_hook = lambda *a: QMessageBox.StandardButton.Discard
        w.close()
        w.deleteLater()
    app.processEvents()


@pytest.fixture
def window_factory(qtbot):
    """make(separator_factory, **kw): a shown MainWindow whose questions answer "Discard" (tests may replace
    ``ask_hook``); ``_close_leftover_windows`` closes it after the test."""
    from PyQt6.QtWidgets import QMessageBox

    from plugin_bridge.gui.app import create_app
    from plugin_bridge.gui.mainwindow import MainWindow

    create_app()

    def make(separator_factory, **kw):
        kw.setdefault("ask_hook", lambda title, text, buttons: QMessageBox.StandardButton.Discard)
        w = MainWindow(separator_factory=separator_factory, **kw)
        qtbot.addWidget(w)
        w.show()
        return w

    return make
