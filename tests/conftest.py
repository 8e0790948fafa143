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
