"""The app's dark Fusion palette and style sheet."""
from __future__ import annotations

from PyQt6.QtGui import QColor, QPalette
from PyQt6.QtWidgets import QApplication


# mute/solo changes reach the player through refresh -> _update_player_lanes (signature check)


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    base = QColor("#1e2127")
    pal.setColor(QPalette.ColorRole.Window, QColor("#22252b"))
    pal.setColor(QPalette.ColorRole.WindowText, QColor("#d7dae0"))
    pal.setColor(QPalette.ColorRole.Base, base)
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor("#262a31"))
    pal.setColor(QPalette.ColorRole.Text, QColor("#d7dae0"))
    pal.setColor(QPalette.ColorRole.Button, QColor("#2d3139"))
    pal.setColor(QPalette.ColorRole.ButtonText, QColor("#d7dae0"))
    pal.setColor(QPalette.ColorRole.Highlight, QColor("#3d7bd9"))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor("#2d3139"))
    pal.setColor(QPalette.ColorRole.ToolTipText, QColor("#d7dae0"))
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor("#7d838d"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#6b7079"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#6b7079"))
    app.setPalette(pal)
    app.setStyleSheet("""
        QToolBar#transport { spacing: 4px; padding: 3px; border-bottom: 1px solid #15171b; }
        QToolButton { padding: 3px 8px; border-radius: 3px; }
        QToolButton:checked { background: #3d7bd9; color: white; }
        QToolButton#playButton { font-weight: bold; min-width: 70px; }
        QLabel#timeLabel { font-family: monospace; font-size: 15px; color: #9fe0a0; background: #14161a;
                           border-radius: 3px; padding: 2px 8px; }
        #laneHeader { background: #2a2e36; }
        QLabel#laneName { font-weight: bold; }
        QLabel#laneInfo { color: #8a919c; font-size: 11px; }
        QToolButton#muteButton:checked { background: #d9a13d; color: black; }
        QToolButton#soloButton:checked { background: #5cb85c; color: black; }
        QToolButton#dragGrip { color: #9ec5ff; font-size: 11px; padding: 1px 4px; }
        QWidget#laneArea { background: #1a1c21; }
        QLabel#rulerCorner { background: #181b20; color: #8a919c; }
        QLabel#placeholder { color: #7d838d; font-size: 15px; }
        QLabel#hint { color: #8a919c; }
        QPushButton#runButton { background: #2f8f4e; color: white; font-weight: bold; padding: 5px 16px;
                                border-radius: 3px; }
        QPushButton#runButton:disabled { background: #34463a; color: #7a8a7e; }
        QFrame#jobRow, QFrame#queryRow { background: #2a2e36; border-radius: 4px; }
        QLabel#jobTitle { font-weight: bold; }
        QProgressBar { background: #15171b; border: none; border-radius: 3px; }
        QProgressBar::chunk { background: #3d7bd9; border-radius: 3px; }
        QGroupBox { font-weight: bold; border: 1px solid #343943; border-radius: 4px; margin-top: 12px;
                    padding-top: 6px; }
        QGroupBox::title { subcontrol-origin: margin; left: 8px; padding: 0 4px; }
    """)
