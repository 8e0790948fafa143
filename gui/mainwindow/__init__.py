"""The main window, one module per part (see ``window.py`` for the map)."""
from plugin_bridge.gui.mainwindow.theme import apply_theme
from plugin_bridge.gui.mainwindow.window import MainWindow

__all__ = ["MainWindow", "apply_theme"]
